use proptest::prelude::*;

use super::fs::{SimulatedDisk, Tear};
use super::*;

/// Small segments, so that a few groups cross several.
const SMALL: LogOptions = LogOptions { segment_bytes: 4096 + SEGMENT_HEADER };

fn record(group: u64, n: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (group as usize * 31 + n * 7 + i) as u8 | 1).collect()
}

fn group_records(group: u64, records: usize, len: usize) -> Vec<Vec<u8>> {
    (0..records).map(|n| record(group, n, len)).collect()
}

fn append(log: &mut GroupLog, records: &[Vec<u8>]) -> Result<Appended, LogError> {
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    log.append(&refs)
}

fn open(disk: &SimulatedDisk, scan_from: u64) -> Result<(GroupLog, Recovery, Vec<Group>), LogError> {
    let mut groups = Vec::new();
    let (log, recovery) = GroupLog::open(Arc::new(disk.clone()), SMALL, scan_from, |group| groups.push(group))?;
    Ok((log, recovery, groups))
}

/// A log of `count` groups of three 100-byte records on `disk`; returns each group's
/// records.
fn written(disk: &SimulatedDisk, count: u64) -> Vec<Vec<Vec<u8>>> {
    let (mut log, _, _) = open(disk, 0).unwrap();
    (0..count)
        .map(|group| {
            let records = group_records(group, 3, 100);
            append(&mut log, &records).unwrap();
            records
        })
        .collect()
}

fn contents(groups: &[Group]) -> Vec<Vec<Vec<u8>>> {
    groups.iter().map(|group| group.records.iter().map(|(_, data)| data.clone()).collect()).collect()
}

#[test]
fn groups_read_back_by_position_and_on_reopening_across_segments() {
    let disk = SimulatedDisk::new();
    let (mut log, recovery, groups) = open(&disk, 0).unwrap();
    assert_eq!((recovery.segments, groups.len()), (1, 0));
    let reader = log.reader();
    let mut appended = Vec::new();
    for group in 0..40 {
        let records = group_records(group, 1 + group as usize % 4, 90 + group as usize);
        let done = append(&mut log, &records).unwrap();
        assert_eq!(done.sequence, group);
        assert_eq!(reader.end(), done.end);
        for (position, data) in done.positions.iter().zip(&records) {
            assert_eq!(&reader.read(*position).unwrap(), data);
        }
        appended.push((done, records));
    }
    // Positions only grow, across segment boundaries too.
    let positions: Vec<u64> = appended.iter().flat_map(|(done, _)| done.positions.clone()).collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(split(*positions.last().unwrap()).0 >= 3, "small segments should have rolled over");
    assert!(matches!(reader.read(log.end()), Err(LogError::NoRecord(_))));
    drop(log);

    let (mut log, recovery, groups) = open(&disk, 0).unwrap();
    assert_eq!(recovery.cut, None);
    assert_eq!(recovery.groups_scanned, 40);
    assert_eq!(contents(&groups), appended.iter().map(|(_, records)| records.clone()).collect::<Vec<_>>());
    for (group, (done, _)) in groups.iter().zip(&appended) {
        assert_eq!(group.sequence, done.sequence);
        assert_eq!(group.end, done.end);
        assert_eq!(group.records.iter().map(|(position, _)| *position).collect::<Vec<_>>(), done.positions);
    }
    // The log goes on where it ended.
    assert_eq!(append(&mut log, &group_records(40, 1, 10)).unwrap().sequence, 40);

    // From a mark, only the groups after it come back.
    let mark = appended[29].0.end;
    let (_, _, groups) = open(&disk, mark).unwrap();
    assert_eq!(groups.first().map(|group| group.sequence), Some(30));
    assert_eq!(groups.len(), 11);
}

#[test]
fn a_group_larger_than_a_segment_gets_a_segment_of_its_own() {
    let disk = SimulatedDisk::new();
    let (mut log, _, _) = open(&disk, 0).unwrap();
    let big = vec![vec![7u8; 20_000]];
    let done = append(&mut log, &big).unwrap();
    append(&mut log, &group_records(1, 2, 50)).unwrap();
    assert_eq!(log.reader().read(done.positions[0]).unwrap(), big[0]);
    drop(log);
    let (_, recovery, groups) = open(&disk, 0).unwrap();
    assert_eq!((recovery.cut, groups.len()), (None, 2));
}

#[test]
fn a_tail_cut_at_any_byte_of_the_last_frame_is_recovered_and_reported() {
    let disk = SimulatedDisk::new();
    let all = written(&disk, 5);
    let name = segment_name(0);
    let whole = disk.contents(&name).unwrap();
    let (_, _, groups) = open(&disk, 0).unwrap();
    let last_start = split(groups[3].end).1 as usize;
    let last_end = split(groups[4].end).1 as usize;
    let unpadded = FRAME_HEADER + 3 * (RECORD_HEADER + 100) + FRAME_TRAILER;
    assert!(last_end - last_start > unpadded, "the test wants a frame with padding");
    for cut in last_start..last_end {
        for shorter in [false, true] {
            let mut damaged = whole.clone();
            if shorter {
                damaged.truncate(cut);
            } else {
                damaged[cut..last_end].fill(0);
            }
            let disk = SimulatedDisk::new();
            written(&disk, 0);
            disk.set_contents(&name, damaged);
            let (mut log, recovery, groups) = open(&disk, 0).unwrap_or_else(|err| panic!("cut at {cut}: {err}"));
            // A cut in the zero padding after the trailer leaves the frame whole.
            let kept = if cut >= last_start + unpadded { 5 } else { 4 };
            assert!(contents(&groups) == all[..kept], "cut at {cut}: {} groups", groups.len());
            let reported = recovery.cut.map(|cut| (cut.offset, cut.bytes > 0));
            let expected = (cut > last_start && kept == 4).then_some((last_start as u64, true));
            assert_eq!(reported, expected, "cut at {cut}");
            // The log takes the next group where the tear was, and it reads back.
            let records = group_records(9, 2, 40);
            let done = append(&mut log, &records).unwrap();
            assert_eq!(done.sequence, kept as u64);
            drop(log);
            let (_, recovery, groups) = open(&disk, 0).unwrap();
            assert_eq!(recovery.cut, None);
            assert_eq!(contents(&groups).last(), Some(&records));
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_is_refused_or_harmless_never_a_lost_group() {
    let disk = SimulatedDisk::new();
    let all = written(&disk, 4);
    let name = segment_name(0);
    let whole = disk.contents(&name).unwrap();
    let (_, _, groups) = open(&disk, 0).unwrap();
    let end = split(groups[3].end).1 as usize;
    let (mut refused, mut opened) = (0, 0);
    for offset in (0..end + 64).step_by(3) {
        let mut damaged = whole.clone();
        damaged[offset] ^= 1 << (offset % 8);
        let disk = SimulatedDisk::new();
        written(&disk, 0);
        disk.set_contents(&name, damaged);
        match open(&disk, 0) {
            Err(LogError::Damaged { segment, offset: at, .. }) => {
                assert_eq!(segment, name);
                assert!(at as usize <= offset, "damage at {offset} reported at {at}");
                refused += 1;
            }
            Err(other) => panic!("flip at {offset}: {other}"),
            Ok((_, _, groups)) => {
                assert!(offset >= end, "a flip at {offset}, inside the groups, opened");
                assert_eq!(contents(&groups), all);
                opened += 1;
            }
        }
    }
    assert!(refused > 0 && opened > 0);
}

#[test]
fn a_zeroed_page_in_the_middle_is_refused_with_its_place() {
    let disk = SimulatedDisk::new();
    written(&disk, 30);
    let name = segment_name(1);
    let mut damaged = disk.contents(&name).unwrap();
    damaged[512..1024].fill(0);
    disk.set_contents(&name, damaged);
    let err = open(&disk, 0).err().unwrap();
    assert!(matches!(&err, LogError::Damaged { segment, offset, .. } if *segment == name && *offset <= 512), "{err}");
    assert!(err.to_string().contains(&name), "{err}");
    // A scan that starts after the damage does not see it; `check` scans from 0.
    let (_, _, _) = open(&disk, position(2, 0)).unwrap();
}

#[test]
fn a_missing_or_foreign_segment_is_refused_and_an_empty_extra_one_is_harmless() {
    let disk = SimulatedDisk::new();
    written(&disk, 30);
    let (log, _, _) = open(&disk, 0).unwrap();
    let last_index = log.segment;
    drop(log);
    assert!(last_index >= 2);
    let last = disk.contents(&segment_name(last_index)).unwrap();

    let missing = disk.power_cut(Tear { whole_writes: 0, partial_bytes: 0 });
    missing.delete(&segment_name(1));
    let err = open(&missing, 0).err().unwrap();
    assert!(err.to_string().contains("missing"), "{err}");

    // A copy of a segment under the next name.
    let copied = disk.power_cut(Tear { whole_writes: 0, partial_bytes: 0 });
    let extra_index = last_index + 1;
    let extra = segment_name(extra_index);
    copied.create(&extra).unwrap();
    copied.set_contents(&extra, last.clone());
    let err = open(&copied, 0).err().unwrap();
    assert!(err.to_string().contains("names another segment"), "{err}");

    // An empty segment a crash left after a rollover: opened, and written next.
    let empty = disk.power_cut(Tear { whole_writes: 0, partial_bytes: 0 });
    let (log, _, groups) = open(&empty, 0).unwrap();
    let next = log.next_sequence();
    drop(log);
    let mut bytes = segment_header(extra_index, next, 4096 + SEGMENT_HEADER).to_vec();
    bytes.resize(4096 + SEGMENT_HEADER as usize, 0);
    empty.create(&extra).unwrap();
    empty.set_contents(&extra, bytes);
    let (mut log, _, again) = open(&empty, 0).unwrap();
    assert_eq!(contents(&again), contents(&groups));
    let done = append(&mut log, &group_records(99, 1, 10)).unwrap();
    assert_eq!(split(done.positions[0]).0, extra_index);
}

#[test]
fn a_partial_segment_left_by_a_crash_is_removed_and_reported() {
    let disk = SimulatedDisk::new();
    written(&disk, 2);
    disk.create("partial-0000000000000001.seg").unwrap();
    let (_, recovery, groups) = open(&disk, 0).unwrap();
    assert_eq!(recovery.removed, vec!["partial-0000000000000001.seg".to_owned()]);
    assert_eq!(groups.len(), 2);
    assert!(!disk.list().unwrap().iter().any(|name| name.starts_with(PARTIAL_PREFIX)));
}

#[test]
fn a_failed_sync_stops_the_log_until_it_is_opened_again() {
    let disk = SimulatedDisk::new();
    let (mut log, _, _) = open(&disk, 0).unwrap();
    append(&mut log, &group_records(0, 1, 10)).unwrap();
    disk.fail_after(1); // the write, not the sync
    assert!(matches!(append(&mut log, &group_records(1, 1, 10)), Err(LogError::Io { .. })));
    assert!(matches!(append(&mut log, &group_records(2, 1, 10)), Err(LogError::Stopped)));
}

#[test]
fn real_files_on_disk_round_trip() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = Arc::new(fs::DiskDir::open(temporary.path().join("log")).unwrap());
    let options = LogOptions { segment_bytes: 64 << 10 };
    let (mut log, _) = GroupLog::open(dir.clone(), options, 0, |_| {}).unwrap();
    let mut ends = Vec::new();
    for group in 0..100 {
        let records = group_records(group, 2, 700);
        ends.push(append(&mut log, &records).unwrap());
    }
    drop(log);
    let mut groups = Vec::new();
    let (log, recovery) = GroupLog::open(dir, options, 0, |group| groups.push(group)).unwrap();
    assert_eq!((recovery.cut, groups.len(), recovery.segments > 1), (None, 100, true));
    assert_eq!(log.reader().read(ends[57].positions[1]).unwrap(), record(57, 1, 700));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The power cut: at any operation, everything not covered by a completed sync is
    /// lost, except for the part of the writes in flight the tear lets through. Every
    /// acknowledged group is found again, whole and in order; the group in flight is
    /// there whole or not at all; and the log goes on.
    #[test]
    fn after_a_power_cut_every_acknowledged_group_is_found_and_nothing_half_applied(
        sizes in proptest::collection::vec((1usize..5, 1usize..900), 1..40),
        crash_after in 0u64..200,
        whole_writes in 0usize..3,
        partial_bytes in 0usize..3000,
    ) {
        let disk = SimulatedDisk::new();
        let (mut log, _, _) = open(&disk, 0).unwrap();
        disk.fail_after(crash_after);
        let mut acknowledged = Vec::new();
        let mut in_flight = None;
        for (group, (count, len)) in sizes.iter().enumerate() {
            let records = group_records(group as u64, *count, *len);
            match append(&mut log, &records) {
                Ok(_) => acknowledged.push(records),
                Err(_) => {
                    in_flight = Some(records);
                    break;
                }
            }
        }
        drop(log);
        let after = disk.power_cut(Tear { whole_writes, partial_bytes });
        let (mut log, _, groups) = open(&after, 0).map_err(|err| TestCaseError::fail(err.to_string()))?;
        let found = contents(&groups);
        prop_assert!(found.len() >= acknowledged.len(), "acknowledged groups lost");
        prop_assert_eq!(&found[..acknowledged.len()], &acknowledged[..]);
        match found.len() - acknowledged.len() {
            0 => {}
            1 => prop_assert_eq!(Some(&found[acknowledged.len()]), in_flight.as_ref()),
            more => prop_assert!(false, "{} groups beyond the acknowledged ones", more),
        }
        let next = append(&mut log, &group_records(1000, 2, 33)).unwrap();
        prop_assert_eq!(next.sequence, found.len() as u64);
        drop(log);
        let (_, recovery, again) = open(&after, 0).unwrap();
        prop_assert_eq!(recovery.cut, None);
        prop_assert_eq!(again.len(), found.len() + 1);
    }
}

#[test]
fn check_reports_what_opening_would_cut_and_changes_nothing() {
    let disk = SimulatedDisk::new();
    written(&disk, 5);
    let name = segment_name(0);
    let mut torn = disk.contents(&name).unwrap();
    let (_, _, groups) = open(&disk, 0).unwrap();
    let last_start = split(groups[3].end).1 as usize;
    torn[last_start + 40..last_start + 400].fill(0);
    disk.set_contents(&name, torn.clone());
    disk.create("partial-0000000000000001.seg").unwrap();
    let report = GroupLog::check(Arc::new(disk.clone()), SMALL).unwrap();
    assert_eq!(report.cut.map(|cut| cut.offset), Some(last_start as u64));
    assert_eq!(report.removed.len(), 1);
    assert_eq!(disk.contents(&name).unwrap(), torn, "check changed the segment");
    assert!(disk.list().unwrap().iter().any(|name| name.starts_with(PARTIAL_PREFIX)));
    // Damage is an error, as on opening.
    torn[100] ^= 4;
    disk.set_contents(&name, torn);
    assert!(matches!(GroupLog::check(Arc::new(disk.clone()), SMALL), Err(LogError::Damaged { .. })));
}
