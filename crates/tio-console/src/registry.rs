//! The registry pages (an admin's certificate only): every agency with its sector,
//! permissions and state; suspend and reinstate, each after a confirmation step, a
//! suspension with its reason. The broker decides and audits; a change is a form posted
//! with the session's own token (checked in `session`), so that another site cannot make
//! the browser post one.

use std::sync::Arc;

use axum::extract::{Extension, Form, Path, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use tio_proto::v1;

use crate::pages::Viewer;
use crate::session::SignedIn;
use crate::{Console, page_or_error, pages};

/// A change's form: the reason (a suspension), and whether this is the confirmed post.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChangeForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirmed: String,
}

/// The registry.
pub(crate) async fn list(State(console): State<Arc<Console>>, Extension(signed_in): Extension<SignedIn>) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    let client = &signed_in.client;
    let result = async {
        let agencies = client.admin().list_agencies(client.request(v1::ListAgenciesRequest {})).await?;
        Ok(page(&agencies.into_inner().agencies, None, &viewer))
    };
    page_or_error(result.await, &viewer)
}

/// Suspends or reinstates agency `id`: first a confirmation page, then, confirmed, the
/// change.
pub(crate) async fn change(
    State(console): State<Arc<Console>>,
    Extension(signed_in): Extension<SignedIn>,
    Path((id, what)): Path<(String, String)>,
    Form(form): Form<ChangeForm>,
) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    let client = &signed_in.client;
    let result = async {
        let suspend = match what.as_str() {
            "suspend" => true,
            "reinstate" => false,
            _ => return Err(tonic::Status::not_found("no such change")),
        };
        if form.confirmed != "yes" {
            return Ok(confirm(&id, suspend, &form.reason, &viewer));
        }
        let admin = client.admin();
        let changed = if suspend {
            let request = v1::SuspendAgencyRequest { agency_id: id.clone(), reason: form.reason.clone() };
            admin.clone().suspend_agency(client.request(request)).await?.into_inner()
        } else {
            let request = v1::ReinstateAgencyRequest { agency_id: id.clone() };
            admin.clone().reinstate_agency(client.request(request)).await?.into_inner()
        };
        let agencies = admin.clone().list_agencies(client.request(v1::ListAgenciesRequest {})).await?;
        let done = format!("{} is {}", changed.id, if changed.suspended { "suspended" } else { "reinstated" });
        Ok(page(&agencies.into_inner().agencies, Some(&done), &viewer))
    };
    page_or_error(result.await, &viewer)
}

fn page(agencies: &[v1::Agency], notice: Option<&str>, viewer: &Viewer<'_>) -> Markup {
    let content = html! {
        @if let Some(notice) = notice {
            div class="nhsuk-inset-text" id="notice" { p { (notice) } }
        }
        table class="nhsuk-table" id="agencies" {
            (pages::table_head(&["Agency", "Sector", "May", "State", "Change"]))
            tbody class="nhsuk-table__body" {
                @for agency in agencies {
                    tr class="nhsuk-table__row" id={ "agency-" (agency.id) } {
                        td class="nhsuk-table__cell" { (agency.name) br; code { (agency.id) } }
                        td class="nhsuk-table__cell" { (agency.sector().as_str_name().trim_start_matches("SECTOR_").to_lowercase().replace('_', " ")) }
                        td class="nhsuk-table__cell" {
                            (permissions(agency))
                        }
                        td class="nhsuk-table__cell" {
                            @if agency.suspended { strong class="nhsuk-tag nhsuk-tag--red" { "Suspended" } }
                            @else { strong class="nhsuk-tag nhsuk-tag--green" { "Active" } }
                        }
                        td class="nhsuk-table__cell" {
                            @let what = if agency.suspended { "reinstate" } else { "suspend" };
                            form method="post" action={ "/registry/" (agency.id) "/" (what) } {
                                (viewer.csrf_field())
                                button class="nhsuk-button nhsuk-button--secondary nhsuk-u-margin-bottom-0" type="submit" { (what) }
                            }
                        }
                    }
                }
            }
        }
    };
    pages::layout("The agency registry", viewer, content)
}

fn permissions(agency: &v1::Agency) -> String {
    let mut may = Vec::new();
    if agency.may_record_consent {
        may.push("record consent");
    }
    if agency.may_declare_safeguarding {
        may.push("declare safeguarding shares");
    }
    if agency.may_run_ehc_assessments {
        may.push("run EHC assessments");
    }
    format!(
        "publish {} of 7 categories, read {}; {}",
        agency.may_publish.len(),
        agency.may_read.len(),
        if may.is_empty() { "nothing else".to_owned() } else { may.join(", ") }
    )
}

/// The confirmation step.
fn confirm(id: &str, suspend: bool, reason: &str, viewer: &Viewer<'_>) -> Markup {
    let what = if suspend { "suspend" } else { "reinstate" };
    let content = html! {
        p { "You are about to " (what) " " code { (id) } "." @if suspend { " Every call it makes will be refused until it is reinstated." } }
        form method="post" action={ "/registry/" (id) "/" (what) } {
            (viewer.csrf_field())
            input type="hidden" name="confirmed" value="yes";
            @if suspend {
                div class="nhsuk-form-group" {
                    label class="nhsuk-label" for="reason" { "Why (recorded in the audit log)" }
                    textarea class="nhsuk-textarea" id="reason" name="reason" rows="3" { (reason) }
                }
            }
            button class="nhsuk-button nhsuk-button--warning" type="submit" id="confirm" { "Yes, " (what) }
        }
        p { a href="/registry" { "No, go back" } }
    };
    pages::layout(&format!("Confirm: {what} {id}"), viewer, content)
}
