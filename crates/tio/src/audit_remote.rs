//! `tio audit query|export|checkpoint|report`: reading a broker's audit log over
//! mutual TLS, as an auditor or admin.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tio_audit::entry::{Action, AuditEntry};
use tio_audit::export::ExportLine;
use tio_core::NhsNumber;
use tio_proto::v1;

use crate::cli::{AuditQueryArgs, AuditReportArgs, QueryFormat, ReportFormat};
use crate::connection::{ConnectionArgs, UsageError};
use crate::output::write_table;

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
    let entries: Vec<AuditEntry> = entries.iter().map(canonical_entry).collect::<anyhow::Result<_>>()?;
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
pub(crate) async fn export(out: &Path, connection: &ConnectionArgs, say_how_to_verify: bool) -> anyhow::Result<()> {
    let entries_path = out.join("entries.jsonl");
    let checkpoint_path = out.join("checkpoint");
    for path in [&entries_path, &checkpoint_path] {
        if path.exists() {
            bail!("{} already exists; export into a new directory", path.display());
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let client = connection.connect().await?;
    let mut stream = client
        .audit()
        .export_entries(client.request(v1::ExportEntriesRequest { from_index: 0, to_index: 0 }))
        .await
        .map_err(tio_client::ClientError::from)?
        .into_inner();

    // Written under a temporary name and renamed when complete, so that an interrupted
    // export never leaves a file that looks whole.
    let partial = out.join("entries.jsonl.partial");
    let mut writer = std::io::BufWriter::new(
        std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?,
    );
    let bar = ProgressBar::hidden();
    let mut expected = None;
    let mut checkpoint = None;
    while let Some(item) = stream.message().await.map_err(tio_client::ClientError::from)? {
        match item.item {
            Some(v1::export_entries_response::Item::Range(range)) => {
                bar.set_length(range.to_index - range.from_index);
                bar.set_style(
                    ProgressStyle::with_template("exporting {bar:40} {pos}/{len} entries ({eta})")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                expected = Some(range.from_index);
            }
            Some(v1::export_entries_response::Item::Entry(entry)) => {
                let next = expected.context("the server sent entries before their range")?;
                let entry = canonical_entry(&entry)?;
                if entry.leaf_index != next {
                    bail!("the server sent entry {} where entry {next} was due", entry.leaf_index);
                }
                writeln!(writer, "{}", ExportLine::new(entry).to_json())?;
                expected = Some(next + 1);
                bar.inc(1);
            }
            Some(v1::export_entries_response::Item::Checkpoint(signed)) => checkpoint = Some(signed),
            None => bail!("the server sent an empty export item"),
        }
    }
    bar.finish_and_clear();
    let checkpoint = checkpoint.context("the export ended without its checkpoint")?;
    writer.flush()?;
    writer.into_inner().context("cannot write the export")?.sync_all()?;
    std::fs::rename(&partial, &entries_path)?;
    std::fs::write(&checkpoint_path, &checkpoint.signed_note)
        .with_context(|| format!("cannot write {}", checkpoint_path.display()))?;
    println!(
        "exported {} entries and the checkpoint of tree size {} to {}",
        expected.unwrap_or(0),
        checkpoint.tree_size,
        out.display()
    );
    if say_how_to_verify {
        println!(
            "verify with: tio audit public-key{} > tio-audit.pub && tio audit verify {} --public-key tio-audit.pub",
            connection.describe(),
            out.display()
        );
    }
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
    let rows: Vec<ReportRow> = lines.iter().map(ReportRow::from_line).collect();
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Text => write_text_report(&mut out, &child, &lines)?,
        ReportFormat::Json => {
            let json: Vec<serde_json::Value> = rows.iter().map(ReportRow::to_json).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        ReportFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record([
                "time",
                "agency_id",
                "agency_name",
                "professional_id",
                "what",
                "outcome",
                "information",
                "why",
                "leaf_index",
            ])?;
            for row in &rows {
                csv.write_record(
                    [
                        row.time.as_str(),
                        &row.agency_id,
                        &row.agency_name,
                        &row.professional_id,
                        &row.what,
                        &row.outcome,
                        &row.categories.join("; "),
                        &row.why,
                        &row.leaf_index.to_string(),
                    ]
                    .map(spreadsheet_safe),
                )?;
            }
            csv.flush()?;
        }
    }
    Ok(())
}

/// Writes the subject-access report in plain words, as a family's caseworker reads it.
pub(crate) fn write_text_report(
    out: &mut impl Write,
    child: &NhsNumber,
    lines: &[v1::SubjectAccessLine],
) -> std::io::Result<()> {
    let rows: Vec<ReportRow> = lines.iter().map(ReportRow::from_line).collect();
    writeln!(out, "Subject-access report for the child with NHS number {}", child.reveal())?;
    writeln!(out, "Every access to, sharing of and refusal about this child's information in the audit log.")?;
    writeln!(out)?;
    if rows.is_empty() {
        return writeln!(out, "Nothing is recorded about this child.");
    }
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            let who = if row.professional_id.is_empty() {
                row.agency_name.clone()
            } else {
                format!("{} (professional {})", row.agency_name, row.professional_id)
            };
            [row.time.clone(), who, row.what.clone(), row.categories.join(", "), row.why.clone()]
        })
        .collect();
    write_table(out, ["WHEN", "WHO", "WHAT", "INFORMATION", "WHY"], &table)?;
    writeln!(out)?;
    writeln!(out, "{} entries. Times are local ({}).", rows.len(), local_zone_name())
}

/// One report line, ready to print.
struct ReportRow {
    time: String,
    agency_id: String,
    agency_name: String,
    professional_id: String,
    what: String,
    outcome: String,
    categories: Vec<String>,
    why: String,
    leaf_index: u64,
}

impl ReportRow {
    fn from_line(line: &v1::SubjectAccessLine) -> ReportRow {
        // Saturating: a time out of range prints as a wrong time, never a crash.
        let micros = line
            .time
            .as_ref()
            .map_or(0, |time| time.seconds.saturating_mul(1_000_000).saturating_add(i64::from(time.nanos / 1_000)));
        let action = line.action().as_str_name().trim_start_matches("AUDIT_ACTION_").to_lowercase();
        ReportRow {
            time: local_time(micros),
            agency_id: line.agency_id.clone(),
            agency_name: line.agency_name.clone(),
            professional_id: line.professional_id.clone(),
            what: Action::from_code(&action).map_or(action, |action| action.plain_words().to_owned()),
            outcome: line.outcome().as_str_name().trim_start_matches("AUDIT_OUTCOME_").to_lowercase(),
            categories: line
                .categories()
                .map(|category| category.as_str_name().trim_start_matches("CATEGORY_").to_lowercase().replace('_', " "))
                .collect(),
            why: line.why.clone(),
            leaf_index: line.leaf_index,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "time": self.time,
            "agency_id": self.agency_id,
            "agency_name": self.agency_name,
            "professional_id": self.professional_id,
            "what": self.what,
            "outcome": self.outcome,
            "information": self.categories,
            "why": self.why,
            "leaf_index": self.leaf_index,
        })
    }
}

/// Returns the entry an audit entry message carries, from its canonical bytes, after
/// checking that they are canonical (so the leaf hash computed here is the log's).
fn canonical_entry(message: &v1::AuditEntry) -> anyhow::Result<AuditEntry> {
    let entry: AuditEntry = serde_json::from_slice(&message.canonical_json)
        .with_context(|| format!("entry {} from the server does not decode", message.leaf_index))?;
    if entry.canonical_bytes() != message.canonical_json || entry.leaf_index != message.leaf_index {
        bail!("entry {} from the server is not in canonical form", message.leaf_index);
    }
    Ok(entry)
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

/// Formats a time in the local time zone, to the second.
fn local_time(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map_or_else(
        |_| format!("(time {micros})"),
        |time| time.to_zoned(jiff::tz::TimeZone::system()).strftime("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

fn local_zone_name() -> String {
    jiff::Zoned::now().strftime("%Z, UTC%:z").to_string()
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

/// Stops a spreadsheet from reading a cell as a formula (CSV injection): a cell that
/// starts with `=`, `+`, `-`, `@`, tab or carriage return gets a leading apostrophe.
fn spreadsheet_safe(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell.to_owned() }
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

    #[test]
    fn csv_cells_cannot_be_formulas() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("-1"), "'-1");
        assert_eq!(spreadsheet_safe("Meadow Primary"), "Meadow Primary");
    }

    #[test]
    fn entries_must_arrive_in_canonical_form() {
        let entry = AuditEntry { leaf_index: 4, action: "delivery".into(), ..AuditEntry::default() };
        let message = v1::AuditEntry { leaf_index: 4, canonical_json: entry.canonical_bytes(), ..Default::default() };
        assert_eq!(canonical_entry(&message).unwrap(), entry);
        let spaced = v1::AuditEntry { canonical_json: serde_json::to_vec_pretty(&entry).unwrap(), ..message.clone() };
        assert!(canonical_entry(&spaced).is_err());
        assert!(canonical_entry(&v1::AuditEntry { leaf_index: 5, ..message }).is_err());
    }
}
