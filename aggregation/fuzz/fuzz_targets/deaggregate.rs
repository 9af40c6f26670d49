//! Deaggregation must accept any bytes without panicking, and whatever it returns must account for
//! the input: either a valid aggregate's records, or the input passed through whole.
#![no_main]

use kinesis_aggregation::{AggregateView, KinesisRecord, RecordFormat, deaggregate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let record = KinesisRecord::new("fuzz", data.to_vec());
    let (records, format) = deaggregate(&record);
    match format {
        RecordFormat::Aggregated { user_records } => {
            assert_eq!(records.len(), user_records);
            assert_eq!(AggregateView::parse(data).map(|v| v.len()).ok(), Some(user_records));
        }
        _ => {
            assert_eq!(records.len(), 1);
            assert_eq!(&records[0].data[..], data);
        }
    }
});
