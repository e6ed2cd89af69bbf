//! Exporting a broker's whole audit log into a directory: `entries.jsonl`, one entry per
//! line in log order, and `checkpoint`, the signed checkpoint that covers them, which
//! [`crate::verify::verify_export_dir`] checks offline.

use std::io::Write;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use tio_audit::export::ExportLine;
use tio_proto::v1;

use crate::{AuditorError, canonical_entry};

/// The entries file of an export directory.
pub const ENTRIES_FILE: &str = "entries.jsonl";

/// The checkpoint file of an export directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Entries written.
    pub entries: u64,
    /// The size of the tree the checkpoint signs.
    pub tree_size: u64,
}

/// Exports the log of the broker `client` is connected to (as an auditor or admin) into
/// `out`, created if absent. Refuses a directory that already holds an export. With
/// `progress`, a bar on standard error counts the entries.
///
/// The entries are written under a temporary name, synced and renamed when complete,
/// so an interrupted export never leaves a file that looks whole.
pub async fn export_log(client: &tio_client::Client, out: &Path, progress: bool) -> Result<Exported, AuditorError> {
    let entries_path = out.join(ENTRIES_FILE);
    let checkpoint_path = out.join(CHECKPOINT_FILE);
    for path in [&entries_path, &checkpoint_path] {
        if path.exists() {
            return Err(AuditorError::ExportExists(path.clone()));
        }
    }
    std::fs::create_dir_all(out).map_err(AuditorError::io("create", out))?;
    let mut stream = client
        .audit()
        .export_entries(client.request(v1::ExportEntriesRequest { from_index: 0, to_index: 0 }))
        .await?
        .into_inner();

    let partial = out.join(format!("{ENTRIES_FILE}.partial"));
    let file = std::fs::File::create(&partial).map_err(AuditorError::io("create", &partial))?;
    let mut writer = std::io::BufWriter::new(file);
    let bar = ProgressBar::hidden();
    let mut expected = None;
    let mut checkpoint = None;
    while let Some(item) = stream.message().await? {
        match item.item {
            Some(v1::export_entries_response::Item::Range(range)) => {
                if progress {
                    bar.set_length(range.to_index.saturating_sub(range.from_index));
                    bar.set_style(
                        ProgressStyle::with_template("exporting {bar:40} {pos}/{len} entries ({eta})")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
                expected = Some(range.from_index);
            }
            Some(v1::export_entries_response::Item::Entry(entry)) => {
                let next = expected
                    .ok_or_else(|| AuditorError::Protocol("the server sent entries before their range".into()))?;
                let entry = canonical_entry(&entry)?;
                if entry.leaf_index != next {
                    return Err(AuditorError::Protocol(format!(
                        "the server sent entry {} where entry {next} was due",
                        entry.leaf_index
                    )));
                }
                writeln!(writer, "{}", ExportLine::new(entry).to_json())
                    .map_err(AuditorError::io("write", &partial))?;
                expected = Some(next + 1);
                bar.inc(1);
            }
            Some(v1::export_entries_response::Item::Checkpoint(signed)) => checkpoint = Some(signed),
            None => return Err(AuditorError::Protocol("the server sent an empty export item".into())),
        }
    }
    bar.finish_and_clear();
    let checkpoint =
        checkpoint.ok_or_else(|| AuditorError::Protocol("the export ended without its checkpoint".into()))?;
    let file = writer.into_inner().map_err(|err| AuditorError::Io {
        action: "write",
        path: partial.clone(),
        source: err.into_error(),
    })?;
    file.sync_all().map_err(AuditorError::io("write", &partial))?;
    std::fs::rename(&partial, &entries_path).map_err(AuditorError::io("write", &entries_path))?;
    std::fs::write(&checkpoint_path, &checkpoint.signed_note).map_err(AuditorError::io("write", &checkpoint_path))?;
    Ok(Exported { entries: expected.unwrap_or(0), tree_size: checkpoint.tree_size })
}
