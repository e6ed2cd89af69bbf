//! Telling the agencies that recorded a parent's consents to review them as the child
//! grows up: 90 days before the 16th birthday (from which the consents are shown to
//! review and the young person may decide) and the 18th (when they lapse), an alert to
//! each agency, raised once per birthday by the broker itself. The days are the domain
//! core's (`tio_core::age::consent_review_due`); the schedule is the broker's duties
//! task (`runtime::retention::run`).

use std::collections::BTreeSet;

use tio_audit::entry::{Action, Actor, AuditEntry, Outcome};
use tio_core::age::consent_review_due;
use tio_core::{ConsentState, Date, Timestamp};

use crate::app::broker::Broker;
use crate::app::error::ServiceError;
use crate::runtime::retention::BROKER_ROLE;

/// The kind of alert a review is.
pub(crate) const CONSENT_REVIEW_ALERT: &str = "consent_review";

/// Raises every review alert due on `today` not raised yet. Returns how many it raised.
pub(crate) async fn raise_due(broker: &Broker, today: Date, now: Timestamp) -> Result<u64, ServiceError> {
    let store = broker.store();
    let mut raised = 0;
    let mut pages = store.child_pages();
    while let Some(page) = pages.next_page()? {
        for facts in page {
            let Some(age) = facts.date_of_birth.and_then(|born| consent_review_due(born, today)) else { continue };
            if store.review_alert_raised(facts.child, age)? {
                continue;
            }
            let Some(child) = store.child_at(facts.child)? else { continue };
            // A parent's consents still in force, and who recorded them.
            let consents: Vec<_> = store
                .latest_consents(&child)?
                .into_iter()
                .filter(|revision| {
                    revision.consent.giver_role.holds_parental_responsibility()
                        && revision.consent.state == ConsentState::Active
                })
                .collect();
            if consents.is_empty() {
                // Nothing to review yet; a consent recorded later in the window is
                // caught by a later pass.
                continue;
            }
            let agencies: BTreeSet<String> =
                consents.iter().map(|revision| revision.recorded_by.as_str().to_owned()).collect();
            let ids: Vec<&str> = consents.iter().map(|revision| revision.consent.id.0.as_str()).collect();
            let what = if age == 16 {
                "turns 16 within 90 days: the young person may then decide for themselves; review with them"
            } else {
                "turns 18 within 90 days, when a parent's consents lapse: ask the young person for their own"
            };
            let mut entry = AuditEntry {
                action: Action::ConsentReviewDue.code().to_owned(),
                actor: Actor { role: BROKER_ROLE.to_owned(), id: "consent-review".to_owned(), ..Actor::default() },
                outcome: Outcome::Allowed.code().to_owned(),
                time_micros: now.unix_micros(),
                alert: CONSENT_REVIEW_ALERT.to_owned(),
                alert_to: agencies.into_iter().collect(),
                detail: format!("the child {what} (parental consents {})", ids.join(", ")),
                ..AuditEntry::default()
            };
            broker.name_child(&mut entry, &child)?;
            let once = tio_store::cursors::raise_review_alert(facts.child, age);
            // Raised by another pass meanwhile if not by this one.
            raised += u64::from(crate::app::alerts::raise_once(store, once, &entry).await?);
        }
    }
    Ok(raised)
}
