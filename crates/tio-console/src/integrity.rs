//! The integrity page: the auditor pastes a checkpoint kept from an earlier day, and
//! the console proves, from the broker's consistency proof, that today's signed log
//! still contains it: nothing altered, removed or rolled back since. Both checkpoints
//! must verify under the key the console checks with. It also verifies an uploaded
//! export (`tio audit export`'s two files) as `tio audit verify` does: every entry
//! against the export's signed checkpoint, the checkpoint under the console's key.

use std::sync::Arc;

use axum::extract::{Extension, Form, Multipart, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use tio_audit::checkpoint::Checkpoint;
use tio_audit::export::verify_export;
use tio_audit::merkle::{Hash, verify_consistency};
use tio_proto::v1;

use crate::pages::Viewer;
use crate::session::SignedIn;
use crate::{Console, page_or_error, pages};

/// The kept checkpoint, pasted.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct KeptForm {
    #[serde(default)]
    kept: String,
}

/// The form.
pub(crate) async fn form(State(console): State<Arc<Console>>, Extension(signed_in): Extension<SignedIn>) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    page_or_error(Ok(page(&KeptForm::default(), None, None, &viewer)), &viewer)
}

/// The comparison.
pub(crate) async fn compare(
    State(console): State<Arc<Console>>,
    Extension(signed_in): Extension<SignedIn>,
    Form(form): Form<KeptForm>,
) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    let result = async {
        // A signed note is lines ending in newlines; a browser posts CRLF, and a paste may
        // lose the last one.
        let note = format!("{}\n", form.kept.replace("\r\n", "\n").trim_end());
        let verdict = match Checkpoint::open(&note, &console.verifier) {
            Ok(kept) => compare_with(&console, &signed_in.client, &kept).await?,
            Err(err) => Err(format!("the checkpoint you kept does not verify under this key: {err}")),
        };
        Ok(page(&form, Some(verdict), None, &viewer))
    };
    page_or_error(result.await, &viewer)
}

/// Proves that today's checkpoint extends `kept`: `Ok` with both sizes, or why not.
async fn compare_with(
    console: &Console,
    client: &tio_client::Client,
    kept: &Checkpoint,
) -> Result<Result<(u64, u64), String>, tonic::Status> {
    let request = client.request(v1::GetCheckpointRequest {});
    let latest = client.audit().get_checkpoint(request).await?.into_inner();
    let latest = match Checkpoint::open(&latest.signed_note, &console.verifier) {
        Ok(latest) => latest,
        Err(err) => return Ok(Err(format!("today's checkpoint does not verify: {err}"))),
    };
    if kept.origin != latest.origin {
        return Ok(Err(format!("the checkpoint you kept is of another log ({})", kept.origin)));
    }
    if kept.size > latest.size {
        return Ok(Err(format!(
            "the log is shorter ({} entries) than the checkpoint you kept ({}): it was cut back",
            latest.size, kept.size
        )));
    }
    let request = v1::GetConsistencyProofRequest { old_size: kept.size, new_size: latest.size };
    let proof = client.audit().get_consistency_proof(client.request(request)).await?.into_inner();
    let hashes: Result<Vec<Hash>, _> = proof.hashes.iter().map(|hash| <[u8; 32]>::try_from(hash.as_slice())).collect();
    let Ok(hashes) = hashes else { return Ok(Err("the proof holds a hash that is not 32 bytes".to_owned())) };
    Ok(verify_consistency(kept.size, latest.size, &hashes, &kept.root, &latest.root)
        .map(|()| (kept.size, latest.size))
        .map_err(|err| format!("today's log does not contain the checkpoint you kept: {err}")))
}

/// Verifies an uploaded export: its entries (`entries.jsonl`) and its checkpoint
/// (`checkpoint`), posted as files.
pub(crate) async fn verify_upload(
    State(console): State<Arc<Console>>,
    Extension(signed_in): Extension<SignedIn>,
    mut upload: Multipart,
) -> Response {
    let viewer = Viewer::of(&signed_in, console.pinned);
    let result = async {
        let (mut entries, mut checkpoint) = (None, None);
        // Bounded: the body was read whole, within the console's form limit.
        while let Some(field) = upload.next_field().await.map_err(|err| bad_upload(&err.to_string()))? {
            match field.name() {
                Some("entries") => entries = Some(field.bytes().await.map_err(|err| bad_upload(&err.to_string()))?),
                Some("checkpoint") => {
                    checkpoint = Some(field.text().await.map_err(|_| bad_upload("checkpoint: not text"))?)
                }
                _ => {}
            }
        }
        let entries = entries
            .filter(|bytes| !bytes.is_empty())
            .ok_or_else(|| bad_upload("entries: choose the export's entries.jsonl"))?;
        let checkpoint = checkpoint
            .filter(|text| !text.trim().is_empty())
            .ok_or_else(|| bad_upload("checkpoint: choose the export's checkpoint file"))?;
        let note = format!("{}\n", checkpoint.replace("\r\n", "\n").trim_end());
        let verifier = console.verifier.clone();
        // Hashing a large export is CPU work: off the async runtime.
        let verdict = tokio::task::spawn_blocking(move || {
            verify_export(std::io::Cursor::new(entries), &note, &verifier, None)
                .map(|verified| (verified.entries, verified.checkpoint.size))
                .map_err(|err| err.to_string())
        })
        .await
        .map_err(|_| tonic::Status::internal("the verification stopped"))?;
        Ok(page(&KeptForm::default(), None, Some(verdict), &viewer))
    };
    page_or_error(result.await, &viewer)
}

fn bad_upload(why: &str) -> tonic::Status {
    tonic::Status::invalid_argument(why.to_owned())
}

fn page(
    form: &KeptForm,
    verdict: Option<Result<(u64, u64), String>>,
    export: Option<Result<(u64, u64), String>>,
    viewer: &Viewer<'_>,
) -> Markup {
    let content = html! {
        h2 { "Compare with a checkpoint you kept" }
        @if let Some(verdict) = &verdict {
            p id="integrity" {
                @match verdict {
                    Ok((kept, latest)) => strong class="nhsuk-tag nhsuk-tag--green" {
                        "Intact: today's log of " (latest) " entries contains the " (kept) " of the checkpoint you kept"
                    },
                    Err(err) => strong class="nhsuk-tag nhsuk-tag--red" { "NOT intact: " (err) },
                }
            }
        }
        form method="post" action="/integrity" {
            (viewer.csrf_field())
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="kept" { "A checkpoint you kept (as " code { "tio audit checkpoint" } " saved it)" }
                textarea class="nhsuk-textarea" id="kept" name="kept" rows="6" { (form.kept) }
            }
            button class="nhsuk-button" type="submit" id="compare" { "Compare with today's log" }
        }
        h2 { "Verify an export" }
        p { "The two files " code { "tio audit export" } " wrote. Every entry is checked against the export's signed checkpoint, and the checkpoint against the key this console checks with, here, as " code { "tio audit verify" } " does." }
        @if let Some(export) = &export {
            p id="export-verdict" {
                @match export {
                    Ok((entries, size)) => strong class="nhsuk-tag nhsuk-tag--green" {
                        "Verified: all " (entries) " entries match the signed checkpoint of " (size) " entries"
                    },
                    Err(err) => strong class="nhsuk-tag nhsuk-tag--red" { "NOT verified: " (err) },
                }
            }
        }
        form method="post" action="/integrity/export" enctype="multipart/form-data" {
            // First, so that the console can check it before reading the files.
            (viewer.csrf_field())
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="entries" { "The entries (entries.jsonl)" }
                input class="nhsuk-file-upload" id="entries" name="entries" type="file" accept=".jsonl,application/jsonl,text/plain";
            }
            div class="nhsuk-form-group" {
                label class="nhsuk-label" for="checkpoint" { "The checkpoint (checkpoint)" }
                input class="nhsuk-file-upload" id="checkpoint" name="checkpoint" type="file";
            }
            button class="nhsuk-button" type="submit" id="verify-export" { "Verify the export" }
        }
    };
    pages::layout("Integrity", viewer, content)
}
