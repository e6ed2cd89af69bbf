//! The overview's counts: entries per day, refusals by reason, deliveries by receiving
//! agency, and the latest alerts. Counts only, nothing about any child.
//!
//! The console reads the log once, at start, through the broker's export (as an
//! auditor may), and after that only the entries added since, so the overview costs
//! the same with ten entries in the log or a million.

use std::collections::{BTreeMap, VecDeque};

use tio_proto::v1;

/// How many alerts the overview lists.
pub(crate) const RECENT_ALERTS: usize = 5;
/// How many days the entries-per-day chart shows.
pub(crate) const DAYS: i64 = 14;

/// One alert, as the overview lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Alert {
    /// When (UTC, to the second).
    pub(crate) time: String,
    /// The action's code (`ehc_deadline_alert`).
    pub(crate) action: String,
    /// To whom (agency ids).
    pub(crate) agency: String,
    /// Its kind, in words (`protection flag access`); never personal data.
    pub(crate) detail: String,
}

/// The counts, through leaf `next - 1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// The next leaf to count.
    pub(crate) next: u64,
    /// Entries per UK day.
    pub(crate) per_day: BTreeMap<jiff::civil::Date, u64>,
    /// Refusals by reason code.
    pub(crate) refusals: BTreeMap<String, u64>,
    /// Deliveries by receiving agency.
    pub(crate) deliveries: BTreeMap<String, u64>,
    /// The latest alerts, newest first.
    pub(crate) alerts: VecDeque<Alert>,
}

impl Counts {
    /// Counts one entry (in leaf order).
    pub(crate) fn add(&mut self, entry: &v1::AuditEntry) {
        self.next = self.next.max(entry.leaf_index + 1);
        let time = entry.time.as_ref().and_then(|time| jiff::Timestamp::new(time.seconds, 0).ok());
        if let Some(day) = entry.time.as_ref().and_then(uk_day) {
            *self.per_day.entry(day).or_default() += 1;
        }
        if entry.outcome() == v1::AuditOutcome::Denied {
            let reason = if entry.reason.is_empty() { "unstated" } else { entry.reason.as_str() };
            *self.refusals.entry(reason.to_owned()).or_default() += 1;
        }
        if entry.action() == v1::AuditAction::Delivery && entry.outcome() == v1::AuditOutcome::Allowed {
            *self.deliveries.entry(entry.recipient_agency_id.clone()).or_default() += 1;
        }
        // An entry that raised an alert (the AlertService's) says so, with its kind.
        if !entry.alert.is_empty() {
            self.alerts.push_front(Alert {
                time: time.map(|time| time.strftime("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default(),
                action: entry.action().as_str_name().trim_start_matches("AUDIT_ACTION_").to_lowercase(),
                agency: entry.alert_to.join(", "),
                detail: entry.alert.replace('_', " "),
            });
            self.alerts.truncate(RECENT_ALERTS);
        }
    }

    /// Entries on each of the `DAYS` days up to `today`, oldest first (days without
    /// entries count 0).
    pub(crate) fn recent_days(&self, today: jiff::civil::Date) -> Vec<(jiff::civil::Date, u64)> {
        (0..DAYS)
            .rev()
            .filter_map(|back| today.checked_sub(jiff::Span::new().days(back)).ok())
            .map(|day| (day, self.per_day.get(&day).copied().unwrap_or(0)))
            .collect()
    }
}

/// The UK day of a contract time (the day birthdays and deadlines count in, as the
/// domain core reckons it: `tio_core::Timestamp::uk_date`).
pub(crate) fn uk_day(time: &prost_types::Timestamp) -> Option<jiff::civil::Date> {
    tio_core::Timestamp::from_unix_seconds(time.seconds).uk_date()
}

/// Today, in the UK.
pub(crate) fn uk_today() -> Option<jiff::civil::Date> {
    tio_core::Timestamp::from_unix_micros(jiff::Timestamp::now().as_microsecond()).uk_date()
}

/// The counts kept between requests, and how to bring them up to date.
#[derive(Default)]
pub(crate) struct Summary {
    /// The counts being brought up to date (one refresh at a time).
    counting: tokio::sync::Mutex<Counts>,
    /// The counts as of the last refresh that finished.
    latest: std::sync::Mutex<Option<Counts>>,
}

/// What the overview can show.
pub(crate) enum Activity {
    /// Up to date.
    Counted(Counts),
    /// Another request is counting (the first count, at start, reads the whole log):
    /// the last finished count, if any.
    Counting(Option<Counts>),
}

impl Summary {
    /// Counts the entries added since the last count (all of them, the first time),
    /// through the latest checkpoint, with `client`, waiting for a count under way.
    pub(crate) async fn refresh(&self, client: &tio_client::Client) -> Result<Counts, tonic::Status> {
        let mut counts = self.counting.lock().await;
        self.count(&mut counts, client).await
    }

    /// Brings the counts up to date unless a count is under way, in which case the page
    /// does not wait for it: it shows the last finished count.
    pub(crate) async fn current(&self, client: &tio_client::Client) -> Result<Activity, tonic::Status> {
        match self.counting.try_lock() {
            Ok(mut counts) => Ok(Activity::Counted(self.count(&mut counts, client).await?)),
            Err(_) => {
                Ok(Activity::Counting(self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()))
            }
        }
    }

    async fn count(&self, counts: &mut Counts, client: &tio_client::Client) -> Result<Counts, tonic::Status> {
        let request = client.request(v1::ExportEntriesRequest { from_index: counts.next, to_index: 0 });
        let mut stream = client.audit().export_entries(request).await?.into_inner();
        // Bounded by the checkpoint's size, after which the broker ends the stream.
        while let Some(message) = stream.message().await? {
            if let Some(v1::export_entries_response::Item::Entry(entry)) = message.item {
                counts.add(&entry);
            }
        }
        *self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(counts.clone());
        Ok(counts.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(leaf: u64, seconds: i64, action: v1::AuditAction, outcome: v1::AuditOutcome) -> v1::AuditEntry {
        v1::AuditEntry {
            leaf_index: leaf,
            time: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            action: action as i32,
            outcome: outcome as i32,
            ..Default::default()
        }
    }

    #[test]
    fn entries_are_counted_by_uk_day_refusal_reason_and_receiving_agency() {
        let mut counts = Counts::default();
        // 2026-07-01 23:30 UTC is 2 July in the UK (BST).
        let late = jiff::civil::date(2026, 7, 1).at(23, 30, 0, 0).to_zoned(jiff::tz::TimeZone::UTC).unwrap();
        let seconds = late.timestamp().as_second();
        let mut refused = entry(0, seconds, v1::AuditAction::ProfileRead, v1::AuditOutcome::Denied);
        refused.reason = "no_consent".into();
        counts.add(&refused);
        let mut delivered = entry(1, seconds, v1::AuditAction::Delivery, v1::AuditOutcome::Allowed);
        delivered.recipient_agency_id = "school".into();
        counts.add(&delivered);
        counts.add(&delivered.clone());
        let mut alert = entry(3, seconds + 60, v1::AuditAction::EhcDeadlineAlert, v1::AuditOutcome::Allowed);
        alert.alert = "ehc_deadline_soon".into();
        alert.alert_to = vec!["send-team".into(), "school".into()];
        counts.add(&alert);

        assert_eq!(counts.next, 4);
        assert_eq!(counts.per_day.get(&jiff::civil::date(2026, 7, 2)), Some(&4));
        assert_eq!(counts.refusals.get("no_consent"), Some(&1));
        assert_eq!(counts.deliveries.get("school"), Some(&2));
        assert_eq!(counts.alerts.len(), 1);
        assert_eq!(counts.alerts[0].agency, "send-team, school");
        assert_eq!(counts.alerts[0].detail, "ehc deadline soon");
        assert_eq!(counts.alerts[0].action, "ehc_deadline_alert");

        let days = counts.recent_days(jiff::civil::date(2026, 7, 3));
        assert_eq!(days.len(), 14);
        assert_eq!(days.last().unwrap().0, jiff::civil::date(2026, 7, 3));
        assert_eq!(days[12], (jiff::civil::date(2026, 7, 2), 4));
        assert_eq!(days.iter().map(|(_, n)| n).sum::<u64>(), 4);
    }

    #[test]
    fn only_the_latest_alerts_are_kept_newest_first() {
        let mut counts = Counts::default();
        for leaf in 0..12 {
            let mut alert =
                entry(leaf, 1_785_000_000 + leaf as i64, v1::AuditAction::TransitionAlert, v1::AuditOutcome::Allowed);
            alert.alert = "transition_milestone_missed".into();
            counts.add(&alert);
        }
        counts.add(&entry(12, 1_785_000_100, v1::AuditAction::Delivery, v1::AuditOutcome::Allowed));
        assert_eq!(counts.alerts.len(), RECENT_ALERTS);
        assert!(counts.alerts[0].time > counts.alerts[1].time);
        assert!(counts.alerts.iter().all(|alert| alert.detail == "transition milestone missed"), "only alerts");
    }
}
