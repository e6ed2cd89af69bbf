//! The group log: the store's commit point. Each group of commits is one framed,
//! checksummed append and one `fdatasync` before any writer is answered; records are
//! read back by position.
//!
//! The log is a directory of segment files, `{index:016x}.seg`, each preallocated (so a
//! write inside it neither runs out of space nor grows the file). A segment starts with
//! a 64-byte header naming its index and the sequence number of its first group; frames
//! follow at 8-byte boundaries, and the rest of the segment reads as zeros:
//!
//! ```text
//! frame   = header(24) records trailer(8) zero padding to 8 bytes
//! header  = magic "FRM1" | payload length u32 | group sequence u64 | records u32 | CRC32C of the 20 bytes before it
//! record  = length u32 | CRC32C of length and bytes | bytes
//! trailer = group sequence XOR 0xA5A5_A5A5_A5A5_A5A5
//! ```
//!
//! A record's position is its segment's index times 2^40 plus its offset: ordered,
//! and meaningful only to this log.
//!
//! # Opening after a crash
//!
//! Only the last group written can be incomplete: the writer appends one frame, syncs
//! it, and only then answers its writers and writes the next. So opening scans from a
//! segment the caller names to the end and decides, at the first frame that is not
//! whole:
//! - **a torn tail**, cut and reported: nothing follows it (no valid frame later in the
//!   segment or in a later one), and the frame never reached the disk whole (its header
//!   is all zeros, or its trailer is);
//! - **damage**, refused with the segment and offset named: anything else, such as a
//!   valid frame after it (acknowledged data would be lost by cutting), or a frame whose
//!   header or records fail their checksums although it is whole (a flipped bit).
//!
//! Nothing acknowledged is ever cut: an acknowledged frame was whole on the disk, so a
//! fault in it is damage, not a tear. [`fs::SimulatedDisk`] lets the tests cut the power
//! at any operation and keep any part of the writes in flight.

pub mod fs;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use self::fs::{LogDir, LogFile};

/// Bytes of a segment's header.
const SEGMENT_HEADER: u64 = 64;

/// A segment header's magic.
const SEGMENT_MAGIC: &[u8; 8] = b"TIOGLOG1";

/// A frame header's magic.
const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"FRM1");

/// Bytes of a frame's header.
const FRAME_HEADER: usize = 24;

/// Bytes of a record's header.
const RECORD_HEADER: usize = 8;

/// How much one read of a record takes at first: its header and, for an update's
/// sealed record or an audit entry, its whole body.
const READ_AHEAD: usize = 2048;

/// Bytes of a frame's trailer.
const FRAME_TRAILER: usize = 8;

/// The trailer is the group's sequence under this mask, so that it is never zero and an
/// old trailer cannot pass for a new frame's.
const TRAILER_MASK: u64 = 0xA5A5_A5A5_A5A5_A5A5;

/// A position's segment index is its bits from 40 up.
const SEGMENT_SHIFT: u32 = 40;

/// The default size of a segment.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// The largest group a frame can hold.
const MAX_FRAME_PAYLOAD: usize = u32::MAX as usize;

/// How the log is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Bytes preallocated per segment; a group larger than this gets a segment of its
    /// own, as large as it needs.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { segment_bytes: DEFAULT_SEGMENT_BYTES }
    }
}

/// Why the log cannot do what was asked. Messages hold file names and offsets, never
/// stored bytes.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log is damaged where no crash can have left it: opening refuses it rather
    /// than lose acknowledged groups.
    #[error("the group log is damaged in {segment} at offset {offset}: {what}")]
    Damaged {
        /// The segment file.
        segment: String,
        /// Where in it.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A file operation failed.
    #[error("group log: cannot {action}: {source}")]
    Io {
        /// What was being done, naming the file.
        action: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An earlier write or sync failed, so what reached the disk is unknown: the log
    /// takes no more appends until it is opened again (which finds out).
    #[error("the group log stopped after a failed write or sync; it must be opened again")]
    Stopped,
    /// A position the log never handed out, or not yet durable.
    #[error("no record at group-log position {0:#x}")]
    NoRecord(u64),
    /// A group too large for one frame.
    #[error("a group of {0} bytes is too large for one frame")]
    TooLarge(usize),
}

impl LogError {
    fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
        let action = action.into();
        move |source| LogError::Io { action, source }
    }

    fn damaged(segment: u64, offset: u64, what: impl Into<String>) -> LogError {
        LogError::Damaged { segment: segment_name(segment), offset, what: what.into() }
    }
}

/// What opening found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments in the log.
    pub segments: usize,
    /// Whole groups read while scanning.
    pub groups_scanned: u64,
    /// The torn tail cut, if there was one.
    pub cut: Option<Cut>,
    /// Segment files left half made by a crash during a rollover, removed (they never
    /// held a group).
    pub removed: Vec<String>,
}

/// A torn tail: the last group, which never reached the disk whole and so was never
/// acknowledged, cut away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The segment file.
    pub segment: String,
    /// Where the log now ends in it.
    pub offset: u64,
    /// Bytes that were not zero after that point, now zeroed.
    pub bytes: u64,
}

/// What an append made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The group's sequence number.
    pub sequence: u64,
    /// Each record's position, in the order given.
    pub positions: Vec<u64>,
    /// Where the log ends now: a mark to open from, after this group.
    pub end: u64,
}

/// One group read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its sequence number.
    pub sequence: u64,
    /// Its records with their positions.
    pub records: Vec<(u64, Vec<u8>)>,
    /// The position after it.
    pub end: u64,
}

/// The segments and the durable end, shared by the writer and the readers.
struct Shared {
    segments: RwLock<BTreeMap<u64, Arc<dyn LogFile>>>,
    /// The position up to which groups are durable (readers see nothing past it).
    end: AtomicU64,
}

/// Reads records by position; cheap to clone, safe to share with the writer running.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

/// The log's one writer.
pub struct GroupLog {
    dir: Arc<dyn LogDir>,
    options: LogOptions,
    shared: Arc<Shared>,
    /// The segment being written, its size and the next frame's offset.
    segment: u64,
    segment_len: u64,
    offset: u64,
    file: Arc<dyn LogFile>,
    next_sequence: u64,
    stopped: bool,
    frame: Vec<u8>,
}

/// Returns the file name of segment `index`.
pub fn segment_name(index: u64) -> String {
    format!("{index:016x}.seg")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// A segment being made is written under this prefix and renamed when complete.
const PARTIAL_PREFIX: &str = "partial-";

fn position(segment: u64, offset: u64) -> u64 {
    (segment << SEGMENT_SHIFT) | offset
}

fn split(position: u64) -> (u64, u64) {
    (position >> SEGMENT_SHIFT, position & ((1 << SEGMENT_SHIFT) - 1))
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn crc(parts: &[&[u8]]) -> u32 {
    parts.iter().fold(0, |crc, part| crc32c::crc32c_append(crc, part))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default())
}

/// A segment's header: `magic | version u32 | reserved u32 | index u64 | first sequence
/// u64 | size u64 | CRC32C of the 40 bytes before it`, zero-padded to 64 bytes.
fn segment_header(index: u64, first_sequence: u64, size: u64) -> [u8; SEGMENT_HEADER as usize] {
    let mut header = [0u8; SEGMENT_HEADER as usize];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    header[16..24].copy_from_slice(&index.to_le_bytes());
    header[24..32].copy_from_slice(&first_sequence.to_le_bytes());
    header[32..40].copy_from_slice(&size.to_le_bytes());
    let check = crc(&[&header[..40]]);
    header[40..44].copy_from_slice(&check.to_le_bytes());
    header
}

/// Reads a segment header: its first group's sequence number and the segment's size.
fn read_segment_header(index: u64, bytes: &[u8]) -> Result<(u64, u64), LogError> {
    if bytes.len() < SEGMENT_HEADER as usize {
        return Err(LogError::damaged(index, 0, "the segment is shorter than its header"));
    }
    let padding_clear = bytes[44..SEGMENT_HEADER as usize].iter().all(|byte| *byte == 0);
    if &bytes[..8] != SEGMENT_MAGIC || u32_at(bytes, 40) != crc(&[&bytes[..40]]) || !padding_clear {
        return Err(LogError::damaged(index, 0, "the segment header fails its checksum"));
    }
    if u32_at(bytes, 8) != 1 {
        return Err(LogError::damaged(index, 0, "the segment is of a format this release does not read"));
    }
    if u64_at(bytes, 16) != index {
        return Err(LogError::damaged(index, 0, "the segment header names another segment"));
    }
    Ok((u64_at(bytes, 24), u64_at(bytes, 32)))
}

/// Appends a frame holding `records` as group `sequence` to `out`.
fn encode_frame(out: &mut Vec<u8>, sequence: u64, records: &[&[u8]]) -> Result<(), LogError> {
    let payload: usize = records.iter().map(|record| RECORD_HEADER + record.len()).sum();
    if payload > MAX_FRAME_PAYLOAD || records.iter().any(|record| record.len() > u32::MAX as usize) {
        return Err(LogError::TooLarge(payload));
    }
    let start = out.len();
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload as u32).to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    let check = crc(&[&out[start..start + 20]]);
    out.extend_from_slice(&check.to_le_bytes());
    for record in records {
        let len = (record.len() as u32).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&crc(&[&len, record]).to_le_bytes());
        out.extend_from_slice(record);
    }
    out.extend_from_slice(&(sequence ^ TRAILER_MASK).to_le_bytes());
    out.resize(start + align8(out.len() - start), 0);
    Ok(())
}

/// What is at one offset of a segment.
enum FrameAt {
    /// A whole frame: its sequence, record offsets and lengths, and its length with
    /// padding.
    Whole { sequence: u64, records: Vec<(usize, usize)>, len: usize },
    /// Zeros where a header would be.
    Zeros,
    /// A valid header whose frame never reached the disk whole (its trailer is zeros).
    Incomplete,
    /// Anything else.
    Bad(String),
}

/// Reads the frame at `at` in `segment`, expecting group `sequence` (any sequence at
/// least that when `at_least`).
fn frame_at(segment: &[u8], at: usize, sequence: u64, at_least: bool) -> FrameAt {
    let Some(header) = segment.get(at..at + FRAME_HEADER) else {
        return if segment[at.min(segment.len())..].iter().all(|byte| *byte == 0) {
            FrameAt::Zeros
        } else {
            FrameAt::Bad("bytes too short for a frame header".into())
        };
    };
    if header.iter().all(|byte| *byte == 0) {
        return FrameAt::Zeros;
    }
    if u32_at(header, 0) != FRAME_MAGIC || u32_at(header, 20) != crc(&[&header[..20]]) {
        // Torn inside the header: its first bytes reached the disk and nothing after
        // them did. A whole frame always has its trailer's bytes after the header.
        if zeros_from(segment, at + FRAME_HEADER) && !at_least {
            return FrameAt::Incomplete;
        }
        return FrameAt::Bad("a frame header fails its checksum".into());
    }
    let found = u64_at(header, 8);
    if (at_least && found < sequence) || (!at_least && found != sequence) {
        return FrameAt::Bad(format!("group {found} where group {sequence} was due"));
    }
    let payload = u32_at(header, 4) as usize;
    let count = u32_at(header, 16) as usize;
    let body = at + FRAME_HEADER;
    let Some(trailer) = segment.get(body + payload..body + payload + FRAME_TRAILER) else {
        return FrameAt::Bad("a frame runs past the end of its segment".into());
    };
    let expected = (found ^ TRAILER_MASK).to_le_bytes();
    if trailer != expected {
        // Torn: the frame's bytes stop somewhere before the end of its trailer, and
        // nothing after them reached the disk. (A torn write leaves the beginning of
        // what was written; a flipped bit leaves the whole frame, trailer and all.)
        let written = trailer.iter().zip(&expected).take_while(|(found, due)| found == due).count();
        let end = body + payload + FRAME_TRAILER;
        if !at_least && zeros_from(segment, body + payload + written) && written < FRAME_TRAILER && end <= segment.len()
        {
            return FrameAt::Incomplete;
        }
        return FrameAt::Bad("a frame's trailer does not match its header".into());
    }
    let mut records = Vec::with_capacity(count);
    let mut cursor = body;
    for _ in 0..count {
        if cursor + RECORD_HEADER > body + payload {
            return FrameAt::Bad("a frame's records overrun it".into());
        }
        let len = u32_at(segment, cursor) as usize;
        let start = cursor + RECORD_HEADER;
        if start + len > body + payload {
            return FrameAt::Bad("a frame's records overrun it".into());
        }
        if u32_at(segment, cursor + 4) != crc(&[&segment[cursor..cursor + 4], &segment[start..start + len]]) {
            return FrameAt::Bad("a record fails its checksum".into());
        }
        records.push((cursor, len));
        cursor = start + len;
    }
    if cursor != body + payload {
        return FrameAt::Bad("a frame's records do not fill it".into());
    }
    let len = align8(FRAME_HEADER + payload + FRAME_TRAILER);
    let padding = segment.get(body + payload + FRAME_TRAILER..at + len).unwrap_or_default();
    if padding.iter().any(|byte| *byte != 0) {
        return FrameAt::Bad("a frame's padding is not zeros".into());
    }
    FrameAt::Whole { sequence: found, records, len }
}

/// Returns whether every byte of `segment` from `from` on is zero.
fn zeros_from(segment: &[u8], from: usize) -> bool {
    segment.get(from..).is_none_or(|rest| rest.iter().all(|byte| *byte == 0))
}

/// Returns the offset of a whole frame of group `sequence` or later anywhere after
/// `from` in `segment`.
fn whole_frame_after(segment: &[u8], from: usize, sequence: u64) -> Option<usize> {
    let magic = FRAME_MAGIC.to_le_bytes();
    (align8(from)..segment.len().saturating_sub(FRAME_HEADER))
        .step_by(8)
        .filter(|at| segment[*at..*at + 4] == magic)
        .find(|at| matches!(frame_at(segment, *at, sequence, true), FrameAt::Whole { .. }))
}

/// How a segment's scan ended.
enum SegmentEnd {
    /// Zeros after the last frame.
    Clean,
    /// A torn frame at the end: where the bytes that are not zero end (0 if none).
    Torn { nonzero: u64 },
}

/// Scans `segment` (its whole contents) from `offset`, expecting group `sequence`
/// there; returns where the frames end, the next sequence, how many groups it read,
/// and how it ended. Damage is an error.
fn scan_segment(
    index: u64,
    segment: &[u8],
    mut offset: usize,
    mut sequence: u64,
    mut each: impl FnMut(Group),
) -> Result<(usize, u64, u64, SegmentEnd), LogError> {
    let mut groups = 0;
    loop {
        match frame_at(segment, offset, sequence, false) {
            FrameAt::Whole { sequence: found, records, len } => {
                let records = records
                    .into_iter()
                    .map(|(at, len)| {
                        let data = segment[at + RECORD_HEADER..at + RECORD_HEADER + len].to_vec();
                        (position(index, at as u64), data)
                    })
                    .collect();
                each(Group { sequence: found, records, end: position(index, (offset + len) as u64) });
                offset += len;
                sequence += 1;
                groups += 1;
            }
            end @ (FrameAt::Zeros | FrameAt::Incomplete) => {
                if let Some(later) = whole_frame_after(segment, offset + 8, sequence) {
                    return Err(LogError::damaged(
                        index,
                        offset as u64,
                        format!("a frame is missing or damaged here, and a whole frame follows at offset {later}"),
                    ));
                }
                // The end of the last byte that is not zero, from the segment's start.
                let nonzero =
                    segment[offset..].iter().rposition(|byte| *byte != 0).map_or(0, |last| (offset + last) as u64 + 1);
                let end = if matches!(end, FrameAt::Zeros) && nonzero == 0 {
                    SegmentEnd::Clean
                } else {
                    SegmentEnd::Torn { nonzero }
                };
                return Ok((offset, sequence, groups, end));
            }
            FrameAt::Bad(what) => return Err(LogError::damaged(index, offset as u64, what)),
        }
    }
}

fn read_whole(file: &dyn LogFile, name: &str) -> Result<Vec<u8>, LogError> {
    let len = file.size().map_err(LogError::io(format!("read the length of {name}")))?;
    let mut bytes = vec![0u8; usize::try_from(len).map_err(|_| LogError::TooLarge(usize::MAX))?];
    let read = file.read_at(&mut bytes, 0).map_err(LogError::io(format!("read {name}")))?;
    bytes.truncate(read);
    Ok(bytes)
}

impl GroupLog {
    /// Opens the log in `dir`, creating it if empty, and scans it from the segment
    /// holding position `scan_from` to the end (0: all of it), calling `each` with every
    /// whole group at or after `scan_from`. A torn tail is cut (and reported in the
    /// [`Recovery`]); damage is refused.
    pub fn open(
        dir: Arc<dyn LogDir>,
        options: LogOptions,
        scan_from: u64,
        each: impl FnMut(Group),
    ) -> Result<(GroupLog, Recovery), LogError> {
        match GroupLog::scan(dir.clone(), options, scan_from, true, each)? {
            (Some(log), recovery) => Ok((log, recovery)),
            (None, mut recovery) => {
                recovery.segments = 1;
                Ok((GroupLog::create(dir, options)?, recovery))
            }
        }
    }

    /// Checks the whole log without changing it: every segment and frame, as opening
    /// would. What opening would cut or remove is reported in the [`Recovery`] (it is
    /// not damage); damage is an error naming the segment and offset.
    pub fn check(dir: Arc<dyn LogDir>, options: LogOptions) -> Result<Recovery, LogError> {
        GroupLog::scan(dir, options, 0, false, |_| {}).map(|(_, recovery)| recovery)
    }

    /// Reads the whole groups after position `from` (never changing anything; a group
    /// being written as this reads is not whole yet, and is left out), for a reader
    /// that has to catch up from the log while the writer goes on.
    pub fn read_from(
        dir: Arc<dyn LogDir>,
        options: LogOptions,
        from: u64,
        each: impl FnMut(Group),
    ) -> Result<(), LogError> {
        GroupLog::scan(dir, options, from, false, each).map(|_| ())
    }

    /// Scans the log from the segment holding `scan_from`; with `repair`, cuts a torn
    /// tail, removes partial segments and returns the log ready to append (`None` for
    /// an empty directory).
    fn scan(
        dir: Arc<dyn LogDir>,
        options: LogOptions,
        scan_from: u64,
        repair: bool,
        mut each: impl FnMut(Group),
    ) -> Result<(Option<GroupLog>, Recovery), LogError> {
        let mut recovery = Recovery::default();
        let mut indexes = Vec::new();
        for name in dir.list().map_err(LogError::io("list the log directory"))? {
            if name.starts_with(PARTIAL_PREFIX) {
                if repair {
                    dir.remove(&name).map_err(LogError::io(format!("remove {name}")))?;
                }
                recovery.removed.push(name);
            } else if let Some(index) = parse_segment_name(&name) {
                indexes.push(index);
            }
        }
        if repair && !recovery.removed.is_empty() {
            dir.sync().map_err(LogError::io("sync the log directory"))?;
        }
        indexes.sort_unstable();
        if indexes.is_empty() {
            return Ok((None, recovery));
        }
        for pair in indexes.windows(2) {
            if pair[1] != pair[0] + 1 {
                return Err(LogError::damaged(
                    pair[0] + 1,
                    0,
                    format!(
                        "the segment is missing: {} is followed by {}",
                        segment_name(pair[0]),
                        segment_name(pair[1])
                    ),
                ));
            }
        }
        recovery.segments = indexes.len();
        let (scan_segment_index, _) = split(scan_from);
        let first_scanned = indexes.iter().position(|index| *index >= scan_segment_index).unwrap_or(indexes.len() - 1);
        let mut files = BTreeMap::new();
        let mut expected: Option<u64> = None;
        let mut tail = None;
        let mut torn: Option<(u64, usize)> = None;
        for (n, index) in indexes.iter().copied().enumerate() {
            let name = segment_name(index);
            let file = dir.open(&name).map_err(LogError::io(format!("open {name}")))?;
            let mut header = [0u8; SEGMENT_HEADER as usize];
            let read = file.read_at(&mut header, 0).map_err(LogError::io(format!("read {name}")))?;
            let (first_sequence, size) = read_segment_header(index, &header[..read])?;
            files.insert(index, file.clone());
            if n < first_scanned {
                continue;
            }
            if let Some(expected) = expected
                && first_sequence != expected
            {
                return Err(LogError::damaged(
                    index,
                    0,
                    format!("the segment starts at group {first_sequence} where group {expected} was due"),
                ));
            }
            let mut bytes = read_whole(file.as_ref(), &name)?;
            if (bytes.len() as u64) < size {
                // A file cut short (by a copy, or a file system that lost its tail): the
                // bytes it lacks read as zeros, as the unwritten rest of a segment does,
                // and its space is reserved again before anything is appended.
                bytes.resize(usize::try_from(size).map_err(|_| LogError::TooLarge(usize::MAX))?, 0);
                if repair {
                    file.allocate(size).map_err(LogError::io(format!("preallocate {name}")))?;
                }
            }
            if let Some((torn_index, torn_offset)) = torn
                && whole_frame_after(&bytes, SEGMENT_HEADER as usize, first_sequence).is_some()
            {
                return Err(LogError::damaged(
                    torn_index,
                    torn_offset as u64,
                    format!("the log ends here, torn, but {name} holds later groups"),
                ));
            }
            let (end, next, groups, how) =
                scan_segment(index, &bytes, SEGMENT_HEADER as usize, first_sequence, |group| {
                    if group.end > scan_from {
                        each(group);
                    }
                })?;
            recovery.groups_scanned += groups;
            if let SegmentEnd::Torn { nonzero } = how {
                torn = Some((index, end));
                if repair && nonzero > end as u64 {
                    let zeros = vec![0u8; nonzero as usize - end];
                    file.write_all_at(&zeros, end as u64).map_err(LogError::io(format!("cut the tail of {name}")))?;
                    file.sync_data().map_err(LogError::io(format!("sync {name}")))?;
                }
                recovery.cut =
                    Some(Cut { segment: name, offset: end as u64, bytes: nonzero.saturating_sub(end as u64) });
            }
            expected = Some(next);
            tail = Some((index, end as u64, bytes.len() as u64, next, file));
        }
        let Some((segment, offset, segment_len, next_sequence, file)) = tail else {
            return Err(LogError::damaged(indexes[0], 0, "no segment could be scanned"));
        };
        let shared = Arc::new(Shared { segments: RwLock::new(files), end: AtomicU64::new(position(segment, offset)) });
        let log = GroupLog {
            dir,
            options,
            shared,
            segment,
            segment_len,
            offset,
            file,
            next_sequence,
            stopped: false,
            frame: Vec::new(),
        };
        Ok((Some(log), recovery))
    }

    /// A new log: segment 0, empty.
    fn create(dir: Arc<dyn LogDir>, options: LogOptions) -> Result<GroupLog, LogError> {
        let size = options.segment_bytes.max(SEGMENT_HEADER + 4096);
        let file = make_segment(dir.as_ref(), 0, 0, size)?;
        let shared = Arc::new(Shared {
            segments: RwLock::new(BTreeMap::from([(0, file.clone())])),
            end: AtomicU64::new(position(0, SEGMENT_HEADER)),
        });
        Ok(GroupLog {
            dir,
            options,
            shared,
            segment: 0,
            segment_len: size,
            offset: SEGMENT_HEADER,
            file,
            next_sequence: 0,
            stopped: false,
            frame: Vec::new(),
        })
    }

    /// A reader sharing this log's segments.
    pub fn reader(&self) -> LogReader {
        LogReader { shared: self.shared.clone() }
    }

    /// Where the log ends: the position after the last durable group.
    pub fn end(&self) -> u64 {
        position(self.segment, self.offset)
    }

    /// The sequence number the next group will get.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Appends `records` as one group: one write and one `fdatasync`, after which the
    /// group is durable and readable. After a failed write or sync the log is
    /// [`LogError::Stopped`] until opened again.
    pub fn append(&mut self, records: &[&[u8]]) -> Result<Appended, LogError> {
        if self.stopped {
            return Err(LogError::Stopped);
        }
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        let encoded = encode_frame(&mut frame, self.next_sequence, records);
        let result = encoded.and_then(|()| self.write_frame(&frame, records));
        self.frame = frame;
        result
    }

    fn write_frame(&mut self, frame: &[u8], records: &[&[u8]]) -> Result<Appended, LogError> {
        if self.offset + frame.len() as u64 > self.segment_len {
            self.roll_over(frame.len() as u64)?;
        }
        let name = segment_name(self.segment);
        if let Err(err) = self.file.write_all_at(frame, self.offset) {
            self.stopped = true;
            return Err(LogError::io(format!("write to {name}"))(err));
        }
        if let Err(err) = self.file.sync_data() {
            self.stopped = true;
            return Err(LogError::io(format!("sync {name}"))(err));
        }
        let mut positions = Vec::with_capacity(records.len());
        let mut at = self.offset + FRAME_HEADER as u64;
        for record in records {
            positions.push(position(self.segment, at));
            at += (RECORD_HEADER + record.len()) as u64;
        }
        self.offset += frame.len() as u64;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let end = position(self.segment, self.offset);
        self.shared.end.store(end, Ordering::Release);
        Ok(Appended { sequence, positions, end })
    }

    /// Starts the next segment, large enough for a frame of `frame_len` bytes.
    fn roll_over(&mut self, frame_len: u64) -> Result<(), LogError> {
        let index = self.segment + 1;
        let size = self.options.segment_bytes.max(SEGMENT_HEADER + frame_len).max(SEGMENT_HEADER + 4096);
        // Nothing was written if this fails: the log goes on in the old segment.
        let file = make_segment(self.dir.as_ref(), index, self.next_sequence, size)?;
        self.shared.segments.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(index, file.clone());
        self.segment = index;
        self.segment_len = size;
        self.offset = SEGMENT_HEADER;
        self.file = file;
        Ok(())
    }
}

/// Makes segment `index` durably: written and preallocated under a partial name, synced,
/// renamed, and the directory synced, so that a segment file is always whole.
fn make_segment(dir: &dyn LogDir, index: u64, first_sequence: u64, size: u64) -> Result<Arc<dyn LogFile>, LogError> {
    let name = segment_name(index);
    let partial = format!("{PARTIAL_PREFIX}{name}");
    let made = (|| {
        let file = match dir.create(&partial) {
            // Left by an earlier attempt that failed and could not clean up: a partial
            // segment is never named by anything, so it goes.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                dir.remove(&partial).map_err(LogError::io(format!("remove {partial}")))?;
                dir.create(&partial)
            }
            other => other,
        }
        .map_err(LogError::io(format!("create {partial}")))?;
        file.allocate(size).map_err(LogError::io(format!("preallocate {partial}")))?;
        file.write_all_at(&segment_header(index, first_sequence, size), 0)
            .map_err(LogError::io(format!("write {partial}")))?;
        file.sync_data().map_err(LogError::io(format!("sync {partial}")))?;
        dir.rename(&partial, &name).map_err(LogError::io(format!("rename {partial}")))?;
        dir.sync().map_err(LogError::io("sync the log directory"))?;
        Ok(file)
    })();
    if made.is_err() {
        // Best effort: opening removes a partial segment anyway.
        let _ = dir.remove(&partial);
    }
    made
}

impl LogReader {
    /// The position up to which groups are durable.
    pub fn end(&self) -> u64 {
        self.shared.end.load(Ordering::Acquire)
    }

    /// Reads the record at `position`, checking its checksum.
    pub fn read(&self, position: u64) -> Result<Vec<u8>, LogError> {
        let end = self.end();
        if position >= end {
            return Err(LogError::NoRecord(position));
        }
        let (index, offset) = split(position);
        let file = self
            .shared
            .segments
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&index)
            .cloned()
            .ok_or(LogError::NoRecord(position))?;
        let name = segment_name(index);
        // The header and, for most records, the whole body in one read: a delivery
        // page reads hundreds of records, and a read each for header and body was a
        // tenth of a stream's work in catch-up. What lies past the record is ignored.
        let mut frame = vec![0u8; READ_AHEAD];
        let read = file.read_at(&mut frame, offset).map_err(LogError::io(format!("read {name}")))?;
        if read < RECORD_HEADER {
            return Err(LogError::NoRecord(position));
        }
        let len = u32_at(&frame, 0) as usize;
        let (end_index, end_offset) = split(end);
        if index == end_index && offset + (RECORD_HEADER + len) as u64 > end_offset {
            return Err(LogError::NoRecord(position));
        }
        let whole = RECORD_HEADER + len;
        if read < whole {
            frame.resize(whole, 0);
            let rest =
                file.read_at(&mut frame[read..], offset + read as u64).map_err(LogError::io(format!("read {name}")))?;
            if read + rest < whole {
                return Err(LogError::NoRecord(position));
            }
        }
        let data = &frame[RECORD_HEADER..whole];
        if u32_at(&frame, 4) != crc(&[&frame[..4], data]) {
            return Err(LogError::damaged(index, offset, "a record fails its checksum"));
        }
        Ok(data.to_vec())
    }
}

#[cfg(test)]
mod tests;
