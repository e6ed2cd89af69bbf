//! The subject-access report for one child, rendered for people: in plain words (as a
//! family's caseworker reads it), as JSON, or as CSV for a spreadsheet.

use std::io::Write;

use tio_audit::entry::Action;
use tio_core::NhsNumber;
use tio_proto::v1;

use crate::table::write_table;
use crate::time::{local_time, local_zone_name, timestamp_micros};

/// One report line, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// When, in local time to the second.
    pub time: String,
    /// The agency that acted.
    pub agency_id: String,
    /// Its name, as registered.
    pub agency_name: String,
    /// The professional who acted, if the agency named one.
    pub professional_id: String,
    /// What happened, in plain words.
    pub what: String,
    /// `allowed`, `denied` or `failed`.
    pub outcome: String,
    /// The kinds of information, in plain words.
    pub categories: Vec<String>,
    /// Why: the consent, relationship or refusal reason the broker recorded.
    pub why: String,
    /// The entry's index in the audit log, to find and prove it.
    pub leaf_index: u64,
}

impl ReportRow {
    /// The row of one line of the broker's report.
    pub fn from_line(line: &v1::SubjectAccessLine) -> ReportRow {
        let micros = line.time.as_ref().map_or(0, timestamp_micros);
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

    /// The row as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
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

/// Writes the report in plain words, as a family's caseworker reads it.
pub fn write_text_report(
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

/// Writes the report as a pretty-printed JSON array of rows.
pub fn write_json_report(out: &mut impl Write, lines: &[v1::SubjectAccessLine]) -> std::io::Result<()> {
    let json: Vec<serde_json::Value> = lines.iter().map(|line| ReportRow::from_line(line).to_json()).collect();
    writeln!(out, "{}", serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?)
}

/// Writes the report as CSV with a header row, every cell safe to open in a spreadsheet.
pub fn write_csv_report(out: impl Write, lines: &[v1::SubjectAccessLine]) -> Result<(), csv::Error> {
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
    for row in lines.iter().map(ReportRow::from_line) {
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
    Ok(())
}

/// Stops a spreadsheet from reading a cell as a formula (CSV injection): a cell that
/// starts with `=`, `+`, `-`, `@`, tab or carriage return gets a leading apostrophe.
fn spreadsheet_safe(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> v1::SubjectAccessLine {
        v1::SubjectAccessLine {
            agency_id: "school".into(),
            agency_name: "=Meadow Primary".into(),
            professional_id: "senco-patel".into(),
            action: v1::AuditAction::ProfileRead as i32,
            outcome: v1::AuditOutcome::Allowed as i32,
            categories: vec![v1::Category::CommunicationNeeds as i32],
            why: "consent c-1".into(),
            leaf_index: 7,
            ..Default::default()
        }
    }

    #[test]
    fn csv_cells_cannot_be_formulas() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("-1"), "'-1");
        assert_eq!(spreadsheet_safe("Meadow Primary"), "Meadow Primary");
        let mut out = Vec::new();
        write_csv_report(&mut out, &[line()]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(",'=Meadow Primary,senco-patel,"), "{text}");
    }

    #[test]
    fn the_text_report_speaks_plainly() {
        let child = NhsNumber::parse_checked("9990079196").unwrap();
        let mut out = Vec::new();
        write_text_report(&mut out, &child, &[line()]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("Subject-access report for the child with NHS number 999 007 9196"), "{text}");
        assert!(text.contains("=Meadow Primary (professional senco-patel)"), "{text}");
        assert!(text.contains("communication needs"), "{text}");
        assert!(text.contains("1 entries."), "{text}");
        let mut empty = Vec::new();
        write_text_report(&mut empty, &child, &[]).unwrap();
        assert!(String::from_utf8(empty).unwrap().ends_with("Nothing is recorded about this child.\n"));
    }

    #[test]
    fn json_rows_carry_every_field() {
        let mut out = Vec::new();
        write_json_report(&mut out, &[line()]).unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(rows[0]["leaf_index"], 7);
        assert_eq!(rows[0]["outcome"], "allowed");
        assert_eq!(rows[0]["information"][0], "communication needs");
    }
}
