# Adroddiad mynediad at ddata'r teulu, yn Gymraeg. Dylai siaradwr Cymraeg brodorol
# adolygu'r cyfieithiad hwn cyn ei ddefnyddio mewn gwasanaeth byw.

language-name = Cymraeg
report-title = Pwy sydd wedi gweld gwybodaeth eich plentyn
report-intro = Mae'r adroddiad hwn yn rhestru pob tro y bu i sefydliad rannu, derbyn, edrych ar wybodaeth am eich plentyn drwy Tell It Once, neu gael ei wrthod, a pham y cafodd ei ganiatáu neu ei wrthod. Dangosir enwau sefydliadau, a'r cyfeirnodau a gofnodwyd ganddynt, yn union fel y'u cofnodwyd.
report-child = Rhif GIG y plentyn: { $masked }
report-made = Lluniwyd ar { $date }.
report-count = { $count ->
    [one] Mae un peth wedi'i gofnodi.
   *[other] Mae { $count } o bethau wedi'u cofnodi.
}
report-empty = Nid oes dim wedi'i gofnodi am eich plentyn.
report-questions = Os oes unrhyw beth yma'n edrych yn anghywir, neu os ydych chi eisiau gwybod mwy, gofynnwch i'r gweithiwr proffesiynol a roddodd yr adroddiad hwn i chi. Gallwch hefyd gysylltu â swyddog diogelu data unrhyw sefydliad a restrir.
column-when = Dyddiad
column-who = Sefydliad
column-what = Beth ddigwyddodd
column-information = Pa wybodaeth
column-why = Pam
language-label = Iaith
language-switch = Dangos yn yr iaith hon
download-pdf = Lawrlwytho fel PDF
print-hint = I argraffu'r adroddiad hwn, defnyddiwch orchymyn Argraffu eich porwr.
page-number = Tudalen { $page }

why-consent = wedi'i ganiatáu gan y caniatâd a roesoch ({ $consent }, fersiwn { $revision })
why-relationship = wedi'i ganiatáu am ei fod yn ymwneud â gofal eich plentyn
why-safeguarding = wedi'i rannu i gadw eich plentyn yn ddiogel, heb ganiatâd (rhannu diogelu)
why-protection = wedi'i rannu dan faner amddiffyn plant y cyngor, heb ganiatâd
why-family = wedi'i gofnodi pan ofynnoch chi
why-own-record = cofnod y sefydliad ei hun
why-audit = archwiliad, neu gais fel hwn, i weld pwy a welodd beth
why-failed = ni ddigwyddodd oherwydd nam yn y system
why-refused = gwrthodwyd: { $reason }

reason-agency_suspended = mae'r sefydliad wedi'i atal
reason-not_permitted_for_category = ni chaiff y sefydliad drin y math hwn o wybodaeth
reason-not_involved = nid yw'r sefydliad yn ymwneud â gofal eich plentyn
reason-no_consent = nid oes caniatâd yn ei gwmpasu
reason-consent_superseded = eich plentyn sy'n penderfynu erbyn hyn, ac nid yw wedi cytuno
reason-consent_not_yet_valid = nid oedd y caniatâd wedi dechrau eto
reason-consent_expired = roedd y caniatâd wedi dod i ben
reason-consent_withdrawn = tynnwyd y caniatâd yn ôl
reason-consent_lapsed = caniatâd rhiant oedd hwn, ac mae eich plentyn bellach yn 18 ac yn penderfynu
reason-recipient_excluded = roeddech chi wedi eithrio'r sefydliad hwn
reason-objection = roeddech chi wedi gwrthwynebu i'r sefydliad hwn ei dderbyn
reason-not_permitted_for_safeguarding = ni chaiff y sefydliad rannu at ddibenion diogelu
reason-may_not_run_ehc_assessments = ni chaiff y sefydliad gynnal asesiadau anghenion EHC
reason-not_asked_for_advice = ni ofynnwyd i'r sefydliad am y cyngor hwn
reason-not_the_milestone_owner = nid yw'r sefydliad yn gyfrifol am y cam hwnnw
reason-role_not_permitted = ni chaiff y math hwn o ddefnyddiwr wneud hyn
reason-other = rheswm a gofnodwyd fel "{ $code }"

action-publish = rhannodd ddiweddariad
action-profile_read = edrychodd ar gofnod eich plentyn
action-delivery = anfonwyd diweddariad ato
action-delivery_skipped = ni anfonwyd diweddariad ato
action-consent_recorded = cofnododd eich caniatâd
action-consent_withdrawn = cofnododd eich bod wedi tynnu caniatâd yn ôl
action-consent_read = edrychodd ar y cofnod caniatâd
action-relationship_declared = dywedodd ei fod yn ymwneud â gofal eich plentyn
action-relationship_ended = dywedodd nad yw'n ymwneud â gofal eich plentyn mwyach
action-relationship_read = gwiriodd ei ran ei hun
action-subscription_changed = newidiodd yr hyn y mae'n ei dderbyn
action-admin = gwnaeth newid gweinyddol
action-audit_read = edrychodd ar y cofnod hwn o bwy a welodd beth
action-authentication = gwrthodwyd pan geisiodd gysylltu
action-objection_raised = cofnododd eich gwrthwynebiad
action-objection_withdrawn = cofnododd eich bod wedi tynnu gwrthwynebiad yn ôl
action-safeguarding_declared = dechreuodd rannu at ddibenion diogelu
action-safeguarding_renewed = adnewyddodd rannu at ddibenion diogelu
action-safeguarding_ended = daeth â rhannu at ddibenion diogelu i ben
action-update_corrected = cywirodd ddiweddariad a rannodd
action-update_retracted = tynnodd yn ôl ddiweddariad a rannodd trwy gamgymeriad
action-correction_sent = anfonwyd cywiriad ato o ddiweddariad a gafodd
action-retraction_sent = dywedwyd wrtho fod diweddariad a gafodd wedi'i dynnu'n ôl
action-erasure_sent = dywedwyd wrtho am ddileu diweddariad a gafodd
action-consent_review_due = gofynnodd i'r caniatâd gael ei wirio eto wrth i'ch plentyn dyfu
action-ehc_assessment_recorded = cofnododd gam yn asesiad anghenion EHC eich plentyn
action-ehc_assessment_read = edrychodd ar asesiad anghenion EHC eich plentyn
action-ehc_deadline_alert = atgoffwyd am ddyddiad cau asesiad anghenion EHC
action-transition_recorded = cofnododd gam yn y symud i wasanaethau oedolion
action-transition_read = edrychodd ar y cynllun ar gyfer symud i wasanaethau oedolion
action-transition_alert = atgoffwyd bod cam yn y symud i wasanaethau oedolion yn hwyr
action-send_metrics_read = edrychodd ar ffigurau'r ardal (rhifau yn unig)
action-other = gwnaeth rywbeth a gofnodwyd fel "{ $code }"

category-identity_and_contacts = enw, manylion cyswllt ac iaith
category-communication_needs = pethau i'w gwybod am eich plentyn
category-health_summary = crynodeb iechyd
category-send_support = cymorth anghenion addysgol arbennig
category-education_placement = ysgol neu goleg
category-social_care_involvement = cysylltiad â gofal cymdeithasol
category-transition_to_adulthood = paratoi ar gyfer bod yn oedolyn
category-other = gwybodaeth a gofnodwyd fel "{ $code }"
