//! `tio.v1.ReportingService`: requests to and from `app::reporting`.

use std::sync::Arc;

use tio_core::AgencyId;
use tio_core::ehc::metrics::{Adviser, Figure, Month, SendMetrics};
use tio_proto::v1;
use tonic::{Request, Response, Status};

use crate::app::broker::Broker;
use crate::app::error::ServiceError;
use crate::grpc::assessments::{adviser_to_proto, exception_code_to_proto};
use crate::grpc::request::call_of;
use crate::grpc::status::into_status;

/// The most months one report covers.
const MAX_MONTHS: i32 = 36;

/// `tio.v1.ReportingService`: see [`crate::app::reporting`].
#[derive(Clone)]
pub(crate) struct Reporting {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
}

fn invalid(field: &str, reason: &str) -> ServiceError {
    ServiceError::InvalidArgument(vec![tio_core::FieldViolation::new(field, reason)])
}

/// Parses `YYYY-MM`.
fn month_from_proto(field: &str, text: &str) -> Result<Month, ServiceError> {
    let parsed = text.split_once('-').and_then(|(year, month)| {
        let (year, month): (i16, i8) = (year.parse().ok()?, month.parse().ok()?);
        (text.len() == 7 && (1900..=2200).contains(&year) && (1..=12).contains(&month)).then_some(Month { year, month })
    });
    parsed.ok_or_else(|| invalid(field, "must be a month such as 2026-11"))
}

fn month_to_proto(month: Month) -> String {
    format!("{:04}-{:02}", month.year, month.month)
}

fn months_between(from: Month, to: Month) -> i32 {
    (i32::from(to.year) - i32::from(from.year)) * 12 + i32::from(to.month) - i32::from(from.month)
}

fn figure_to_proto(figure: Figure) -> Option<v1::Figure> {
    Some(match figure {
        Figure::Shown(value) => v1::Figure { value, suppressed: false },
        Figure::Suppressed => v1::Figure { value: 0, suppressed: true },
    })
}

fn metrics_to_proto(metrics: &SendMetrics) -> v1::SendMetrics {
    v1::SendMetrics {
        months: metrics
            .months
            .iter()
            .map(|month| v1::MonthFigures {
                month: month_to_proto(month.month),
                opened: figure_to_proto(month.opened),
                decisions: figure_to_proto(month.decisions),
                decisions_within_6_weeks: figure_to_proto(month.decisions_within_6_weeks),
                plans_issued: figure_to_proto(month.plans_issued),
                plans_within_20_weeks: figure_to_proto(month.plans_within_20_weeks),
                exceptions: month
                    .exceptions
                    .iter()
                    .map(|(code, children)| v1::ExceptionFigure {
                        code: exception_code_to_proto(*code) as i32,
                        children: figure_to_proto(*children),
                    })
                    .collect(),
            })
            .collect(),
        turnaround: metrics
            .turnaround
            .iter()
            .map(|row| {
                let (adviser_type, agency_id) = match &row.adviser {
                    Adviser::Type(adviser) => (adviser_to_proto(*adviser) as i32, String::new()),
                    Adviser::Agency(agency) => (0, agency.as_str().to_owned()),
                };
                v1::AdviceTurnaround {
                    month: month_to_proto(row.month),
                    adviser_type,
                    agency_id,
                    advice: figure_to_proto(row.advice),
                    median_days: row.median_days,
                }
            })
            .collect(),
        aged_17_without_referral: figure_to_proto(metrics.aged_17_without_referral),
    }
}

#[tonic::async_trait]
impl v1::reporting_service_server::ReportingService for Reporting {
    async fn get_send_metrics(
        &self,
        request: Request<v1::GetSendMetricsRequest>,
    ) -> Result<Response<v1::SendMetrics>, Status> {
        let call = call_of(&self.broker, &request).map_err(into_status)?;
        let message = request.get_ref();
        let work = async {
            let today = call.now.uk_date().ok_or_else(|| ServiceError::Internal("the clock is out of range".into()))?;
            let to = match message.to_month.as_str() {
                "" => Month::of(today),
                text => month_from_proto("to_month", text)?,
            };
            let from = match message.from_month.as_str() {
                "" => {
                    let back = i32::from(to.year) * 12 + i32::from(to.month) - 1 - 11;
                    Month {
                        year: i16::try_from(back / 12).unwrap_or(to.year),
                        month: i8::try_from(back % 12 + 1).unwrap_or(1),
                    }
                }
                text => month_from_proto("from_month", text)?,
            };
            if to < from {
                return Err(invalid("to_month", "must not be before from_month"));
            }
            if months_between(from, to) >= MAX_MONTHS {
                return Err(invalid("to_month", "must be at most 36 months from from_month"));
            }
            let run_by = match message.run_by_agency_id.as_str() {
                "" => None,
                text => Some(
                    AgencyId::parse("run_by_agency_id", text)
                        .map_err(|violation| ServiceError::InvalidArgument(vec![violation]))?,
                ),
            };
            self.broker.send_metrics(&call, from, to, run_by).await
        };
        let metrics = work.await.map_err(into_status)?;
        Ok(Response::new(metrics_to_proto(&metrics)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_as_yyyy_mm_only() {
        assert_eq!(month_from_proto("m", "2026-11").unwrap(), Month { year: 2026, month: 11 });
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-00", "2026-011"] {
            assert!(month_from_proto("m", bad).is_err(), "{bad}");
        }
        assert_eq!(months_between(Month { year: 2025, month: 12 }, Month { year: 2026, month: 2 }), 2);
    }
}
