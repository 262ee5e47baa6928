use super::*;

fn open(dir: &Path, boot: &str) -> (Spool, Vec<CorruptTail>) {
    Spool::open(
        dir,
        SpoolConfig {
            statistics_max_bytes: 3 * SEGMENT_BYTES,
        },
        || boot.to_owned(),
    )
    .expect("open spool")
}

fn payload(seq: u64) -> Vec<u8> {
    format!("batch {seq}").into_bytes()
}

#[test]
fn records_survive_a_restart_in_order_with_their_boot_id() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, corrupt) = open(dir.path(), "boot-a");
    assert!(corrupt.is_empty());
    assert_eq!(spool.append(Kind::Transitions, payload).unwrap(), 1);
    assert_eq!(spool.append(Kind::Statistics, payload).unwrap(), 2);
    assert_eq!(spool.append(Kind::Transitions, payload).unwrap(), 3);
    drop(spool);
    let (mut spool, _) = open(dir.path(), "boot-b");
    assert_eq!(spool.boot_id(), "boot-a", "waiting reports keep their boot");
    let seqs: Vec<(u64, Kind)> = spool
        .unacked()
        .unwrap()
        .iter()
        .map(|r| (r.seq, r.kind))
        .collect();
    assert_eq!(
        seqs,
        [
            (1, Kind::Transitions),
            (2, Kind::Statistics),
            (3, Kind::Transitions)
        ]
    );
    assert_eq!(spool.unacked().unwrap()[1].payload, payload(2));
    assert_eq!(spool.append(Kind::Transitions, payload).unwrap(), 4);
    spool.ack(2).unwrap();
    let left: Vec<u64> = spool.unacked().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(left, [3, 4]);
    spool.ack(4).unwrap();
    assert_eq!(
        spool.records(),
        0,
        "fully acknowledged segments are deleted"
    );
    drop(spool);
    let (spool, _) = open(dir.path(), "boot-c");
    assert_eq!(
        (spool.boot_id(), spool.next_seq()),
        ("boot-c", 1),
        "empty: a new boot"
    );
}

#[test]
fn a_corrupt_tail_is_cut_and_reported_and_earlier_records_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = open(dir.path(), "boot-a");
    for _ in 0..3 {
        spool.append(Kind::Transitions, payload).unwrap();
    }
    drop(spool);
    let segment = dir
        .path()
        .join("transitions")
        .join(format!("{:020}.seg", 1));
    let mut bytes = fs::read(&segment).unwrap();
    let length = bytes.len();
    // Flip a bit in the last record's payload, and add half a record.
    bytes[length - 2] ^= 0x40;
    bytes.extend_from_slice(&[7, 0, 0]);
    fs::write(&segment, &bytes).unwrap();
    let (spool, corrupt) = open(dir.path(), "boot-b");
    assert_eq!(corrupt.len(), 1, "{corrupt:?}");
    assert_eq!(corrupt[0].file, segment);
    let record_len = (HEADER + payload(3).len()) as u64;
    assert_eq!(corrupt[0].offset, 2 * record_len);
    assert_eq!(corrupt[0].bytes_dropped, record_len + 3);
    let seqs: Vec<u64> = spool.unacked().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(spool.boot_id(), "boot-a");
    assert_eq!(spool.next_seq(), 3);
}

#[test]
fn statistics_beyond_the_bound_are_dropped_oldest_first_and_transitions_never() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = open(dir.path(), "boot-a");
    let big = vec![0u8; 256 << 10];
    let first = spool.append(Kind::Transitions, payload).unwrap();
    let mut statistics = Vec::new();
    for _ in 0..40 {
        statistics.push(spool.append(Kind::Statistics, |_| big.clone()).unwrap());
    }
    assert!(spool.statistics_dropped() > 0);
    assert!(spool.statistics.bytes() <= 3 * SEGMENT_BYTES + SEGMENT_BYTES);
    let records = spool.unacked().unwrap();
    assert_eq!(records[0].seq, first, "the transition stays");
    let kept: Vec<u64> = records.iter().skip(1).map(|r| r.seq).collect();
    assert_eq!(kept.len() as u64 + spool.statistics_dropped(), 40);
    assert_eq!(kept.last(), statistics.last(), "the newest statistics stay");
}
