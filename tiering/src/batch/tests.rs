use super::*;
use proptest::prelude::*;

/// Options for building a test batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TestBatch {
    pub records: i32,
    pub timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub payload: usize,
}

impl Default for TestBatch {
    fn default() -> Self {
        TestBatch {
            records: 1,
            timestamp: 1_000,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            payload: 10,
        }
    }
}

/// Builds a valid v2 batch whose record bytes are filler: the log never decodes records.
pub(crate) fn build_batch(spec: TestBatch) -> Vec<u8> {
    let body: Vec<u8> = (0..spec.payload).map(|i| (i % 251) as u8).collect();
    let mut b = Vec::with_capacity(HEADER_SIZE + body.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(spec.records - 1).to_be_bytes());
    b.extend_from_slice(&spec.timestamp.to_be_bytes());
    b.extend_from_slice(&(spec.timestamp + i64::from(spec.records) - 1).to_be_bytes());
    b.extend_from_slice(&spec.producer_id.to_be_bytes());
    b.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    b.extend_from_slice(&spec.base_sequence.to_be_bytes());
    b.extend_from_slice(&spec.records.to_be_bytes());
    b.extend_from_slice(&body);
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn a_built_batch_validates() {
    let batch = build_batch(TestBatch {
        records: 3,
        ..TestBatch::default()
    });
    let header = validate_batch(&batch).expect("valid");
    assert_eq!(header.records_count, 3);
    assert_eq!(header.last_offset_delta, 2);
    assert_eq!(header.total_size(), batch.len());
}

#[test]
fn a_flipped_bit_fails_the_crc() {
    let mut batch = build_batch(TestBatch::default());
    let last = batch.len() - 1;
    batch[last] ^= 1;
    let err = validate_batch(&batch).expect_err("corrupt");
    assert!(err.to_string().contains("CRC mismatch"), "{err}");
}

#[test]
fn other_magic_values_are_rejected() {
    let mut batch = build_batch(TestBatch::default());
    batch[16] = 1;
    assert!(matches!(
        validate_batch(&batch),
        Err(LogError::CorruptBatch { .. })
    ));
}

#[test]
fn stamping_keeps_the_crc_valid_for_log_append_time() {
    let batch = build_batch(TestBatch {
        records: 2,
        ..TestBatch::default()
    });
    let stamp = Stamp {
        base_offset: 42,
        leader_epoch: 7,
        log_append_time: Some(99_999),
    };
    let header = stamp_header(&batch, stamp);
    let mut stored = header.to_vec();
    stored.extend_from_slice(&batch[HEADER_SIZE..]);
    let parsed = validate_batch(&stored).expect("still valid");
    assert_eq!(parsed.base_offset, 42);
    assert_eq!(parsed.partition_leader_epoch, 7);
    assert_eq!(parsed.max_timestamp, 99_999);
    assert!(parsed.is_log_append_time());
}

#[test]
fn a_produced_batch_must_count_its_records_honestly() {
    let mut batch = build_batch(TestBatch {
        records: 3,
        ..TestBatch::default()
    });
    assert!(validate_produced_batch(&batch).is_ok());
    batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    assert!(
        validate_batch(&batch).is_ok(),
        "stored batches are not held to the count"
    );
    assert!(validate_produced_batch(&batch).is_err());
}

#[test]
fn sequences_wrap_at_i32_max() {
    assert_eq!(increment_sequence(5, 3), 8);
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
}

#[test]
fn truncated_input_is_an_error_not_a_panic() {
    let batch = build_batch(TestBatch::default());
    for cut in 0..batch.len() {
        assert!(split_batches(&batch[..cut]).is_err() || cut == 0);
        assert!(validate_batch(&batch[..cut]).is_err());
    }
}

proptest! {
    #[test]
    fn split_and_validate_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(ranges) = split_batches(&bytes) {
            for r in ranges {
                let _ = validate_batch(&bytes[r]);
            }
        }
    }

    #[test]
    fn concatenated_batches_split_back(sizes in proptest::collection::vec((1i32..5, 0usize..200), 1..8)) {
        let mut all = Vec::new();
        let mut expected = Vec::new();
        for (records, payload) in sizes {
            let b = build_batch(TestBatch { records, payload, ..TestBatch::default() });
            expected.push(all.len()..all.len() + b.len());
            all.extend_from_slice(&b);
        }
        let ranges = split_batches(&all).expect("whole batches");
        prop_assert_eq!(&ranges, &expected);
        for r in ranges {
            prop_assert!(validate_batch(&all[r]).is_ok());
        }
    }
}
