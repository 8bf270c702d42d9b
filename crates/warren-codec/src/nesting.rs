//! Field tables of any depth, walked without recursion.
//!
//! amq-protocol's table parser (and the code that clones, compares, encodes and drops its
//! `FieldTable`) recurses once per nesting level, so a client that nests a table a few
//! thousand levels deep would overflow a worker thread's stack and abort the process.
//! RabbitMQ accepts such tables, so warren must at least survive them. Everything here
//! walks a table with an explicit stack: it validates the structure, measures the depth,
//! and rewrites the top level (dropping entries too deep to hand to amq-protocol, or one
//! named key) by copying raw bytes. Only tables at most [`MAX_PARSE_DEPTH`] deep are ever
//! given to amq-protocol.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::CodecError;

/// The deepest table warren parses into amq-protocol's recursive types. RabbitMQ's own
/// headers nest three levels (`x-death`); clients' tables rarely more than two.
pub const MAX_PARSE_DEPTH: usize = 100;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Container {
    Table,
    Array,
}

fn byte(raw: &[u8], pos: usize) -> Result<u8, CodecError> {
    raw.get(pos).copied().ok_or(CodecError::MalformedProperties)
}

/// Where a length-prefixed block starting at `pos` (4-byte length, then that many bytes)
/// ends, checked against `limit`.
fn block_end(raw: &[u8], pos: usize, limit: usize) -> Result<usize, CodecError> {
    let len = raw
        .get(pos..pos.saturating_add(4))
        .filter(|s| s.len() == 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .ok_or(CodecError::MalformedProperties)?;
    pos.checked_add(4)
        .and_then(|p| p.checked_add(len))
        .filter(|end| *end <= limit)
        .ok_or(CodecError::MalformedProperties)
}

/// Bytes a fixed-size value of type `tag` takes after its tag, as RabbitMQ reads them
/// (`s` is a signed 16-bit integer, `l` and `L` 64-bit ones).
fn fixed_size(tag: u8) -> Option<usize> {
    Some(match tag {
        b'V' => 0,
        b't' | b'b' | b'B' => 1,
        b's' | b'u' => 2,
        b'I' | b'i' | b'f' => 4,
        b'D' => 5,
        b'l' | b'L' | b'd' | b'T' => 8,
        _ => return None,
    })
}

/// Validates the tagged value at `pos` (its type octet first), which must end by `limit`.
/// Returns where it ends and how deeply it nests (0 for a scalar, 1 for a flat table or
/// array, and so on).
pub(crate) fn value_span(
    raw: &[u8],
    pos: usize,
    limit: usize,
) -> Result<(usize, usize), CodecError> {
    let tag = byte(raw, pos)?;
    let pos = pos + 1;
    let container = match tag {
        b'F' => Container::Table,
        b'A' => Container::Array,
        b'S' | b'x' => return Ok((block_end(raw, pos, limit)?, 0)),
        _ => {
            let size = fixed_size(tag).ok_or(CodecError::MalformedProperties)?;
            let end = pos
                .checked_add(size)
                .filter(|e| *e <= limit)
                .ok_or(CodecError::MalformedProperties)?;
            return Ok((end, 0));
        }
    };
    let end = block_end(raw, pos, limit)?;
    let depth = walk(raw, pos + 4, end, container)?;
    Ok((end, depth))
}

/// Validates the contents of a container spanning `pos..end` and returns its depth.
fn walk(raw: &[u8], mut pos: usize, end: usize, kind: Container) -> Result<usize, CodecError> {
    let mut stack = vec![(end, kind)];
    let mut deepest = 1;
    while let Some(&(end, kind)) = stack.last() {
        if pos == end {
            stack.pop();
            continue;
        }
        if kind == Container::Table {
            let key_len = usize::from(byte(raw, pos)?);
            pos = pos
                .checked_add(1 + key_len)
                .filter(|p| *p < end)
                .ok_or(CodecError::MalformedProperties)?;
        }
        let tag = byte(raw, pos)?;
        let nested = match tag {
            b'F' => Some(Container::Table),
            b'A' => Some(Container::Array),
            _ => None,
        };
        match nested {
            Some(child) => {
                let child_end = block_end(raw, pos + 1, end)?;
                stack.push((child_end, child));
                deepest = deepest.max(stack.len());
                pos += 5;
            }
            None => pos = value_span(raw, pos, end)?.0,
        }
    }
    Ok(deepest)
}

/// Validates a field table (with its 4-byte length prefix, and nothing after it) and
/// returns its nesting depth: 1 for a table of scalars.
pub fn table_depth(raw: &[u8]) -> Result<usize, CodecError> {
    let end = block_end(raw, 0, raw.len())?;
    if end != raw.len() {
        return Err(CodecError::MalformedProperties);
    }
    walk(raw, 4, end, Container::Table)
}

/// Writes a copy of the table `raw` (length prefix included) holding only the top-level
/// entries for which `keep(key, value depth)` is true, byte for byte and in order.
pub fn filter_table(
    raw: &[u8],
    mut keep: impl FnMut(&[u8], usize) -> bool,
) -> Result<Bytes, CodecError> {
    let end = block_end(raw, 0, raw.len())?;
    if end != raw.len() {
        return Err(CodecError::MalformedProperties);
    }
    let mut out = BytesMut::with_capacity(raw.len());
    out.put_u32(0);
    let mut pos = 4;
    while pos < end {
        let key_len = usize::from(byte(raw, pos)?);
        let value_at = pos + 1 + key_len;
        let key = raw
            .get(pos + 1..value_at)
            .ok_or(CodecError::MalformedProperties)?;
        let (value_end, depth) = value_span(raw, value_at, end)?;
        if keep(key, depth) {
            out.put_slice(&raw[pos..value_end]);
        }
        pos = value_end;
    }
    let len = u32::try_from(out.len() - 4).map_err(|_| CodecError::MalformedProperties)?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}

/// Parses a table with amq-protocol however deep it nests: a table deeper than
/// [`MAX_PARSE_DEPTH`] loses the top-level entries that nest too deep (they are kept in
/// the raw bytes warren forwards; this is only what warren itself reads, such as a login
/// or the headers a headers exchange matches).
pub fn parse_table_bounded(raw: &[u8]) -> Result<amq_protocol::types::FieldTable, CodecError> {
    let depth = table_depth(raw)?;
    let shallow;
    let raw = if depth <= MAX_PARSE_DEPTH {
        raw
    } else {
        shallow = filter_table(raw, |_, d| d < MAX_PARSE_DEPTH)?;
        &shallow[..]
    };
    match amq_protocol::types::parsing::parse_field_table(raw) {
        Ok((&[], table)) => Ok(table),
        _ => Err(CodecError::MalformedProperties),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table nested `depth` levels deep: {"k": {"k": ... {"leaf": 1}}}, written
    /// outside in (each level adds 7 bytes: its length, then the key and tag of the next).
    pub(crate) fn nested_table(depth: usize) -> Vec<u8> {
        let leaf = [4, b'l', b'e', b'a', b'f', b'I', 0, 0, 0, 1];
        let mut out = Vec::with_capacity(depth * 7 + leaf.len() + 4);
        for level in (1..=depth).rev() {
            let inner = (level - 1) * 7 + leaf.len();
            out.extend_from_slice(&(inner as u32).to_be_bytes());
            if level > 1 {
                out.extend_from_slice(&[1, b'k', b'F']);
            }
        }
        out.extend_from_slice(&leaf);
        out
    }

    #[test]
    fn measures_depth_without_recursion() {
        assert_eq!(table_depth(&nested_table(1)), Ok(1));
        assert_eq!(table_depth(&nested_table(7)), Ok(7));
        // Far deeper than any thread stack would allow a recursive parser.
        assert_eq!(table_depth(&nested_table(200_000)), Ok(200_000));
    }

    #[test]
    fn arrays_count_as_levels() {
        // {"a": [[1]]}
        let table = [
            0, 0, 0, 17, 1, b'a', b'A', 0, 0, 0, 10, b'A', 0, 0, 0, 5, b'I', 0, 0, 0, 1,
        ];
        assert_eq!(table_depth(&table), Ok(3));
        assert_eq!(
            table_depth(&table[..table.len() - 1]),
            Err(CodecError::MalformedProperties)
        );
    }

    #[test]
    fn refuses_children_that_overrun_their_parent() {
        let mut t = nested_table(3);
        // The innermost table claims one byte more than its parent holds.
        let at = t.len() - 14;
        t[at + 3] += 1;
        assert_eq!(table_depth(&t), Err(CodecError::MalformedProperties));
        assert_eq!(
            table_depth(&[0, 0, 0, 2, 0]),
            Err(CodecError::MalformedProperties)
        );
        assert_eq!(
            table_depth(&[0, 0, 0, 2, 0, b'?']),
            Err(CodecError::MalformedProperties)
        );
        assert_eq!(table_depth(&[0, 0, 0, 0]), Ok(1));
    }

    #[test]
    fn bounded_parse_keeps_shallow_entries_of_deep_tables() {
        let deep = nested_table(5_000);
        let mut raw = vec![0, 0, 0, 0];
        raw.extend_from_slice(&[
            5, b'L', b'O', b'G', b'I', b'N', b'S', 0, 0, 0, 2, b'm', b'e',
        ]);
        raw.extend_from_slice(&[4, b'd', b'e', b'e', b'p', b'F']);
        raw.extend_from_slice(&deep);
        let len = (raw.len() - 4) as u32;
        raw[..4].copy_from_slice(&len.to_be_bytes());
        let table = parse_table_bounded(&raw).expect("parses");
        assert!(table.inner().contains_key("LOGIN"));
        assert!(!table.inner().contains_key("deep"));
        // At the bound, nothing is dropped.
        let table = parse_table_bounded(&nested_table(MAX_PARSE_DEPTH)).expect("parses");
        assert!(table.inner().contains_key("k"));
    }

    #[test]
    fn filter_drops_one_key_and_keeps_the_rest_in_order() {
        let mut raw = vec![0, 0, 0, 0];
        raw.extend_from_slice(&[1, b'a', b't', 1]);
        raw.extend_from_slice(&[3, b'B', b'C', b'C', b'A', 0, 0, 0, 0]);
        raw.extend_from_slice(&[1, b'z', b'V']);
        let len = (raw.len() - 4) as u32;
        raw[..4].copy_from_slice(&len.to_be_bytes());
        let out = filter_table(&raw, |k, _| k != b"BCC").expect("filters");
        assert_eq!(&out[..], &[0, 0, 0, 7, 1, b'a', b't', 1, 1, b'z', b'V'][..]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_agrees_with_the_ordered_parser(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)
        ) {
            let mut raw = (data.len() as u32).to_be_bytes().to_vec();
            raw.extend_from_slice(&data);
            let walked = table_depth(&raw);
            let parsed = crate::Table::parse(&raw);
            proptest::prop_assert_eq!(walked.is_ok(), parsed.is_ok());
            let _ = filter_table(&raw, |_, _| true);
            let _ = parse_table_bounded(&raw);
        }
    }
}
