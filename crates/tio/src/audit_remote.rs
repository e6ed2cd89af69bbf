//! `tio audit query|export|checkpoint|report`: reading a broker's audit log over
//! mutual TLS, as an auditor or admin.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use tio_audit::entry::{Action, AuditEntry};
use tio_auditor::canonical_entry;
use tio_auditor::report::{write_csv_report, write_json_report, write_text_report};
use tio_auditor::table::write_table;
use tio_auditor::time::local_time;
use tio_core::NhsNumber;
use tio_proto::v1;

use crate::cli::{AuditQueryArgs, AuditReportArgs, QueryFormat, ReportFormat};
use crate::connection::{ConnectionArgs, UsageError};

/// Entries asked for per query page.
const QUERY_PAGE: u32 = 500;

/// `tio audit query`: entries matching the filters, as a table or JSON lines.
pub(crate) async fn query(args: AuditQueryArgs) -> anyhow::Result<()> {
    let child = args.nhs_number.as_deref().map(parse_nhs_number).transpose()?;
    let mut request = v1::QueryEntriesRequest {
        from_time: args.from.as_deref().map(|text| parse_time("--from", text)).transpose()?,
        until_time: args.until.as_deref().map(|text| parse_time("--until", text)).transpose()?,
        agency_id: args.agency.unwrap_or_default(),
        action: match args.action.as_deref() {
            None => 0,
            Some(code) => action_value(code)?,
        },
        outcome: match args.outcome.as_deref() {
            None => 0,
            Some(code) => outcome_value(code)?,
        },
        child: child.map(|child| v1::ChildRef { nhs_number: child.digits() }),
        page: None,
    };
    let client = args.connection.connect().await?;
    let mut audit = client.audit();
    let mut entries = Vec::new();
    loop {
        let wanted = args.limit.saturating_sub(entries.len());
        request.page = Some(v1::PageRequest {
            page_size: QUERY_PAGE.min(u32::try_from(wanted).unwrap_or(u32::MAX)),
            page_token: request.page.take().map(|page| page.page_token).unwrap_or_default(),
        });
        let response =
            audit.query_entries(client.request(request.clone())).await.map_err(tio_client::ClientError::from)?;
        let response = response.into_inner();
        entries.extend(response.entries);
        let next = response.page.map(|page| page.next_page_token).unwrap_or_default();
        if next.is_empty() || entries.len() >= args.limit {
            break;
        }
        request.page = Some(v1::PageRequest { page_size: 0, page_token: next });
    }
    entries.truncate(args.limit);
    let entries: Vec<AuditEntry> = entries.iter().map(canonical_entry).collect::<Result<_, _>>()?;
    let mut out = std::io::stdout().lock();
    match args.format {
        QueryFormat::Json => {
            for entry in &entries {
                writeln!(out, "{}", String::from_utf8_lossy(&entry.canonical_bytes()))?;
            }
        }
        QueryFormat::Table => {
            let rows: Vec<[String; 7]> = entries
                .iter()
                .map(|entry| {
                    [
                        entry.leaf_index.to_string(),
                        local_time(entry.time_micros),
                        entry.action.clone(),
                        entry.outcome.clone(),
                        format!("{}:{}", entry.actor.role, entry.actor.id),
                        entry.categories.join(","),
                        entry.reason.clone(),
                    ]
                })
                .collect();
            write_table(&mut out, ["LEAF", "TIME", "ACTION", "OUTCOME", "ACTOR", "CATEGORIES", "REASON"], &rows)?;
            writeln!(out, "{} entries", entries.len())?;
        }
    }
    Ok(())
}

/// `tio audit export --out DIR`: every entry the export's checkpoint covers, and the
/// checkpoint, written so that `tio audit verify DIR` can check them offline.
pub(crate) async fn export(out: &Path, connection: &ConnectionArgs) -> anyhow::Result<()> {
    let client = connection.connect().await?;
    let exported = tio_auditor::export::export_log(&client, out, true).await?;
    println!(
        "exported {} entries and the checkpoint of tree size {} to {}",
        exported.entries,
        exported.tree_size,
        out.display()
    );
    println!(
        "verify with: tio audit public-key{} > tio-audit.pub && tio audit verify {} --public-key tio-audit.pub",
        connection.describe(),
        out.display()
    );
    Ok(())
}

/// `tio audit public-key` against a broker: prints the verifier key on stdout and its
/// fingerprint on stderr, after checking that the two agree.
pub(crate) async fn public_key(connection: &ConnectionArgs) -> anyhow::Result<()> {
    let client = connection.connect().await?;
    let key = client
        .audit()
        .get_public_key(client.request(v1::GetPublicKeyRequest {}))
        .await
        .map_err(tio_client::ClientError::from)?
        .into_inner();
    let verifier = tio_audit::note::Verifier::parse(&key.verifier_key)
        .map_err(|err| anyhow::anyhow!("the broker sent a key that does not parse: {err}"))?;
    if verifier.fingerprint() != key.fingerprint {
        bail!("the broker's fingerprint does not match its key");
    }
    println!("{verifier}");
    eprintln!("fingerprint: sha256:{} (compare it with the one your deployment published)", key.fingerprint);
    Ok(())
}

/// `tio audit checkpoint`: prints (or writes) the latest signed checkpoint.
pub(crate) async fn checkpoint(out: Option<&Path>, connection: &ConnectionArgs) -> anyhow::Result<()> {
    let client = connection.connect().await?;
    let signed = client
        .audit()
        .get_checkpoint(client.request(v1::GetCheckpointRequest {}))
        .await
        .map_err(tio_client::ClientError::from)?
        .into_inner();
    match out {
        Some(path) => {
            std::fs::write(path, &signed.signed_note).with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote the checkpoint of tree size {} to {}", signed.tree_size, path.display());
        }
        None => print!("{}", signed.signed_note),
    }
    Ok(())
}

/// `tio audit report`: the subject-access report for one child.
pub(crate) async fn report(args: AuditReportArgs) -> anyhow::Result<()> {
    let child = parse_nhs_number(&args.nhs_number)?;
    let request = v1::SubjectAccessReportRequest {
        child: Some(v1::ChildRef { nhs_number: child.digits() }),
        from_time: args.from.as_deref().map(|text| parse_time("--from", text)).transpose()?,
        until_time: args.until.as_deref().map(|text| parse_time("--until", text)).transpose()?,
    };
    let client = args.connection.connect().await?;
    let lines = client
        .audit()
        .subject_access_report(client.request(request))
        .await
        .map_err(tio_client::ClientError::from)?
        .into_inner()
        .lines;
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Text => write_text_report(&mut out, &child, &lines)?,
        ReportFormat::Json => write_json_report(&mut out, &lines)?,
        ReportFormat::Csv => write_csv_report(out, &lines)?,
    }
    Ok(())
}

/// Checks an NHS number's form and check digit before anything is sent; the server
/// applies its own range policy.
pub(crate) fn parse_nhs_number(text: &str) -> Result<NhsNumber, UsageError> {
    NhsNumber::parse_checked(text).map_err(|err| UsageError::new(format!("--nhs-number {err}")))
}

/// Parses an RFC 3339 time (`2026-11-23T09:30:00Z`) or a date (`2026-11-23`, midnight
/// local time).
pub(crate) fn parse_time(flag: &str, text: &str) -> Result<prost_types::Timestamp, UsageError> {
    let bad = || UsageError::new(format!("{flag} `{text}`: expected a date (2026-11-23) or an RFC 3339 time"));
    let timestamp = match text.parse::<jiff::Timestamp>() {
        Ok(timestamp) => timestamp,
        Err(_) => {
            let date: jiff::civil::Date = text.parse().map_err(|_| bad())?;
            date.to_zoned(jiff::tz::TimeZone::system()).map_err(|_| bad())?.timestamp()
        }
    };
    Ok(prost_types::Timestamp { seconds: timestamp.as_second(), nanos: timestamp.subsec_nanosecond() })
}

/// Returns the filter value of an action code such as `profile_read`.
fn action_value(code: &str) -> Result<i32, UsageError> {
    Action::from_code(code)
        .and_then(|action| v1::AuditAction::from_str_name(&format!("AUDIT_ACTION_{}", action.code().to_uppercase())))
        .map(|action| action as i32)
        .ok_or_else(|| {
            let codes: Vec<&str> = Action::ALL.iter().map(|action| action.code()).collect();
            UsageError::new(format!("--action `{code}`: expected one of {}", codes.join(", ")))
        })
}

/// Returns the filter value of an outcome code such as `denied`.
fn outcome_value(code: &str) -> Result<i32, UsageError> {
    v1::AuditOutcome::from_str_name(&format!("AUDIT_OUTCOME_{}", code.to_uppercase()))
        .filter(|outcome| *outcome != v1::AuditOutcome::Unspecified)
        .map(|outcome| outcome as i32)
        .ok_or_else(|| UsageError::new(format!("--outcome `{code}`: expected allowed, denied or failed")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dates_or_rfc3339() {
        let exact = parse_time("--from", "2026-11-23T09:30:00Z").unwrap();
        assert_eq!((exact.seconds, exact.nanos), (1_795_426_200, 0));
        assert!(parse_time("--from", "2026-11-23").is_ok());
        let err = parse_time("--until", "yesterday").unwrap_err();
        assert!(err.to_string().starts_with("--until `yesterday`"), "{err}");
    }

    #[test]
    fn actions_and_outcomes_are_named_by_their_codes() {
        assert_eq!(action_value("profile_read").unwrap(), v1::AuditAction::ProfileRead as i32);
        assert!(action_value("PROFILE_READ").unwrap_err().to_string().contains("audit_read"));
        assert_eq!(outcome_value("denied").unwrap(), v1::AuditOutcome::Denied as i32);
        assert!(outcome_value("unspecified").is_err());
    }
}
