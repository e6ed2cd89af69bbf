//! The partnership's SEND measures (`tio_core::ehc::metrics`): counts only, none resting
//! on fewer than 5 children, for admins and auditors (the whole partnership, or one
//! SEND team's) and for a SEND team (its own assessments). Every report is audited.

use tio_audit::entry::{Action, Outcome};
use tio_core::ehc::assessment::Assessment;
use tio_core::ehc::metrics::{ChildRecords, Month, SendMetrics, send_metrics};
use tio_core::transition::Transition;
use tio_core::{AgencyId, Date, FieldViolation, Role, Service};
use tio_store::{Store, StoreError};

use crate::app::assessments::MAY_NOT_RUN_EHC_ASSESSMENTS;
use crate::app::broker::{Broker, Call};
use crate::app::error::ServiceError;

/// One child's records, owned, for the report.
struct Records {
    date_of_birth: Option<Date>,
    assessments: Vec<Assessment>,
    transition: Option<Transition>,
}

impl Broker {
    /// Returns the SEND measures for the months `from` to `to` to a caller that may see
    /// them: of `run_by`'s assessments only if given (admins and auditors), of its own
    /// for a SEND team.
    pub(crate) async fn send_metrics(
        &self,
        call: &Call,
        from: Month,
        to: Month,
        run_by: Option<AgencyId>,
    ) -> Result<SendMetrics, ServiceError> {
        let scope = match call.caller.identity.role {
            Role::Agency => {
                let agency = self.agency_call(call, Service::Reporting, Action::SendMetricsRead).await?;
                if !agency.may_run_ehc_assessments {
                    let mut entry = self.entry(call, Action::SendMetricsRead, Outcome::Denied);
                    entry.reason = MAY_NOT_RUN_EHC_ASSESSMENTS.to_owned();
                    self.write_audit(&[entry]).await?;
                    return Err(ServiceError::denied(
                        MAY_NOT_RUN_EHC_ASSESSMENTS,
                        "only a SEND team, an admin or an auditor reads the SEND measures",
                    ));
                }
                if run_by.is_some() {
                    return Err(ServiceError::InvalidArgument(vec![FieldViolation::new(
                        "run_by_agency_id",
                        "is for admins and auditors: a SEND team sees its own assessments",
                    )]));
                }
                Some(agency.id)
            }
            Role::Admin | Role::Auditor => {
                self.admit(call, Service::Reporting, Action::SendMetricsRead).await?;
                run_by
            }
        };
        let today = call.now.uk_date().ok_or_else(|| ServiceError::Internal("the clock is out of range".to_owned()))?;
        // Reading every child is blocking store work: off the async threads.
        let records = {
            let (store, scope) = (self.store().clone(), scope.clone());
            tokio::task::spawn_blocking(move || read_all(&store, scope.as_ref()))
                .await
                .map_err(|err| ServiceError::Internal(format!("the report's reading failed: {err}")))??
        };
        let children: Vec<ChildRecords<'_>> = records
            .iter()
            .enumerate()
            .map(|(ordinal, records)| ChildRecords {
                ordinal,
                date_of_birth: records.date_of_birth,
                assessments: &records.assessments,
                transition: records.transition.as_ref(),
            })
            .collect();
        let metrics = send_metrics(&children, from, to, today);
        let mut entry = self.entry(call, Action::SendMetricsRead, Outcome::Allowed);
        entry.detail = format!(
            "{}-{:02} to {}-{:02}, {}",
            from.year,
            from.month,
            to.year,
            to.month,
            scope.map_or_else(|| "the whole partnership".to_owned(), |agency| format!("assessments run by {agency}"))
        );
        self.write_audit(&[entry]).await?;
        Ok(metrics)
    }
}

/// Every child's assessments (of `run_by` only, if given), transition record and date
/// of birth; children with neither are left out.
fn read_all(store: &Store, run_by: Option<&AgencyId>) -> Result<Vec<Records>, StoreError> {
    let mut all = Vec::new();
    let mut pages = store.child_pages();
    while let Some(page) = pages.next_page()? {
        for facts in page {
            let Some(child) = store.child_at(facts.child)? else { continue };
            let mut assessments = store.latest_assessments(&child)?;
            assessments.retain(|assessment| run_by.is_none_or(|agency| assessment.run_by == *agency));
            let transition =
                store.transition(&child)?.filter(|transition| run_by.is_none_or(|agency| transition.run_by == *agency));
            if assessments.is_empty() && transition.is_none() {
                continue;
            }
            all.push(Records { date_of_birth: facts.date_of_birth, assessments, transition });
        }
    }
    Ok(all)
}
