//! Reading the audit log: queries, exports, checkpoints, proofs and the subject-access
//! report.
//!
//! Only admins and auditors get an [`AuditReader`] ([`Broker::audit_reader`] records
//! anyone else's refusal), and every read is recorded, durably, before it is answered:
//! nobody reads the log without leaving a trace in it.

use tio_audit::checkpoint::SignedCheckpoint;
use tio_audit::entry::{Action, AuditEntry, Outcome};
use tio_audit::merkle::Hash;
use tio_core::{DenyReason, FieldViolation, NhsNumber, ROLE_NOT_PERMITTED, Role, Service, Timestamp};

use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;

/// The most entries one query call examines. A rare filter over a long log returns
/// what it found so far and a page token to go on, instead of holding the call open.
pub(crate) const MAX_SCANNED_PER_CALL: u64 = 200_000;

/// Entries read from the store at a time.
const SCAN_PAGE: usize = 2048;

/// Which entries a query wants; every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EntryFilter {
    /// At or after this time.
    pub(crate) from: Option<Timestamp>,
    /// Before this time.
    pub(crate) until: Option<Timestamp>,
    /// The agency that acted or received.
    pub(crate) agency_id: Option<String>,
    /// The action.
    pub(crate) action: Option<Action>,
    /// The outcome.
    pub(crate) outcome: Option<Outcome>,
    /// The child's blind index (hex).
    pub(crate) child_index: Option<String>,
}

impl EntryFilter {
    /// Whether `entry` passes every filter given.
    pub(crate) fn matches(&self, entry: &AuditEntry) -> bool {
        let time = Timestamp::from_unix_micros(entry.time_micros);
        self.from.is_none_or(|from| time >= from)
            && self.until.is_none_or(|until| time < until)
            && self.agency_id.as_ref().is_none_or(|id| entry.actor.id == *id || entry.recipient_agency_id == *id)
            && self.action.is_none_or(|action| entry.action == action.code())
            && self.outcome.is_none_or(|outcome| entry.outcome == outcome.code())
            && self.child_index.as_ref().is_none_or(|index| entry.child_index == *index)
    }

    /// Refuses a time range that ends before it starts.
    fn validate(&self, from_field: &str, until_field: &str) -> Result<(), ServiceError> {
        if let (Some(from), Some(until)) = (self.from, self.until)
            && until < from
        {
            return Err(invalid(until_field, format!("must not be before {from_field}")));
        }
        Ok(())
    }
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryPage {
    /// The matching entries, in log order.
    pub(crate) entries: Vec<AuditEntry>,
    /// Where the next page starts, if the log goes on.
    pub(crate) next_leaf: Option<u64>,
}

/// What an export covers: entries `[from, to)` and the checkpoint they are proved by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportPlan {
    /// The first leaf index.
    pub(crate) from: u64,
    /// One past the last leaf index.
    pub(crate) to: u64,
    /// The checkpoint covering them, signed for this export.
    pub(crate) checkpoint: SignedCheckpoint,
}

/// One line of a subject-access report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportLine {
    /// The entry's leaf index, to look it up or prove it.
    pub(crate) leaf_index: u64,
    /// When.
    pub(crate) time: Timestamp,
    /// The agency (or admin, or auditor) concerned: the recipient of a delivery, else
    /// who acted.
    pub(crate) agency_id: String,
    /// Its registered name, or a description of the role.
    pub(crate) agency_name: String,
    /// The professional acting, if named.
    pub(crate) professional_id: String,
    /// What was done.
    pub(crate) action: Action,
    /// How it ended.
    pub(crate) outcome: Outcome,
    /// Category names.
    pub(crate) categories: Vec<String>,
    /// Why, in plain words.
    pub(crate) why: String,
    /// The grounds `why` words: a refusal's reason code, the consent (or objection)
    /// and revision, the care relationship, and the basis of a disclosure without
    /// consent, as the entry recorded them.
    pub(crate) grounds: Grounds,
}

/// The recorded grounds of a report line, for a client that words them itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Grounds {
    /// A refusal's reason code, else empty.
    pub(crate) reason: String,
    /// The consent or objection id, or empty.
    pub(crate) consent_id: String,
    /// Its revision, or 0.
    pub(crate) consent_revision: u32,
    /// The care relationship id, or empty.
    pub(crate) relationship_id: String,
    /// The basis of a disclosure without consent, or empty.
    pub(crate) basis: String,
}

/// The audit log as an admitted admin or auditor sees it.
pub(crate) struct AuditReader<'a> {
    broker: &'a Broker,
    call: &'a Call,
}

impl Broker {
    /// Admits `call` to the audit log if its role may read it; otherwise records the
    /// refusal and returns PERMISSION_DENIED.
    pub(crate) async fn audit_reader<'a>(&'a self, call: &'a Call) -> Result<AuditReader<'a>, ServiceError> {
        self.admit(call, Service::Audit, Action::AuditRead).await?;
        Ok(AuditReader { broker: self, call })
    }
}

impl AuditReader<'_> {
    /// Records this read, naming the child when it is about one.
    async fn record_read(&self, child: Option<&NhsNumber>) -> Result<(), ServiceError> {
        let mut entry = self.broker.entry(self.call, Action::AuditRead, Outcome::Allowed);
        if let Some(child) = child {
            self.broker.name_child(&mut entry, child)?;
        }
        self.broker.write_audit(&[entry]).await
    }

    /// Returns up to `page_size` entries from leaf `start` on that match `filter` (and
    /// `child`, turned into its blind index here). `page_size` is one
    /// [`crate::grpc::paging::page_size`] allowed.
    pub(crate) async fn query(
        &self,
        mut filter: EntryFilter,
        child: Option<&NhsNumber>,
        start: u64,
        page_size: usize,
    ) -> Result<QueryPage, ServiceError> {
        filter.validate("from_time", "until_time")?;
        debug_assert!((1..=crate::grpc::paging::MAX_PAGE_SIZE).contains(&page_size), "checked by paging::page_size");
        filter.child_index = child.map(|child| self.broker.store().child_index(child).to_hex());
        self.record_read(child).await?;
        let mut entries = Vec::new();
        let mut next = start;
        while next - start < MAX_SCANNED_PER_CALL {
            let page = self.broker.audit().entries_from(next, SCAN_PAGE)?;
            let at_end = page.len() < SCAN_PAGE;
            for entry in page {
                next = entry.leaf_index + 1;
                if filter.matches(&entry) {
                    entries.push(entry);
                    if entries.len() == page_size {
                        return Ok(QueryPage { entries, next_leaf: Some(next) });
                    }
                }
            }
            if at_end {
                return Ok(QueryPage { entries, next_leaf: None });
            }
        }
        Ok(QueryPage { entries, next_leaf: Some(next) })
    }

    /// Signs a checkpoint covering the log (this read included) and returns what an
    /// export of `[from, to)` sends; `to` 0 means the whole checkpoint.
    pub(crate) async fn export(&self, from: u64, to: u64) -> Result<ExportPlan, ServiceError> {
        self.record_read(None).await?;
        let checkpoint = self.broker.audit().checkpoint().await?;
        let size = checkpoint.checkpoint.size;
        let to = if to == 0 { size } else { to };
        if to > size {
            return Err(invalid("to_index", format!("must be at most the log's size, {size}")));
        }
        if from > to {
            return Err(invalid("from_index", format!("must be at most to_index, {to}")));
        }
        Ok(ExportPlan { from, to, checkpoint })
    }

    /// Returns the key that verifies the log's checkpoints.
    pub(crate) async fn public_key(&self) -> Result<tio_audit::note::Verifier, ServiceError> {
        self.record_read(None).await?;
        Ok(self.broker.audit().verifier())
    }

    /// Returns the latest signed checkpoint, making the first one if there is none.
    pub(crate) async fn checkpoint(&self) -> Result<SignedCheckpoint, ServiceError> {
        self.record_read(None).await?;
        let audit = self.broker.audit();
        match audit.latest_signed_checkpoint()? {
            Some(signed) => Ok(signed),
            None => Ok(audit.checkpoint().await?),
        }
    }

    /// Returns the proof that leaf `index` is in the tree of `size` entries.
    pub(crate) async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ServiceError> {
        self.record_read(None).await?;
        let built = self.broker.audit().build().await?;
        if size == 0 || size > built {
            return Err(invalid("tree_size", format!("must be 1 to the log's size, {built}")));
        }
        if index >= size {
            return Err(invalid("leaf_index", format!("must be below tree_size, {size}")));
        }
        Ok(self.broker.audit().inclusion_proof(index, size)?)
    }

    /// Returns the proof that the tree of `old_size` entries is a prefix of the tree of
    /// `new_size`.
    pub(crate) async fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ServiceError> {
        self.record_read(None).await?;
        let built = self.broker.audit().build().await?;
        if new_size > built {
            return Err(invalid("new_size", format!("must be at most the log's size, {built}")));
        }
        if old_size > new_size {
            return Err(invalid("old_size", format!("must be at most new_size, {new_size}")));
        }
        Ok(self.broker.audit().consistency_proof(old_size, new_size)?)
    }

    /// Returns every entry about `child` in `[from, until)`, in plain terms: who
    /// accessed or received what, when, and why, and what was refused.
    pub(crate) async fn subject_access_report(
        &self,
        child: &NhsNumber,
        from: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<ReportLine>, ServiceError> {
        let filter = EntryFilter {
            from,
            until,
            child_index: Some(self.broker.store().child_index(child).to_hex()),
            ..EntryFilter::default()
        };
        filter.validate("from_time", "until_time")?;
        self.record_read(Some(child)).await?;
        // The family is not told of a safeguarding share until its review date has come
        // or it is over (telling could put the child at risk).
        let store = self.broker.store();
        let now = self.broker.now();
        let withheld: Vec<String> = store
            .latest_shares(&store.child(child))?
            .iter()
            .filter(|revision| !revision.disclosable(now))
            .map(|revision| revision.share.id.to_string())
            .collect();
        let mut lines = Vec::new();
        let mut next = 0;
        loop {
            let page = self.broker.audit().entries_from(next, SCAN_PAGE)?;
            let at_end = page.len() < SCAN_PAGE;
            for entry in page {
                next = entry.leaf_index + 1;
                if filter.matches(&entry) && !about_a_withheld_share(&entry, &withheld) {
                    lines.push(self.report_line(entry)?);
                }
            }
            if at_end {
                return Ok(lines);
            }
        }
    }

    fn report_line(&self, entry: AuditEntry) -> Result<ReportLine, ServiceError> {
        let damaged =
            |what: &str| ServiceError::Internal(format!("audit entry {} has an unknown {what}", entry.leaf_index));
        let action = Action::from_code(&entry.action).ok_or_else(|| damaged("action"))?;
        let outcome = Outcome::from_code(&entry.outcome).ok_or_else(|| damaged("outcome"))?;
        let (agency_id, role) = if entry.recipient_agency_id.is_empty() {
            (entry.actor.id.clone(), entry.actor.role.as_str())
        } else {
            (entry.recipient_agency_id.clone(), Role::Agency.as_str())
        };
        let agency_name = match role {
            "agency" => self
                .broker
                .registry()
                .agency(&agency_id)
                .map_or_else(|| format!("agency {agency_id} (no longer registered)"), |agency| agency.name),
            // The id of a person's certificate is often the role's own name ("auditor"),
            // so the role is said in words and the id kept apart.
            "admin" => format!("broker administrator ({agency_id})"),
            "auditor" => format!("auditor or data protection officer ({agency_id})"),
            crate::runtime::retention::BROKER_ROLE => format!("the broker itself ({agency_id})"),
            other => format!("{other} {agency_id}"),
        };
        let mut why = why(&entry, action, outcome);
        // Whom the broker told at once (an alert), by name as registered now; an agency
        // is not said to have been told of what it did itself.
        let told: Vec<String> = entry
            .alert_to
            .iter()
            .filter(|id| **id != entry.actor.id)
            .map(|id| self.broker.registry().agency(id).map_or_else(|| id.clone(), |agency| agency.name))
            .collect();
        if !told.is_empty() {
            why.push_str(&format!("; {} was told at once", told.join(" and ")));
        }
        Ok(ReportLine {
            leaf_index: entry.leaf_index,
            time: Timestamp::from_unix_micros(entry.time_micros),
            agency_id,
            agency_name,
            professional_id: entry.actor.professional_id,
            action,
            outcome,
            categories: entry.categories,
            why,
            grounds: Grounds {
                reason: if outcome == Outcome::Allowed { String::new() } else { entry.reason },
                consent_id: entry.consent_id,
                consent_revision: entry.consent_revision,
                relationship_id: entry.relationship_id,
                basis: entry.basis,
            },
        })
    }
}

/// Whether `entry` is about one of the `withheld` safeguarding shares (its declaration,
/// renewal or end, or a disclosure it allowed), or a refused attempt to declare one.
fn about_a_withheld_share(entry: &AuditEntry, withheld: &[String]) -> bool {
    let share = if entry.basis == crate::app::sharing::SAFEGUARDING_SHARE_BASIS {
        entry.detail.split(' ').next().unwrap_or_default()
    } else if [Action::SafeguardingDeclared, Action::SafeguardingRenewed, Action::SafeguardingEnded]
        .iter()
        .any(|action| action.code() == entry.action)
    {
        // A refused attempt names no share, and nothing was shared: the family is not
        // told of it either.
        if entry.consent_id.is_empty() {
            return true;
        }
        entry.consent_id.as_str()
    } else {
        return false;
    };
    withheld.iter().any(|id| id == share)
}

fn invalid(field: &str, reason: String) -> ServiceError {
    ServiceError::InvalidArgument(vec![FieldViolation::new(field, reason)])
}

/// Says why an entry's action was allowed or refused, in words a family's caseworker
/// can read out.
fn why(entry: &AuditEntry, action: Action, outcome: Outcome) -> String {
    match outcome {
        Outcome::Denied => format!("refused: {}", reason_in_plain_words(&entry.reason)),
        Outcome::Failed => {
            format!("failed: {}", if entry.reason.is_empty() { "an error in the broker" } else { &entry.reason })
        }
        Outcome::Allowed if action == Action::RelationshipRead => {
            "the agency's own records of its involvement".to_owned()
        }
        Outcome::Allowed if matches!(action, Action::RelationshipDeclared | Action::RelationshipEnded) => {
            format!("the agency's own declaration (care relationship {})", entry.relationship_id)
        }
        Outcome::Allowed if matches!(action, Action::ConsentRecorded | Action::ConsentWithdrawn) => format!(
            "recorded on the family's instruction (consent {}, revision {})",
            entry.consent_id, entry.consent_revision
        ),
        Outcome::Allowed
            if matches!(
                action,
                Action::SafeguardingDeclared | Action::SafeguardingRenewed | Action::SafeguardingEnded
            ) =>
        {
            format!(
                "recorded for the child's safety without the family's consent (safeguarding share {}, revision {}: {})",
                entry.consent_id,
                entry.consent_revision,
                entry.detail.replace('_', " ")
            )
        }
        Outcome::Allowed if matches!(action, Action::UpdateCorrected | Action::UpdateRetracted) => format!(
            "the publishing agency's own record ({} update {})",
            if action == Action::UpdateCorrected { "correcting" } else { "retracting" },
            entry.detail.strip_prefix("amends ").unwrap_or(&entry.detail)
        ),
        Outcome::Allowed if action == Action::ConsentReviewDue => format!("a scheduled reminder: {}", entry.detail),
        Outcome::Allowed if action == Action::EhcAssessmentRecorded => format!(
            "the council's statutory EHC needs assessment {} (revision {}: {})",
            entry.consent_id,
            entry.consent_revision,
            entry.detail.replace('_', " ").replace(':', ", ")
        ),
        Outcome::Allowed if action == Action::EhcAssessmentRead => {
            format!("it runs, advises on or is involved in the child's EHC needs assessment ({})", entry.detail)
        }
        Outcome::Allowed if action == Action::TransitionRecorded => format!(
            "the council's record of the young person's move to adult services (revision {}: {})",
            entry.consent_revision,
            entry.detail.replace('_', " ")
        ),
        Outcome::Allowed if action == Action::TransitionRead => {
            "it keeps, owns a step of, or may see the young person's move to adult services".to_owned()
        }
        Outcome::Allowed if action == Action::TransitionAlert => {
            format!("a scheduled reminder: {}", entry.detail.replace('_', " "))
        }
        Outcome::Allowed if action == Action::EhcDeadlineAlert => {
            format!("a scheduled reminder of assessment {}: {}", entry.consent_id, entry.detail.replace('_', " "))
        }
        Outcome::Allowed if action == Action::RetractionSent => {
            "it had been given the retracted update, so it was told".to_owned()
        }
        Outcome::Allowed if action == Action::ErasureSent => {
            "it had been given an update of the erased record, so it was told to erase it".to_owned()
        }
        Outcome::Allowed if action == Action::CorrectionSent => {
            let told = "it had been given the corrected update, so it was told";
            if entry.consent_id.is_empty() && entry.basis.is_empty() {
                format!("{told} (not the corrected value, which it may not see now)")
            } else {
                format!("{told}; sending the corrected value was {}", why(entry, Action::Delivery, outcome))
            }
        }
        Outcome::Allowed if matches!(action, Action::ObjectionRaised | Action::ObjectionWithdrawn) => format!(
            "recorded on the family's instruction (objection {}, revision {})",
            entry.consent_id, entry.consent_revision
        ),
        Outcome::Allowed => {
            let mut grounds = Vec::new();
            if !entry.consent_id.is_empty() {
                grounds.push(format!("consent {} (revision {})", entry.consent_id, entry.consent_revision));
            }
            if entry.basis == crate::app::sharing::SAFEGUARDING_SHARE_BASIS {
                let mut share = entry.detail.split(' ');
                grounds.push(format!(
                    "safeguarding share {} (revision {}), without consent",
                    share.next().unwrap_or_default(),
                    share.next().unwrap_or_default()
                ));
            }
            if entry.basis == crate::app::sharing::PROTECTION_FLAG_BASIS {
                grounds.push(format!(
                    "the council's {} flag, shared without consent ({})",
                    flag_level_words(&entry.detail),
                    entry.detail.split(' ').skip(1).map(basis_words).collect::<Vec<_>>().join(", ")
                ));
            }
            if !entry.relationship_id.is_empty() {
                grounds.push(format!("care relationship {}", entry.relationship_id));
            }
            if !grounds.is_empty() {
                let mut why = format!("allowed by {}", grounds.join(" and "));
                if !entry.overrides.is_empty() {
                    why.push_str(&format!(", over the family's objection {}", entry.overrides.join(", ")));
                }
                return why;
            }
            match action {
                Action::Publish => "the agency may share these categories".to_owned(),
                Action::AuditRead => "an audit or subject-access request".to_owned(),
                _ => "allowed".to_owned(),
            }
        }
    }
}

/// Names the level a flag entry's detail starts with, in words.
fn flag_level_words(detail: &str) -> &'static str {
    match detail.split(' ').next().and_then(tio_core::protection::FlagLevel::from_name) {
        Some(tio_core::protection::FlagLevel::ChildProtection) => "child-protection",
        Some(tio_core::protection::FlagLevel::LookedAfter) => "looked-after",
        None => "protection",
    }
}

/// Turns a recorded lawful basis or condition into the words of the law.
fn basis_words(code: &str) -> String {
    let words = match code {
        "public_task" => "public task, Art. 6(1)(e)",
        "legal_obligation" => "legal obligation, Art. 6(1)(c)",
        "health_or_social_care" => "health or social care, Art. 9(2)(h)",
        "substantial_public_interest" => "substantial public interest, Art. 9(2)(g)",
        other => return other.to_owned(),
    };
    words.to_owned()
}

/// Turns a reason code into plain words; an unknown code is shown as it is.
fn reason_in_plain_words(code: &str) -> String {
    let words = match code {
        code if code == DenyReason::AgencySuspended.code() => "the agency is suspended",
        code if code == DenyReason::NotPermittedForCategory.code() => {
            "the agency may not handle this kind of information"
        }
        code if code == DenyReason::NotInvolved.code() => "the agency is not involved in the child's care",
        code if code == DenyReason::NoConsent.code() => "no consent covers it",
        code if code == DenyReason::ConsentSuperseded.code() => "the young person now decides, and has not consented",
        code if code == DenyReason::ConsentNotYetValid.code() => "the consent had not yet started",
        code if code == DenyReason::ConsentExpired.code() => "the consent had expired",
        code if code == DenyReason::ConsentWithdrawn.code() => "the consent was withdrawn",
        code if code == DenyReason::ConsentLapsed.code() => {
            "the consent was a parent's, and the young person is now 18 and decides"
        }
        code if code == DenyReason::RecipientExcluded.code() => "the family excluded this agency",
        code if code == DenyReason::Objection.code() => "the family objected to this agency receiving it",
        crate::app::safeguarding::NOT_PERMITTED_FOR_SAFEGUARDING => "the agency may not declare safeguarding shares",
        crate::app::assessments::MAY_NOT_RUN_EHC_ASSESSMENTS => "the agency may not run EHC needs assessments",
        crate::app::assessments::NOT_ASKED_FOR_ADVICE => "the agency was not asked for this advice",
        crate::app::assessments::transitions::NOT_THE_MILESTONE_OWNER => "the agency does not own that step",
        ROLE_NOT_PERMITTED => "this kind of user may not do this",
        other => return other.to_owned(),
    };
    words.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: Action, outcome: Outcome) -> AuditEntry {
        AuditEntry {
            action: action.code().to_owned(),
            outcome: outcome.code().to_owned(),
            time_micros: 1_000,
            ..AuditEntry::default()
        }
    }

    #[test]
    fn filters_combine_and_time_ranges_are_half_open() {
        let mut delivery = entry(Action::Delivery, Outcome::Allowed);
        delivery.actor.id = "school".into();
        delivery.recipient_agency_id = "send-team".into();
        delivery.child_index = "ab".into();
        let at = Timestamp::from_unix_micros;
        let cases = [
            (EntryFilter::default(), true),
            (EntryFilter { agency_id: Some("send-team".into()), ..Default::default() }, true),
            (EntryFilter { agency_id: Some("school".into()), ..Default::default() }, true),
            (EntryFilter { agency_id: Some("gp".into()), ..Default::default() }, false),
            (
                EntryFilter { action: Some(Action::Delivery), outcome: Some(Outcome::Allowed), ..Default::default() },
                true,
            ),
            (EntryFilter { outcome: Some(Outcome::Denied), ..Default::default() }, false),
            (EntryFilter { child_index: Some("ab".into()), ..Default::default() }, true),
            (EntryFilter { child_index: Some("cd".into()), ..Default::default() }, false),
            (EntryFilter { from: Some(at(1_000)), until: Some(at(1_001)), ..Default::default() }, true),
            (EntryFilter { until: Some(at(1_000)), ..Default::default() }, false),
            (EntryFilter { from: Some(at(1_001)), ..Default::default() }, false),
        ];
        for (filter, expected) in cases {
            assert_eq!(filter.matches(&delivery), expected, "{filter:?}");
        }
        let backwards = EntryFilter { from: Some(at(2)), until: Some(at(1)), ..Default::default() };
        assert!(matches!(backwards.validate("from_time", "until_time"),
            Err(ServiceError::InvalidArgument(v)) if v[0].field == "until_time"));
    }

    #[test]
    fn reasons_are_explained_in_plain_words() {
        let mut refused = entry(Action::ProfileRead, Outcome::Denied);
        refused.reason = DenyReason::NotInvolved.code().to_owned();
        assert_eq!(
            why(&refused, Action::ProfileRead, Outcome::Denied),
            "refused: the agency is not involved in the child's care"
        );
        refused.reason = "something_new".into();
        assert_eq!(why(&refused, Action::ProfileRead, Outcome::Denied), "refused: something_new");

        let mut delivered = entry(Action::Delivery, Outcome::Allowed);
        delivered.consent_id = "c-1".into();
        delivered.consent_revision = 2;
        delivered.relationship_id = "r-9".into();
        assert_eq!(
            why(&delivered, Action::Delivery, Outcome::Allowed),
            "allowed by consent c-1 (revision 2) and care relationship r-9"
        );
        assert_eq!(
            why(&entry(Action::Publish, Outcome::Allowed), Action::Publish, Outcome::Allowed),
            "the agency may share these categories"
        );
    }

    /// The SEND journey's entries say what they record, never "allowed by consent".
    #[test]
    fn assessment_and_transition_entries_are_worded_as_what_they_are() {
        let mut step = entry(Action::EhcAssessmentRecorded, Outcome::Allowed);
        step.consent_id = "ehc-1".into();
        step.consent_revision = 3;
        step.detail = "advice_requested:medical_health due 2027-01-12".into();
        assert_eq!(
            why(&step, Action::EhcAssessmentRecorded, Outcome::Allowed),
            "the council's statutory EHC needs assessment ehc-1 (revision 3: advice requested, medical health due \
             2027-01-12)"
        );
        let mut milestone = entry(Action::TransitionRecorded, Outcome::Allowed);
        milestone.consent_revision = 2;
        milestone.detail = "adult_social_care_referral done on 2026-12-01".into();
        assert_eq!(
            why(&milestone, Action::TransitionRecorded, Outcome::Allowed),
            "the council's record of the young person's move to adult services (revision 2: adult social care \
             referral done on 2026-12-01)"
        );
        let mut refused = entry(Action::TransitionRecorded, Outcome::Denied);
        refused.reason = crate::app::assessments::transitions::NOT_THE_MILESTONE_OWNER.into();
        assert_eq!(
            why(&refused, Action::TransitionRecorded, Outcome::Denied),
            "refused: the agency does not own that step"
        );
        for action in
            [Action::EhcAssessmentRead, Action::EhcDeadlineAlert, Action::TransitionRead, Action::TransitionAlert]
        {
            assert!(
                !why(&entry(action, Outcome::Allowed), action, Outcome::Allowed).contains("may share"),
                "{action:?}"
            );
        }
    }

    #[test]
    fn every_deny_reason_has_plain_words() {
        for reason in DenyReason::ALL {
            assert_ne!(reason_in_plain_words(reason.code()), reason.code(), "{reason:?}");
        }
    }
}
