//! Any bytes through the whole reader, as a traces and as a logs request: it may refuse them,
//! never panic, read out of bounds or recurse without bound; any value it finds decodes; and
//! attributes spliced where it says leave a request it reads again with the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhi_native::read::{any_value, count_entries, Action, Capture, Captures, Extras, KeyJudge, KeyTable, Reader};
use nhi_native::schema::{Layout, Schema};
use nhi_native::splice::splice;
use nhi_native::triggers::Triggers;
use nhi_native::wire::Result;

/// Keys that start with "pass" hold credentials, as a classifier might say.
struct Judge;

impl KeyJudge for Judge {
    fn holds_credential(&mut self, key: &[u8]) -> Result<bool> {
        Ok(key.starts_with(b"pass"))
    }
}

/// OTLP's shape (request -> resource entry -> scope entry -> record -> KeyValue -> AnyValue),
/// with the field kinds `wire_schema` gives: 0 request, 1 resource_*, 2 resource, 3 scope_*,
/// 4 scope, 5 record, 6 KeyValue, 7 AnyValue, 8 ArrayValue, 9 KeyValueList.
fn schema(body_field: u64) -> Schema {
    let msg = |n, child| (n, 4u8, 2u8, 255u8, child);
    let text = |n| (n, 3u8, 2u8, 255u8, 0u32);
    let scalar = |n, wt| (n, 1u8, wt, 255u8, 0u32);
    let types = vec![
        vec![msg(1, 1)],
        vec![msg(1, 2), msg(2, 3), text(3)],
        vec![msg(1, 6), scalar(2, 0)],
        vec![msg(1, 4), msg(2, 5), text(3)],
        vec![text(1), text(2), msg(3, 6)],
        vec![(1, 2, 2, 255, 0), text(5), scalar(7, 1), msg(5, 7), msg(9, 6), msg(6, 6)],
        vec![(1, 5, 2, 255, 0), msg(2, 7)],
        vec![text(1), scalar(2, 0), scalar(3, 0), scalar(4, 1), msg(5, 8), msg(6, 9), text(7)],
        vec![msg(1, 7)],
        vec![msg(1, 6)],
    ];
    let layout = Layout {
        entry: 1,
        scope: 3,
        record: Some(5),
        scopes_field: 2,
        records_field: Some(2),
        attributes_field: Some(9),
        anyvalue: 7,
        body_field,
    };
    Schema::new(&types, layout).expect("a valid schema")
}

fuzz_target!(|data: &[u8]| {
    let triggers = Triggers::new(&[b"ghp_".to_vec()], &[b"password".to_vec()], &[], &[b"bearer".to_vec()]);
    let table = KeyTable::new([(b"user".to_vec(), Action::Decode), (b"nhi.x".to_vec(), Action::Ours)]);
    let captures =
        Captures::new(&[(5, Capture::Range), (7, Capture::Fixed64), (6, Capture::Int32), (15, Capture::Int32In(3))]);
    let extras = Extras { captures, resource: &table };
    for body_field in [0, 5] {
        let schema = schema(body_field);
        let mut judge = Judge;
        let mut reader = Reader::new(data, &schema, &triggers, &mut judge);
        reader.extras = Some(&extras);
        reader.check_utf8 = body_field == 5;
        let Ok(read) = reader.request(&table) else {
            let _ = reader.scan();
            continue;
        };
        for record in &read.records {
            assert!(record.range.0 <= record.insert_at && record.insert_at <= record.range.1);
            for wanted in &record.wanted {
                assert!(wanted.key.1 <= data.len());
                if let Some((s, e)) = wanted.value {
                    let _ = any_value(data, s, e, 0);
                }
            }
        }
        // one attribute (field 9, an empty KeyValue) spliced into every record
        let attribute: &[u8] = &[0x4A, 0x00];
        let edits: Vec<_> = read.records.iter().map(|r| (r.insert_at, r.insert_at, attribute)).collect();
        let spliced = splice(data, &schema, &edits).expect("the reader's offsets splice");
        let mut judge = Judge;
        let mut again = Reader::new(&spliced, &schema, &triggers, &mut judge);
        again.extras = Some(&extras);
        let reread = again.request(&table).expect("a spliced request reads again");
        assert_eq!(reread.records.len(), read.records.len());
    }
    let _ = count_entries(data, &[1, 2, 2], 1 << 20);
    let _ = any_value(data, 0, data.len(), 0);
});
