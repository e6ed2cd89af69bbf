//! The family's report: a child's subject-access report in plain words, in the
//! family's language, as a printable page and as a PDF. The words come from Project
//! Fluent catalogues (`locales/<language>.ftl`, built in; a new language is a new file,
//! which the build picks up); organisation names and references stay as recorded. A
//! message missing from a catalogue is said in English rather than left out.

use std::sync::Arc;

use axum::extract::{Extension, Form, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use maud::{Markup, html};
use serde::Deserialize;
use tio_proto::v1;

use crate::pages::{self, Viewer};
use crate::session::SignedIn;
use crate::summary::{uk_day, uk_today};
use crate::{Console, ConsoleError, page_or_error};

// `LOCALES: &[(&str, &str)]`: each catalogue's language tag and text, from `build.rs`.
include!(concat!(env!("OUT_DIR"), "/locales.rs"));

/// The reference language: every catalogue is checked against it, and a message a
/// catalogue lacks is said in it.
const REFERENCE: &str = "en";

/// One language's catalogue.
struct Catalogue {
    tag: String,
    bundle: FluentBundle<FluentResource>,
}

/// Every built-in catalogue, the reference first.
pub(crate) struct Catalogues {
    catalogues: Vec<Catalogue>,
}

impl Catalogues {
    /// Parses the built-in catalogues; a catalogue that does not parse stops the
    /// console at start rather than showing a family a broken report.
    pub(crate) fn load() -> Result<Catalogues, ConsoleError> {
        let mut catalogues = Vec::new();
        for (tag, source) in LOCALES {
            let fail = |why: String| ConsoleError::Catalogue(format!("{tag}.ftl: {why}"));
            let resource =
                FluentResource::try_new((*source).to_owned()).map_err(|(_, errors)| fail(format!("{errors:?}")))?;
            let language = tag.parse().map_err(|err| fail(format!("not a language tag: {err}")))?;
            let mut bundle = FluentBundle::new_concurrent(vec![language]);
            // Unicode isolation marks would reach the PDF and the page as invisible
            // characters; every value placed here is a left-to-right Latin string.
            bundle.set_use_isolating(false);
            bundle.add_resource(resource).map_err(|errors| fail(format!("{errors:?}")))?;
            catalogues.push(Catalogue { tag: (*tag).to_owned(), bundle });
        }
        catalogues.sort_by_key(|catalogue| (catalogue.tag != REFERENCE, catalogue.tag.clone()));
        if catalogues.first().is_none_or(|catalogue| catalogue.tag != REFERENCE) {
            return Err(ConsoleError::Catalogue(format!("no {REFERENCE}.ftl, the reference catalogue")));
        }
        Ok(Catalogues { catalogues })
    }

    /// The languages, as tag and own name (`cy`, `Cymraeg`), the reference first.
    pub(crate) fn languages(&self) -> Vec<(&str, String)> {
        self.catalogues
            .iter()
            .map(|catalogue| (catalogue.tag.as_str(), self.say(&catalogue.tag, "language-name", None)))
            .collect()
    }

    /// Whether `tag` has a catalogue.
    pub(crate) fn has(&self, tag: &str) -> bool {
        self.catalogues.iter().any(|catalogue| catalogue.tag == tag)
    }

    /// Message `id` in language `tag`, or in the reference language if that catalogue
    /// lacks it, or the id itself if none has it (a test keeps that from happening).
    pub(crate) fn say(&self, tag: &str, id: &str, args: Option<&FluentArgs<'_>>) -> String {
        let chosen = self.catalogues.iter().find(|catalogue| catalogue.tag == tag);
        for catalogue in chosen.into_iter().chain(self.catalogues.first()) {
            if let Some(pattern) = catalogue.bundle.get_message(id).and_then(|message| message.value()) {
                let mut errors = Vec::new();
                let text = catalogue.bundle.format_pattern(pattern, args, &mut errors);
                if errors.is_empty() {
                    return text.into_owned();
                }
            }
        }
        id.to_owned()
    }

    /// Like [`Catalogues::say`], or `fallback` with `$code` when the catalogues have no
    /// message `id` (an action or reason newer than the catalogue).
    fn say_or(&self, tag: &str, id: &str, fallback: &str, code: &str) -> String {
        let known = self.catalogues.first().is_some_and(|reference| reference.bundle.has_message(id));
        if known {
            return self.say(tag, id, None);
        }
        let mut args = FluentArgs::new();
        args.set("code", code.to_owned());
        self.say(tag, fallback, Some(&args))
    }
}

/// The report as words in one language, ready to lay out as a page or a PDF.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FamilyReport {
    /// The language's tag.
    pub(crate) tag: String,
    pub(crate) title: String,
    pub(crate) intro: String,
    /// The child, by masked NHS number.
    pub(crate) child: String,
    pub(crate) made: String,
    pub(crate) count: String,
    pub(crate) questions: String,
    /// Date, organisation, what happened, which information, why.
    pub(crate) columns: [String; 5],
    pub(crate) rows: Vec<[String; 5]>,
}

/// A report line's action code (`profile_read`).
fn action_code(line: &v1::SubjectAccessLine) -> String {
    line.action().as_str_name().trim_start_matches("AUDIT_ACTION_").to_lowercase()
}

/// `SubjectAccessLine.basis` of a disclosure made under a safeguarding share (a value
/// the contract documents).
const SAFEGUARDING_SHARE_BASIS: &str = "safeguarding_share";
/// `SubjectAccessLine.basis` of a disclosure made under the council's child-protection
/// flag.
const PROTECTION_FLAG_BASIS: &str = "protection_flag";

/// Why, in the family's words, from the line's recorded grounds.
fn why(catalogues: &Catalogues, tag: &str, line: &v1::SubjectAccessLine) -> String {
    match line.outcome() {
        v1::AuditOutcome::Denied => {
            let reason = catalogues.say_or(tag, &format!("reason-{}", line.reason), "reason-other", &line.reason);
            let mut args = FluentArgs::new();
            args.set("reason", reason);
            catalogues.say(tag, "why-refused", Some(&args))
        }
        v1::AuditOutcome::Failed => catalogues.say(tag, "why-failed", None),
        _ => {
            use v1::AuditAction as A;
            let action = line.action();
            if line.basis == SAFEGUARDING_SHARE_BASIS
                || matches!(action, A::SafeguardingDeclared | A::SafeguardingRenewed | A::SafeguardingEnded)
            {
                catalogues.say(tag, "why-safeguarding", None)
            } else if line.basis == PROTECTION_FLAG_BASIS {
                catalogues.say(tag, "why-protection", None)
            } else if matches!(action, A::AuditRead | A::SendMetricsRead) {
                catalogues.say(tag, "why-audit", None)
            } else if matches!(
                action,
                A::ConsentRecorded | A::ConsentWithdrawn | A::ObjectionRaised | A::ObjectionWithdrawn
            ) {
                catalogues.say(tag, "why-family", None)
            } else if !line.consent_id.is_empty() && matches!(action, A::Delivery | A::ProfileRead | A::CorrectionSent)
            {
                let mut args = FluentArgs::new();
                args.set("consent", line.consent_id.clone());
                args.set("revision", line.consent_revision);
                catalogues.say(tag, "why-consent", Some(&args))
            } else if !line.relationship_id.is_empty()
                && matches!(action, A::Delivery | A::ProfileRead | A::CorrectionSent)
            {
                catalogues.say(tag, "why-relationship", None)
            } else {
                catalogues.say(tag, "why-own-record", None)
            }
        }
    }
}

impl FamilyReport {
    /// The report of `found` in language `tag`, for the child shown as `masked`, made
    /// on `today`.
    pub(crate) fn new(
        catalogues: &Catalogues,
        tag: &str,
        masked: &str,
        found: &v1::SubjectAccessReportResponse,
        today: jiff::civil::Date,
    ) -> FamilyReport {
        let say = |id: &str| catalogues.say(tag, id, None);
        let mut args = FluentArgs::new();
        args.set("masked", masked.to_owned());
        let child = catalogues.say(tag, "report-child", Some(&args));
        let mut args = FluentArgs::new();
        args.set("date", today.to_string());
        let made = catalogues.say(tag, "report-made", Some(&args));
        let mut args = FluentArgs::new();
        args.set("count", found.lines.len());
        let count =
            if found.lines.is_empty() { say("report-empty") } else { catalogues.say(tag, "report-count", Some(&args)) };
        let rows = found
            .lines
            .iter()
            .map(|line| {
                let code = action_code(line);
                let what = catalogues.say_or(tag, &format!("action-{code}"), "action-other", &code);
                let information = line
                    .categories()
                    .map(|category| {
                        let code = category.as_str_name().trim_start_matches("CATEGORY_").to_lowercase();
                        catalogues.say_or(tag, &format!("category-{code}"), "category-other", &code)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let date = line.time.as_ref().and_then(uk_day).map(|day| day.to_string()).unwrap_or_default();
                [date, line.agency_name.clone(), what, information, why(catalogues, tag, line)]
            })
            .collect();
        FamilyReport {
            tag: tag.to_owned(),
            title: say("report-title"),
            intro: say("report-intro"),
            child,
            made,
            count,
            questions: say("report-questions"),
            columns: ["column-when", "column-who", "column-what", "column-information", "column-why"].map(say),
            rows,
        }
    }
}

/// The family report's form: the child, posted, and the language.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FamilyForm {
    #[serde(default)]
    nhs_number: String,
    #[serde(default)]
    language: String,
}

impl FamilyForm {
    fn child_form(&self) -> pages::ChildForm {
        pages::ChildForm { nhs_number: self.nhs_number.clone() }
    }
}

/// Reads the report and words it in the form's language.
async fn report_of(console: &Console, signed_in: &SignedIn, form: &FamilyForm) -> Result<FamilyReport, tonic::Status> {
    let tag = form.language.as_str();
    if !console.catalogues.has(tag) {
        return Err(tonic::Status::invalid_argument("language: the console has no catalogue for it"));
    }
    let child = form.child_form();
    let request = child.to_request()?;
    let client = &signed_in.client;
    let found = client.audit().subject_access_report(client.request(request)).await?.into_inner();
    let today = uk_today().ok_or_else(|| tonic::Status::internal("the clock is outside the calendar"))?;
    Ok(FamilyReport::new(&console.catalogues, tag, &child.masked(), &found, today))
}

/// The printable page.
pub(crate) async fn page(
    State(console): State<Arc<Console>>,
    Extension(signed_in): Extension<SignedIn>,
    Form(form): Form<FamilyForm>,
) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    let result = report_of(&console, &signed_in, &form).await;
    let result = result.map(|report| render(&report, &form, &console.catalogues, &viewer));
    page_or_error(result, &viewer)
}

/// The PDF, as a download.
pub(crate) async fn pdf(
    State(console): State<Arc<Console>>,
    Extension(signed_in): Extension<SignedIn>,
    Form(form): Form<FamilyForm>,
) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    let report = match report_of(&console, &signed_in, &form).await {
        Ok(report) => report,
        Err(status) => return page_or_error(Err(status), &viewer),
    };
    match crate::pdf::render(&report, &console.catalogues) {
        Ok(bytes) => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
            // No child in the name: a download's name ends up in folders and emails.
            let disposition = format!("attachment; filename=\"subject-access-report-{}.pdf\"", report.tag);
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(err) => page_or_error(Err(tonic::Status::internal(format!("the PDF could not be made: {err}"))), &viewer),
    }
}

/// The report as a page: the language switch and the PDF download (each a form posting
/// the child again, never in the address), then the report, marked with its language.
fn render(report: &FamilyReport, form: &FamilyForm, catalogues: &Catalogues, viewer: &Viewer<'_>) -> Markup {
    let say = |id: &str| catalogues.say(&report.tag, id, None);
    let content = html! {
        div class="nhsuk-u-margin-bottom-5" {
            form method="post" action="/child/family" class="nhsuk-u-margin-bottom-3" {
                (viewer.csrf_field())
                input type="hidden" name="nhs_number" value=(form.nhs_number);
                div class="nhsuk-form-group" {
                    label class="nhsuk-label" for="language" lang=(report.tag) { (say("language-label")) }
                    select class="nhsuk-select" id="language" name="language" {
                        @for (tag, name) in catalogues.languages() {
                            option value=(tag) lang=(tag) selected[tag == report.tag] { (name) }
                        }
                    }
                }
                button class="nhsuk-button nhsuk-button--secondary" type="submit" id="switch" lang=(report.tag) { (say("language-switch")) }
            }
            form method="post" action="/child/family.pdf" {
                (viewer.csrf_field())
                input type="hidden" name="nhs_number" value=(form.nhs_number);
                input type="hidden" name="language" value=(report.tag);
                button class="nhsuk-button" type="submit" id="download" lang=(report.tag) { (say("download-pdf")) }
            }
            p class="nhsuk-body-s" lang=(report.tag) { (say("print-hint")) }
        }
        div id="family-report" lang=(report.tag) {
            h2 id="report-title" { (report.title) }
            p { (report.intro) }
            p { strong { (report.child) } }
            p { (report.made) " " (report.count) }
            @if !report.rows.is_empty() {
                table class="nhsuk-table" id="family-lines" {
                    (pages::table_head(&report.columns.iter().map(String::as_str).collect::<Vec<_>>()))
                    tbody class="nhsuk-table__body" {
                        @for row in &report.rows {
                            tr class="nhsuk-table__row" {
                                @for cell in row {
                                    td class="nhsuk-table__cell" { (cell) }
                                }
                            }
                        }
                    }
                }
            }
            p { (report.questions) }
        }
    };
    pages::layout("The family's report", viewer, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(action: v1::AuditAction, outcome: v1::AuditOutcome) -> v1::SubjectAccessLine {
        v1::SubjectAccessLine {
            time: Some(prost_types::Timestamp { seconds: 1_785_000_000, nanos: 0 }),
            agency_id: "school".into(),
            agency_name: "Ysgol Gymraeg Aberystwyth".into(),
            action: action as i32,
            outcome: outcome as i32,
            categories: vec![v1::Category::CommunicationNeeds as i32],
            ..Default::default()
        }
    }

    #[test]
    fn every_catalogue_parses_and_says_every_message_of_the_reference() {
        let catalogues = Catalogues::load().unwrap();
        let languages = catalogues.languages();
        assert_eq!(languages[0], ("en", "English".to_owned()), "the reference first");
        assert!(["cy", "pl"].iter().all(|tag| catalogues.has(tag)), "{languages:?}");
        assert!(!catalogues.has("fr"));
        let reference = &catalogues.catalogues[0];
        let ids: Vec<String> = LOCALES
            .iter()
            .find(|(tag, _)| *tag == REFERENCE)
            .unwrap()
            .1
            .lines()
            .filter_map(|line| line.split_once(" = ").map(|(id, _)| id.trim()))
            .filter(|id| !id.is_empty() && !id.starts_with('#') && !id.contains(' '))
            .map(str::to_owned)
            .collect();
        assert!(ids.len() > 60, "{ids:?}");
        for catalogue in &catalogues.catalogues {
            for id in &ids {
                assert!(catalogue.bundle.has_message(id), "{}.ftl lacks {id}", catalogue.tag);
            }
        }
        // Every action and category the contract knows has words.
        for action in tio_audit::entry::Action::ALL {
            assert!(reference.bundle.has_message(&format!("action-{}", action.code())), "{}", action.code());
        }
        for category in tio_core::Category::ALL {
            assert!(reference.bundle.has_message(&format!("category-{}", category.as_str())), "{}", category.as_str());
        }
        for reason in tio_core::DenyReason::ALL {
            assert!(reference.bundle.has_message(&format!("reason-{}", reason.code())), "{}", reason.code());
        }
    }

    #[test]
    fn the_report_is_worded_in_the_language_asked_with_names_as_recorded() {
        let catalogues = Catalogues::load().unwrap();
        let mut refused = line(v1::AuditAction::ProfileRead, v1::AuditOutcome::Denied);
        refused.reason = "no_consent".into();
        let mut delivered = line(v1::AuditAction::Delivery, v1::AuditOutcome::Allowed);
        delivered.consent_id = "c-7".into();
        delivered.consent_revision = 2;
        let mut future = line(v1::AuditAction::ProfileRead, v1::AuditOutcome::Denied);
        future.reason = "a_reason_from_next_year".into();
        let found = v1::SubjectAccessReportResponse { lines: vec![refused, delivered, future] };
        let today = jiff::civil::date(2026, 12, 1);

        let welsh = FamilyReport::new(&catalogues, "cy", "*** *** 9196", &found, today);
        assert_eq!(welsh.title, "Pwy sydd wedi gweld gwybodaeth eich plentyn");
        assert_eq!(welsh.rows[0][1], "Ysgol Gymraeg Aberystwyth", "names stay as recorded");
        assert_eq!(welsh.rows[0][4], "gwrthodwyd: nid oes caniatâd yn ei gwmpasu");
        assert_eq!(welsh.rows[1][4], "wedi'i ganiatáu gan y caniatâd a roesoch (c-7, fersiwn 2)");
        assert_eq!(welsh.rows[0][3], "pethau i'w gwybod am eich plentyn");
        assert!(welsh.rows[2][4].contains("a_reason_from_next_year"), "{}", welsh.rows[2][4]);
        assert_eq!(welsh.count, "Mae 3 o bethau wedi'u cofnodi.");
        assert_eq!(welsh.child, "Rhif GIG y plentyn: *** *** 9196");
        assert!(!welsh.intro.contains('\u{2068}'), "no isolation marks");

        let polish = FamilyReport::new(&catalogues, "pl", "*** *** 9196", &found, today);
        assert_eq!(polish.rows[0][4], "odmowa: nie obejmuje tego żadna zgoda");
        assert_eq!(polish.count, "Zapisano 3 zdarzenia.", "Polish plural for 2 to 4");
        let mut found = found;
        let mut shared = line(v1::AuditAction::Delivery, v1::AuditOutcome::Allowed);
        shared.basis = SAFEGUARDING_SHARE_BASIS.into();
        let mut flagged = line(v1::AuditAction::ProfileRead, v1::AuditOutcome::Allowed);
        flagged.basis = PROTECTION_FLAG_BASIS.into();
        found.lines.extend([shared, flagged]);
        let english = FamilyReport::new(&catalogues, "en", "*** *** 9196", &found, today);
        assert_eq!(english.rows[3][4], "shared to keep your child safe, without consent (a safeguarding share)");
        assert_eq!(english.rows[4][4], "shared under the council's child-protection flag, without consent");
        assert_eq!(english.rows[0][0], "2026-07-25", "a UK date");
        assert_eq!(english.rows[0][2], "looked at your child's record");
        assert_eq!(english.made, "Made on 2026-12-01.");
        let empty = FamilyReport::new(&catalogues, "pl", "x", &v1::SubjectAccessReportResponse::default(), today);
        assert!(empty.rows.is_empty() && empty.count == "Nic nie zapisano na temat Twojego dziecka.");
    }
}
