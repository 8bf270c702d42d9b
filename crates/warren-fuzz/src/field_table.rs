//! Field tables: the input is a table's contents (the harness adds the 4-byte length
//! prefix), read by every table reader warren has.
//!
//! - `table_depth` (the non-recursive validator) and `Table::parse` (the wire-order
//!   codec) agree on what is well formed;
//! - `Table` round-trips: written back, it has the input's size (`L` becomes `l`, a true
//!   boolean becomes 1, nothing else changes) and parses to the same table;
//! - `filter_table` keeping everything returns the input byte for byte, and dropping
//!   entries leaves a valid table;
//! - `parse_table_bounded` (what logins and the headers exchange read) parses every table
//!   `table_depth` accepts that amq-protocol accepts, and its amq-protocol encoding reads
//!   back to the same encoding.

use warren_codec::{
    decode_field_table, encode_field_table, filter_table, parse_table_bounded, table_depth, Table,
    MAX_PARSE_DEPTH,
};

/// Reads `data` (a table body) with every table reader.
pub fn run(data: &[u8]) {
    let Ok(len) = u32::try_from(data.len()) else {
        return;
    };
    let mut raw = Vec::with_capacity(data.len() + 4);
    raw.extend_from_slice(&len.to_be_bytes());
    raw.extend_from_slice(data);
    let depth = table_depth(&raw);
    let parsed = Table::parse(&raw);
    assert_eq!(
        depth.is_ok(),
        parsed.is_ok(),
        "table_depth {depth:?} and Table::parse {:?} disagree",
        parsed.as_ref().err()
    );
    let (Ok(depth), Ok(table)) = (depth, parsed) else {
        // Every other reader must refuse it too (without panicking).
        assert!(filter_table(&raw, |_, _| true).is_err());
        assert!(parse_table_bounded(&raw).is_err());
        return;
    };
    check_round_trip(&raw, &table);
    check_filter(&raw, depth);
    check_bounded(&raw);
}

fn check_round_trip(raw: &[u8], table: &Table) {
    let written = table.to_bytes();
    assert_eq!(written.len(), raw.len(), "Table changed the size");
    let again = Table::parse(&written).unwrap_or_else(|e| panic!("re-read failed: {e:?}"));
    assert_eq!(again.to_bytes(), written, "Table round trip is not stable");
}

fn check_filter(raw: &[u8], depth: usize) {
    let all = filter_table(raw, |_, _| true).unwrap_or_else(|e| panic!("filter: {e:?}"));
    assert_eq!(&all[..], raw, "keeping every entry changed the table");
    let mut flip = false;
    let some = filter_table(raw, |_, d| {
        flip = !flip;
        flip && d < MAX_PARSE_DEPTH
    })
    .unwrap_or_else(|e| panic!("filter: {e:?}"));
    let kept = table_depth(&some).unwrap_or_else(|e| panic!("filtered table invalid: {e:?}"));
    assert!(
        kept <= depth.min(MAX_PARSE_DEPTH),
        "filtering deepened a table"
    );
}

fn check_bounded(raw: &[u8]) {
    let Ok(table) = parse_table_bounded(raw) else {
        // amq-protocol is stricter than RabbitMQ in places; that is a refusal, not a bug.
        return;
    };
    let Ok(encoded) = encode_field_table(&table) else {
        return;
    };
    let again = decode_field_table(&encoded).unwrap_or_else(|e| panic!("re-read: {e:?}"));
    assert_eq!(encode_field_table(&again).ok(), Some(encoded));
}
