//! The pages, rendered on the server with the NHS.UK frontend's classes. maud escapes
//! every value it writes.

use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use tio_core::{NhsNumber, NhsNumberPolicy};
use tio_proto::v1;

use crate::session::SignedIn;
use crate::summary::Counts;

/// Who a page is for: the person signed in (their name, and the token their forms
/// carry), or no one yet; and whether the log's key is pinned.
pub(crate) struct Viewer<'a> {
    signed_in: Option<&'a SignedIn>,
    pinned: bool,
}

impl<'a> Viewer<'a> {
    /// A signed-in person's view.
    pub(crate) fn of(signed_in: &'a SignedIn, pinned: bool) -> Viewer<'a> {
        Viewer { signed_in: Some(signed_in), pinned }
    }

    /// The view before signing in (no navigation, no forms but the sign-in's).
    pub(crate) fn signed_out(pinned: bool) -> Viewer<'static> {
        Viewer { signed_in: None, pinned }
    }

    /// The hidden field every form posted by a signed-in person carries.
    pub(crate) fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.signed_in.map(|s| s.csrf.as_str()).unwrap_or_default()); }
    }
}

/// The navigation's links: address and words.
const NAVIGATION: [(&str, &str); 5] = [
    ("/", "Overview"),
    ("/audit", "Audit log"),
    ("/child", "A child's record"),
    ("/integrity", "Integrity"),
    ("/registry", "Registry"),
];

/// The frame of every page: header (with the navigation and who is signed in), the
/// key-pinning warning if the key is not pinned, the content, footer.
pub(crate) fn layout(title: &str, viewer: &Viewer<'_>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – Tell It Once audit console" }
                link rel="stylesheet" href="/assets/nhsuk-frontend.min.css";
            }
            body {
                a class="nhsuk-skip-link" href="#main-content" { "Skip to main content" }
                header class="nhsuk-header" role="banner" {
                    div class="nhsuk-header__container nhsuk-width-container" {
                        div class="nhsuk-header__service" {
                            a class="nhsuk-header__service-name" href="/" { "Tell It Once audit console" }
                        }
                        @if let Some(signed_in) = viewer.signed_in {
                            div class="nhsuk-header__account" {
                                form method="post" action="/sign-out" class="nhsuk-u-margin-bottom-0" {
                                    (viewer.csrf_field())
                                    span id="signed-in-as" class="nhsuk-u-margin-right-2" { "Signed in as " (signed_in.name) }
                                    button class="nhsuk-button nhsuk-button--reverse nhsuk-button--small nhsuk-u-margin-bottom-0" type="submit" id="sign-out" { "Sign out" }
                                }
                            }
                        }
                    }
                    @if viewer.signed_in.is_some() {
                        nav class="nhsuk-header__navigation" aria-label="Menu" {
                            div class="nhsuk-width-container" {
                                ul class="nhsuk-header__navigation-list" {
                                    @for (href, words) in NAVIGATION {
                                        li class="nhsuk-header__navigation-item" {
                                            a class="nhsuk-header__navigation-link" href=(href) { (words) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                div class="nhsuk-width-container" {
                    main class="nhsuk-main-wrapper" id="main-content" role="main" {
                        @if !viewer.pinned {
                            div class="nhsuk-warning-callout" {
                                h2 class="nhsuk-warning-callout__label" { "The log's key is not pinned" }
                                p {
                                    "Checkpoints are checked against the key the broker gives. Start the console with "
                                    code { "--public-key FILE" }
                                    " (the key you keep) to check them against yours."
                                }
                            }
                        }
                        h1 { (title) }
                        (content)
                    }
                }
                footer role="contentinfo" {
                    div class="nhsuk-footer" {
                        div class="nhsuk-width-container" {
                            p class="nhsuk-footer__copyright" {
                                "Tell It Once " (env!("CARGO_PKG_VERSION")) ". Every page that reads personal data is recorded in the audit log."
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A page that only says something: a title and a paragraph.
pub(crate) fn message(title: &str, words: &str, viewer: &Viewer<'_>) -> Markup {
    layout(title, viewer, html! { p id="message" { (words) } })
}

/// The overview: the latest signed checkpoint and whether it verifies, then the log's
/// activity in counts (or why they could not be counted).
pub(crate) fn overview(
    checkpoint: &v1::Checkpoint,
    opened: Result<tio_audit::checkpoint::Checkpoint, String>,
    counts: Result<&Counts, String>,
    today: jiff::civil::Date,
    viewer: &Viewer<'_>,
) -> Markup {
    let origin = checkpoint.signed_note.lines().next().unwrap_or_default();
    let root: String = checkpoint.root_hash.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
    let content = html! {
        h2 { "The latest signed checkpoint" }
        dl class="nhsuk-summary-list" {
            div class="nhsuk-summary-list__row" {
                dt class="nhsuk-summary-list__key" { "Log" }
                dd class="nhsuk-summary-list__value" { (origin) }
            }
            div class="nhsuk-summary-list__row" {
                dt class="nhsuk-summary-list__key" { "Entries" }
                dd class="nhsuk-summary-list__value" id="tree-size" { (checkpoint.tree_size) }
            }
            div class="nhsuk-summary-list__row" {
                dt class="nhsuk-summary-list__key" { "Root hash" }
                dd class="nhsuk-summary-list__value" { code { (root) "…" } }
            }
            div class="nhsuk-summary-list__row" {
                dt class="nhsuk-summary-list__key" { "Signature" }
                dd class="nhsuk-summary-list__value" id="verdict" {
                    @match &opened {
                        Ok(_) if viewer.pinned => strong class="nhsuk-tag nhsuk-tag--green" { "Verified with your pinned key" },
                        Ok(_) => strong class="nhsuk-tag nhsuk-tag--yellow" { "Verified with the broker's key" },
                        Err(err) => strong class="nhsuk-tag nhsuk-tag--red" { "Does NOT verify: " (err) },
                    }
                }
            }
        }
        p { a href="/audit" { "Search the audit log" } }
        h2 { "Activity" }
        @match counts {
            Err(err) => p id="counts-error" { "The activity could not be counted: " (err) },
            Ok(counts) => {
                p class="nhsuk-body-s" id="counted" { "Counts only, of the log's first " (counts.next) " entries; nothing about any child." }
                @let days: Vec<(String, u64)> = counts.recent_days(today).into_iter().map(|(day, n)| (day.strftime("%a %-d %b").to_string(), n)).collect();
                (bar_chart("per-day", "Entries per day, the last 14 days (UK days)", &days))
                @let refusals: Vec<(String, u64)> = counts.refusals.iter().map(|(reason, n)| (reason.replace('_', " "), *n)).collect();
                (bar_chart("refusals", "Refusals by reason, since the log began", &refusals))
                @let deliveries: Vec<(String, u64)> = counts.deliveries.iter().map(|(agency, n)| (agency.clone(), *n)).collect();
                (bar_chart("deliveries", "Updates delivered, by receiving agency, since the log began", &deliveries))
                h3 { "Recent alerts" }
                @if counts.alerts.is_empty() {
                    p id="no-alerts" { "No alerts yet." }
                } @else {
                    table class="nhsuk-table" id="alerts" {
                        (table_head(&["When (UTC)", "What", "Alert", "To"]))
                        tbody class="nhsuk-table__body" {
                            @for alert in &counts.alerts {
                                tr class="nhsuk-table__row" {
                                    td class="nhsuk-table__cell" { (alert.time) }
                                    td class="nhsuk-table__cell" { (action_words(&alert.action)) }
                                    td class="nhsuk-table__cell" { (alert.detail) }
                                    td class="nhsuk-table__cell" { (alert.agency) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Overview", viewer, content)
}

/// The audit log's filters, as the form posts them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditFilter {
    /// From this day (YYYY-MM-DD), inclusive.
    #[serde(default)]
    pub(crate) from: String,
    /// Until this day, inclusive.
    #[serde(default)]
    pub(crate) until: String,
    #[serde(default)]
    pub(crate) agency: String,
    /// An action's code (`profile_read`).
    #[serde(default)]
    pub(crate) action: String,
    /// `allowed`, `denied` or `failed`.
    #[serde(default)]
    pub(crate) outcome: String,
    /// The child's NHS number: posted in the body, never in a URL.
    #[serde(default)]
    pub(crate) nhs_number: String,
    /// The page to show next.
    #[serde(default)]
    pub(crate) page_token: String,
}

/// An entry's outcome as the form names it.
const OUTCOMES: [(&str, v1::AuditOutcome); 3] = [
    ("allowed", v1::AuditOutcome::Allowed),
    ("denied", v1::AuditOutcome::Denied),
    ("failed", v1::AuditOutcome::Failed),
];

/// How many entries a page shows.
const PAGE_SIZE: u32 = 50;

fn bad(field: &str, reason: &str) -> tonic::Status {
    tonic::Status::invalid_argument(format!("{field}: {reason}"))
}

/// The start of `day` (UK time) as a contract timestamp; `end` for the next day's start.
fn day_start(field: &str, day: &str, next: bool) -> Result<prost_types::Timestamp, tonic::Status> {
    let date: jiff::civil::Date = day.parse().map_err(|_| bad(field, "expected a date such as 2026-11-30"))?;
    let date = if next { date.tomorrow().map_err(|_| bad(field, "is out of range"))? } else { date };
    let zoned = date.to_zoned(jiff::tz::TimeZone::get("Europe/London").map_err(|_| bad(field, "no time zone"))?);
    let zoned = zoned.map_err(|_| bad(field, "is out of range"))?;
    Ok(prost_types::Timestamp { seconds: zoned.timestamp().as_second(), nanos: 0 })
}

impl AuditFilter {
    /// The query the filter asks for.
    pub(crate) fn to_request(&self) -> Result<v1::QueryEntriesRequest, tonic::Status> {
        let action = match self.action.as_str() {
            "" => v1::AuditAction::Unspecified,
            code => v1::AuditAction::from_str_name(&format!("AUDIT_ACTION_{}", code.to_uppercase()))
                .ok_or_else(|| bad("action", "is not an action"))?,
        };
        let outcome = match self.outcome.as_str() {
            "" => v1::AuditOutcome::Unspecified,
            name => OUTCOMES
                .iter()
                .find(|(code, _)| *code == name)
                .map(|(_, outcome)| *outcome)
                .ok_or_else(|| bad("outcome", "must be allowed, denied or failed"))?,
        };
        let child = match self.nhs_number.trim() {
            "" => None,
            text => {
                // Any format a person types: the broker checks the number itself.
                let digits: String = text.chars().filter(char::is_ascii_digit).collect();
                Some(v1::ChildRef { nhs_number: digits })
            }
        };
        Ok(v1::QueryEntriesRequest {
            from_time: (!self.from.is_empty()).then(|| day_start("from", &self.from, false)).transpose()?,
            until_time: (!self.until.is_empty()).then(|| day_start("until", &self.until, true)).transpose()?,
            agency_id: self.agency.trim().to_owned(),
            action: action as i32,
            outcome: outcome as i32,
            child,
            page: Some(v1::PageRequest { page_size: PAGE_SIZE, page_token: self.page_token.clone() }),
        })
    }

    /// The NHS number as shown: masked, all but the last four digits.
    fn masked(&self) -> Option<String> {
        let number = NhsNumber::parse(self.nhs_number.trim(), &NhsNumberPolicy::development()).ok()?;
        Some(number.to_string())
    }
}

fn action_words(code: &str) -> String {
    tio_audit::entry::Action::from_code(code).map_or_else(|| code.to_owned(), |action| action.plain_words().to_owned())
}

/// The audit log's form, and the page of entries it found.
pub(crate) fn audit(filter: &AuditFilter, found: Option<&v1::QueryEntriesResponse>, viewer: &Viewer<'_>) -> Markup {
    let actions = tio_audit::entry::Action::ALL;
    let content = html! {
        form method="post" action="/audit" novalidate {
            (viewer.csrf_field())
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="nhs_number" { "Child's NHS number (optional)" }
                div class="nhsuk-hint" { "Sent in the form, never in the address; shown masked." }
                input class="nhsuk-input nhsuk-input--width-10" id="nhs_number" name="nhs_number" type="text"
                    inputmode="numeric" autocomplete="off" value=(filter.nhs_number);
            }
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="agency" { "Agency id" }
                input class="nhsuk-input nhsuk-input--width-20" id="agency" name="agency" type="text" value=(filter.agency);
            }
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="action" { "What was done" }
                select class="nhsuk-select" id="action" name="action" {
                    option value="" { "Anything" }
                    @for action in actions {
                        option value=(action.code()) selected[filter.action == action.code()] { (action.plain_words()) }
                    }
                }
            }
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="outcome" { "Outcome" }
                select class="nhsuk-select" id="outcome" name="outcome" {
                    option value="" { "Any" }
                    @for (code, _) in OUTCOMES {
                        option value=(code) selected[filter.outcome == code] { (code) }
                    }
                }
            }
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="from" { "From (YYYY-MM-DD)" }
                input class="nhsuk-input nhsuk-input--width-10" id="from" name="from" type="date" value=(filter.from);
            }
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="until" { "Until (YYYY-MM-DD)" }
                input class="nhsuk-input nhsuk-input--width-10" id="until" name="until" type="date" value=(filter.until);
            }
            button class="nhsuk-button" type="submit" id="search" { "Search" }
        }
        @if let Some(found) = found {
            h2 { "Entries" }
            @if found.entries.is_empty() {
                p id="no-entries" { "No entries match." }
            } @else {
                table class="nhsuk-table" id="entries" {
                    caption class="nhsuk-table__caption" { (found.entries.len()) " entries" }
                    (table_head(&["Entry", "When (UTC)", "Who", "What", "Outcome", "Child", "Why"]))
                    tbody class="nhsuk-table__body" {
                        @for entry in &found.entries {
                            @let actor = entry.actor.clone().unwrap_or_default();
                            tr class="nhsuk-table__row" {
                                td class="nhsuk-table__cell" {
                                    a href={ "/entry/" (entry.leaf_index) } { (entry.leaf_index) }
                                }
                                td class="nhsuk-table__cell" { (when(entry.time.as_ref())) }
                                td class="nhsuk-table__cell" { (actor.id) " (" (actor.professional_id) ")" }
                                td class="nhsuk-table__cell" { (action_words(&action_code(entry))) }
                                td class="nhsuk-table__cell" { (outcome_code(entry)) }
                                td class="nhsuk-table__cell" {
                                    @match (filter.masked(), entry.child_index.is_empty()) {
                                        (_, true) => "",
                                        (Some(masked), false) => (masked),
                                        (None, false) => { "index " code { (entry.child_index.chars().take(8).collect::<String>()) "…" } },
                                    }
                                }
                                td class="nhsuk-table__cell" { (entry.reason) " " (entry.detail) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = found.page.as_ref().map(|page| page.next_page_token.as_str()).filter(|token| !token.is_empty()) {
                form method="post" action="/audit" {
                    (viewer.csrf_field())
                    input type="hidden" name="nhs_number" value=(filter.nhs_number);
                    input type="hidden" name="agency" value=(filter.agency);
                    input type="hidden" name="action" value=(filter.action);
                    input type="hidden" name="outcome" value=(filter.outcome);
                    input type="hidden" name="from" value=(filter.from);
                    input type="hidden" name="until" value=(filter.until);
                    input type="hidden" name="page_token" value=(next);
                    button class="nhsuk-button nhsuk-button--secondary" type="submit" id="next-page" { "Next page" }
                }
            }
        }
    };
    layout("Audit log", viewer, content)
}

/// The child's page: the NHS number, posted.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChildForm {
    /// The child's NHS number: posted in the body, never in a URL.
    #[serde(default)]
    pub(crate) nhs_number: String,
}

impl ChildForm {
    /// The report the form asks for.
    pub(crate) fn to_request(&self) -> Result<v1::SubjectAccessReportRequest, tonic::Status> {
        let digits: String = self.nhs_number.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Err(bad("nhs_number", "is required"));
        }
        Ok(v1::SubjectAccessReportRequest { child: Some(v1::ChildRef { nhs_number: digits }), ..Default::default() })
    }

    /// The NHS number as shown: masked, all but the last four digits.
    pub(crate) fn masked(&self) -> String {
        NhsNumber::parse(self.nhs_number.trim(), &NhsNumberPolicy::development())
            .map_or_else(|_| "the child".to_owned(), |number| number.to_string())
    }
}

/// A child's page: the form, and the subject-access report it found.
pub(crate) fn child(
    form: &ChildForm,
    report: Option<&v1::SubjectAccessReportResponse>,
    languages: &[(&str, String)],
    viewer: &Viewer<'_>,
) -> Markup {
    let content = html! {
        form method="post" action="/child" novalidate {
            (viewer.csrf_field())
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="nhs_number" { "Child's NHS number" }
                div class="nhsuk-hint" { "Sent in the form, never in the address; shown masked." }
                input class="nhsuk-input nhsuk-input--width-10" id="nhs_number" name="nhs_number" type="text"
                    inputmode="numeric" autocomplete="off" value=(form.nhs_number);
            }
            button class="nhsuk-button" type="submit" id="show" { "Show who saw what" }
        }
        @if let Some(report) = report {
            h2 { "The family's report" }
            p { "The same report in plain words for the family, in their language, to print or download as a PDF." }
            form method="post" action="/child/family" {
                (viewer.csrf_field())
                input type="hidden" name="nhs_number" value=(form.nhs_number);
                div class="nhsuk-form-group" {
                    label class="nhsuk-label" for="language" { "The family's language" }
                    select class="nhsuk-select" id="language" name="language" {
                        @for (tag, name) in languages {
                            option value=(tag) lang=(tag) { (name) }
                        }
                    }
                }
                button class="nhsuk-button nhsuk-button--secondary" type="submit" id="family" { "Make the family's report" }
            }
            @for (title, id, actions) in TIMELINES {
                @let lines: Vec<&v1::SubjectAccessLine> = report.lines.iter().filter(|line| actions.contains(&line.action())).collect();
                @if !lines.is_empty() {
                    h2 { (title) }
                    (report_table(id, &lines))
                }
            }
            h2 { "Who saw " (form.masked()) "'s information, when, and why" }
            @if report.lines.is_empty() {
                p id="no-lines" { "Nothing is recorded about this child." }
            } @else {
                (report_table("report", &report.lines.iter().collect::<Vec<_>>()))
            }
        }
    };
    layout("A child's record", viewer, content)
}

/// One entry: every field as stored (its canonical form: blind indexes and ciphertext,
/// nothing personal in plain text), and whether its inclusion in a signed checkpoint
/// verified (`Ok` with the checkpoint's size).
pub(crate) fn entry(entry: &v1::AuditEntry, verdict: Result<u64, String>, viewer: &Viewer<'_>) -> Markup {
    let pretty = serde_json_pretty(&entry.canonical_json);
    let content = html! {
        p id="proof" {
            @match &verdict {
                Ok(size) if viewer.pinned => strong class="nhsuk-tag nhsuk-tag--green" { "In the log: proved in the checkpoint of " (size) " entries signed with your pinned key" },
                Ok(size) => strong class="nhsuk-tag nhsuk-tag--yellow" { "In the log: proved in the checkpoint of " (size) " entries signed with the broker's key" },
                Err(err) => strong class="nhsuk-tag nhsuk-tag--red" { "NOT proved: " (err) },
            }
        }
        h2 { "What happened" }
        p { (action_words(&action_code(entry))) ", " (outcome_code(entry)) ", at " (when(entry.time.as_ref())) " UTC" }
        h2 { "Every field, as the log holds it" }
        pre id="canonical" { (pretty) }
        p { a href="/audit" { "Back to the audit log" } }
    };
    layout(&format!("Audit entry {}", entry.leaf_index), viewer, content)
}

/// The entry's canonical JSON laid out one field per line (or as it is, if it is not
/// JSON).
fn serde_json_pretty(canonical: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(canonical)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(canonical).into_owned())
}

/// The child's page's timelines: a title, the table's id, and the actions it gathers
/// from the report, every revision in order.
const TIMELINES: [(&str, &str, &[v1::AuditAction]); 3] = [
    ("Consents, every revision", "consents", &[v1::AuditAction::ConsentRecorded, v1::AuditAction::ConsentWithdrawn]),
    (
        "Care relationships",
        "relationships",
        &[v1::AuditAction::RelationshipDeclared, v1::AuditAction::RelationshipEnded],
    ),
    (
        "Safeguarding shares, objections and corrections",
        "shares-objections-corrections",
        &[
            v1::AuditAction::SafeguardingDeclared,
            v1::AuditAction::SafeguardingRenewed,
            v1::AuditAction::SafeguardingEnded,
            v1::AuditAction::ObjectionRaised,
            v1::AuditAction::ObjectionWithdrawn,
            v1::AuditAction::UpdateCorrected,
            v1::AuditAction::UpdateRetracted,
        ],
    ),
];

/// Report lines as a table: when, who, what, which information, why.
fn report_table(id: &str, lines: &[&v1::SubjectAccessLine]) -> Markup {
    html! {
        table class="nhsuk-table" id=(id) {
            (table_head(&["When (UTC)", "Who", "What", "Information", "Why"]))
            tbody class="nhsuk-table__body" {
                @for line in lines {
                    tr class="nhsuk-table__row" {
                        td class="nhsuk-table__cell" { (when(line.time.as_ref())) }
                        td class="nhsuk-table__cell" { (line.agency_name) " (" (line.professional_id) ")" }
                        td class="nhsuk-table__cell" {
                            (action_words(line.action().as_str_name().trim_start_matches("AUDIT_ACTION_").to_lowercase().as_str()))
                        }
                        td class="nhsuk-table__cell" {
                            (line.categories().map(|category| category.as_str_name().trim_start_matches("CATEGORY_").to_lowercase().replace('_', " ")).collect::<Vec<_>>().join(", "))
                        }
                        td class="nhsuk-table__cell" { (line.why) }
                    }
                }
            }
        }
    }
}

/// A table's header row.
pub(crate) fn table_head(columns: &[&str]) -> Markup {
    html! {
        thead class="nhsuk-table__head" {
            tr class="nhsuk-table__row" {
                @for column in columns {
                    th class="nhsuk-table__header" scope="col" { (column) }
                }
            }
        }
    }
}

/// A contract time as shown, in UTC.
fn when(time: Option<&prost_types::Timestamp>) -> String {
    time.and_then(|time| jiff::Timestamp::new(time.seconds, 0).ok())
        .map(|time| time.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn action_code(entry: &v1::AuditEntry) -> String {
    entry.action().as_str_name().trim_start_matches("AUDIT_ACTION_").to_lowercase()
}

fn outcome_code(entry: &v1::AuditEntry) -> String {
    entry.outcome().as_str_name().trim_start_matches("AUDIT_OUTCOME_").to_lowercase()
}

/// The broker's refusal, as a page.
pub(crate) fn error(status: &tonic::Status, viewer: &Viewer<'_>) -> Markup {
    let content = html! {
        div class="nhsuk-error-summary" role="alert" tabindex="-1" {
            h2 class="nhsuk-error-summary__title" { "The broker refused" }
            div class="nhsuk-error-summary__body" { p { (status.message()) } }
        }
        p { a href="/audit" { "Back to the audit log" } }
    };
    layout("Something went wrong", viewer, content)
}

/// A horizontal bar chart, drawn on the server as SVG (no script), with the numbers
/// written beside the bars and the whole said in its accessible name.
pub(crate) fn bar_chart(id: &str, title: &str, bars: &[(String, u64)]) -> Markup {
    const LABEL: u32 = 230;
    const BAR: u32 = 330;
    const ROW: u32 = 26;
    let max = bars.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let height = ROW * u32::try_from(bars.len()).unwrap_or(u32::MAX / ROW).max(1);
    let said = bars.iter().map(|(label, n)| format!("{label}: {n}")).collect::<Vec<_>>().join("; ");
    html! {
        figure class="nhsuk-u-margin-bottom-5" id=(id) {
            figcaption class="nhsuk-body nhsuk-u-font-weight-bold" { (title) }
            @if bars.is_empty() {
                p class="nhsuk-body-s" { "None yet." }
            } @else {
                svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label={ (title) ": " (said) }
                    width="640" height=(height) viewBox={ "0 0 640 " (height) } {
                    @for (row, (label, n)) in bars.iter().enumerate() {
                        @let y = u32::try_from(row).unwrap_or(0) * ROW;
                        @let width = u32::try_from(u64::from(BAR) * n / max).unwrap_or(BAR).max(u32::from(*n > 0));
                        text x="0" y=(y + 17) font-size="14" fill="#212b32" { (label) }
                        rect x=(LABEL) y=(y + 4) width=(width) height="18" fill="#005eb8" {}
                        text x=(LABEL + width + 6) y=(y + 17) font-size="14" fill="#212b32" { (n) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_becomes_the_query_the_broker_reads() {
        let filter = AuditFilter {
            from: "2026-07-01".into(),
            until: "2026-07-01".into(),
            agency: " school ".into(),
            action: "profile_read".into(),
            outcome: "denied".into(),
            nhs_number: "999 007 9196".into(),
            page_token: "t".into(),
        };
        let request = filter.to_request().unwrap();
        assert_eq!(request.child.as_ref().unwrap().nhs_number, "9990079196");
        assert_eq!(request.agency_id, "school");
        assert_eq!(request.action(), v1::AuditAction::ProfileRead);
        assert_eq!(request.outcome(), v1::AuditOutcome::Denied);
        // A UK day: 1 July starts at 23:00 UTC the day before (BST), and runs to the next.
        let from = request.from_time.unwrap().seconds;
        let until = request.until_time.unwrap().seconds;
        assert_eq!(jiff::Timestamp::from_second(from).unwrap().to_string(), "2026-06-30T23:00:00Z");
        assert_eq!(until - from, 86_400);
        assert_eq!(filter.masked().as_deref(), Some("*** *** 9196"));

        for (bad, field) in [
            (AuditFilter { action: "sneak".into(), ..AuditFilter::default() }, "action"),
            (AuditFilter { outcome: "maybe".into(), ..AuditFilter::default() }, "outcome"),
            (AuditFilter { from: "1 July".into(), ..AuditFilter::default() }, "from"),
        ] {
            let status = bad.to_request().unwrap_err();
            assert!(status.message().starts_with(field), "{}", status.message());
        }
    }

    #[test]
    fn bar_charts_scale_to_the_largest_bar_and_say_their_numbers() {
        let bars = [("no consent".to_owned(), 10), ("<b>".to_owned(), 5), ("none".to_owned(), 0)];
        let chart = bar_chart("c", "Refusals", &bars).into_string();
        assert!(chart.contains(r#"width="330""#) && chart.contains(r#"width="165""#), "{chart}");
        assert!(chart.contains(r#"aria-label="Refusals: no consent: 10; &lt;b&gt;: 5; none: 0""#), "{chart}");
        assert!(!chart.contains("<b>"), "labels are escaped");
        assert!(bar_chart("e", "Empty", &[]).into_string().contains("None yet."));
    }

    #[test]
    fn values_are_escaped() {
        let filter = AuditFilter { agency: "<script>alert(1)</script>".into(), ..AuditFilter::default() };
        let page = audit(&filter, None, &Viewer::signed_out(true)).into_string();
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
    }
}
