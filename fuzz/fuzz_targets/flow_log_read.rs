//! Flow log text → `read_records_from`, and each record's time → `parse_rfc3339_millis`.
//!
//! A flow log is read back by `septa query` and `septa suggest`, from a file another process
//! may be appending to or that a crash left torn. Reading never panics; a refused line is named
//! by a line number the text has; every record read writes back as JSON that reads as the same
//! record; reading through a one-byte buffer gives the same answer. A time that parses is within
//! the range of times written, and one the writer could have written formats back to itself.

#![no_main]

use std::io::BufReader;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use septa_flows::{FlowReadError, format_rfc3339_millis, parse_rfc3339_millis, read_records_from};

fuzz_target!(|data: &[u8]| {
    let read = read_records_from(data, "fuzz.jsonl");
    let slow = read_records_from(BufReader::with_capacity(1, data), "fuzz.jsonl");
    match (&read, &slow) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "a one-byte buffer read other records"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("a one-byte buffer changed the outcome: {read:?} vs {slow:?}"),
    }
    let lines = data.split(|&b| b == b'\n').count();
    let records = match read {
        Ok(records) => records,
        Err(FlowReadError::Parse { line, .. }) => {
            assert!((1..=lines).contains(&line), "line {line} of {lines}");
            return;
        }
        Err(error) => panic!("reading from memory failed: {error}"),
    };
    assert!(
        records.len() <= lines,
        "{} records from {lines} lines",
        records.len()
    );
    for record in &records {
        let json = serde_json::to_string(record).expect("a record serializes");
        assert!(!json.contains('\n'), "a record wrote a line break: {json}");
        let back = read_records_from(format!("{json}\n").as_bytes(), "again.jsonl")
            .unwrap_or_else(|e| panic!("{json} does not read back: {e}"));
        assert_eq!(back.as_slice(), std::slice::from_ref(record), "{json}");

        let Some(millis) = parse_rfc3339_millis(&record.time) else {
            continue;
        };
        if let Ok(millis) = u64::try_from(millis) {
            let written = format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(millis));
            assert_eq!(
                parse_rfc3339_millis(&written),
                Some(millis as i64),
                "{:?} read as {millis} ms, written as {written:?}",
                record.time
            );
        }
    }
});
