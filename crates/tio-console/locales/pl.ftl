# Raport dla rodziny o dostępie do danych, po polsku. Przed użyciem w działającej
# usłudze tłumaczenie powinien sprawdzić rodzimy użytkownik języka polskiego.

language-name = Polski
report-title = Kto widział informacje o Twoim dziecku
report-intro = Ten raport wymienia każdy przypadek, w którym organizacja udostępniła, otrzymała lub przeglądała informacje o Twoim dziecku za pośrednictwem Tell It Once albo spotkała się z odmową, oraz powód zgody lub odmowy. Nazwy organizacji i zapisane przez nie oznaczenia są podane dokładnie tak, jak je zapisano.
report-child = Numer NHS dziecka: { $masked }
report-made = Sporządzono { $date }.
report-count = { $count ->
    [one] Zapisano jedno zdarzenie.
    [few] Zapisano { $count } zdarzenia.
   *[many] Zapisano { $count } zdarzeń.
}
report-empty = Nic nie zapisano na temat Twojego dziecka.
report-questions = Jeśli coś tutaj wydaje się błędne albo chcesz dowiedzieć się więcej, zapytaj specjalistę, który przekazał Ci ten raport. Możesz też skontaktować się z inspektorem ochrony danych każdej z wymienionych organizacji.
column-when = Data
column-who = Organizacja
column-what = Co się stało
column-information = Jakie informacje
column-why = Dlaczego
language-label = Język
language-switch = Pokaż w tym języku
download-pdf = Pobierz jako PDF
print-hint = Aby wydrukować ten raport, użyj polecenia Drukuj w przeglądarce.
page-number = Strona { $page }

why-consent = na podstawie udzielonej przez Ciebie zgody ({ $consent }, wersja { $revision })
why-relationship = ponieważ organizacja uczestniczy w opiece nad Twoim dzieckiem
why-safeguarding = udostępniono bez zgody, aby chronić bezpieczeństwo dziecka (udostępnienie ochronne)
why-protection = udostępniono bez zgody na podstawie oznaczenia ochrony dziecka nadanego przez samorząd
why-family = zapisano na Twoją prośbę
why-own-record = własny zapis organizacji
why-audit = kontrola lub wniosek taki jak ten, o to, kto co widział
why-failed = nie doszło do tego z powodu błędu systemu
why-refused = odmowa: { $reason }

reason-agency_suspended = działalność organizacji jest zawieszona
reason-not_permitted_for_category = organizacja nie może przetwarzać tego rodzaju informacji
reason-not_involved = organizacja nie uczestniczy w opiece nad Twoim dzieckiem
reason-no_consent = nie obejmuje tego żadna zgoda
reason-consent_superseded = teraz decyduje Twoje dziecko i nie wyraziło zgody
reason-consent_not_yet_valid = zgoda jeszcze nie zaczęła obowiązywać
reason-consent_expired = zgoda wygasła
reason-consent_withdrawn = zgoda została wycofana
reason-consent_lapsed = była to zgoda rodzica, a Twoje dziecko ma już 18 lat i samo decyduje
reason-recipient_excluded = wykluczono tę organizację
reason-objection = sprzeciwiono się otrzymaniu tych informacji przez tę organizację
reason-not_permitted_for_safeguarding = organizacja nie może dokonywać udostępnień ochronnych
reason-may_not_run_ehc_assessments = organizacja nie może prowadzić ocen potrzeb EHC
reason-not_asked_for_advice = organizacji nie poproszono o tę opinię
reason-not_the_milestone_owner = organizacja nie odpowiada za ten etap
reason-role_not_permitted = ten rodzaj użytkownika nie może tego zrobić
reason-other = powód zapisany jako „{ $code }”

action-publish = udostępniła aktualizację
action-profile_read = przeglądała kartę Twojego dziecka
action-delivery = otrzymała aktualizację
action-delivery_skipped = nie otrzymała aktualizacji
action-consent_recorded = zapisała Twoją zgodę
action-consent_withdrawn = zapisała wycofanie zgody
action-consent_read = przeglądała zapis zgody
action-relationship_declared = zgłosiła udział w opiece nad Twoim dzieckiem
action-relationship_ended = zgłosiła zakończenie udziału w opiece nad Twoim dzieckiem
action-relationship_read = sprawdziła własny udział w opiece
action-subscription_changed = zmieniła zakres otrzymywanych informacji
action-admin = wprowadziła zmianę administracyjną
action-audit_read = przeglądała ten rejestr tego, kto co widział
action-authentication = odmówiono jej połączenia
action-objection_raised = zapisała Twój sprzeciw
action-objection_withdrawn = zapisała wycofanie sprzeciwu
action-safeguarding_declared = rozpoczęła udostępnienie ochronne
action-safeguarding_renewed = przedłużyła udostępnienie ochronne
action-safeguarding_ended = zakończyła udostępnienie ochronne
action-update_corrected = poprawiła udostępnioną aktualizację
action-update_retracted = wycofała aktualizację udostępnioną przez pomyłkę
action-correction_sent = otrzymała poprawkę aktualizacji, którą wcześniej dostała
action-retraction_sent = otrzymała informację, że aktualizacja, którą dostała, została wycofana
action-erasure_sent = otrzymała polecenie usunięcia aktualizacji, którą dostała
action-consent_review_due = poprosiła o ponowne sprawdzenie zgód, gdy dziecko dorasta
action-ehc_assessment_recorded = zapisała etap oceny potrzeb EHC Twojego dziecka
action-ehc_assessment_read = przeglądała ocenę potrzeb EHC Twojego dziecka
action-ehc_deadline_alert = otrzymała przypomnienie o terminie oceny potrzeb EHC
action-transition_recorded = zapisała etap przejścia do usług dla dorosłych
action-transition_read = przeglądała plan przejścia do usług dla dorosłych
action-transition_alert = otrzymała przypomnienie, że etap przejścia do usług dla dorosłych jest opóźniony
action-send_metrics_read = przeglądała dane liczbowe dla obszaru (tylko liczby)
action-other = wykonała czynność zapisaną jako „{ $code }”

category-identity_and_contacts = imię i nazwisko, dane kontaktowe i język
category-communication_needs = co warto wiedzieć o Twoim dziecku
category-health_summary = podsumowanie stanu zdrowia
category-send_support = wsparcie specjalnych potrzeb edukacyjnych
category-education_placement = szkoła lub uczelnia
category-social_care_involvement = udział opieki społecznej
category-transition_to_adulthood = przygotowanie do dorosłości
category-other = informacje zapisane jako „{ $code }”
