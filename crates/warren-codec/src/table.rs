//! Field tables that keep their wire order.
//!
//! amq-protocol's `FieldTable` is a `BTreeMap`, so a table that goes through it comes out
//! sorted. When warren rewrites a message's headers (dead-lettering, the quorum
//! `x-delivery-count`) RabbitMQ's exact order is visible to clients that keep insertion
//! order (pika's dicts, for one), so those paths use this small codec instead: it parses
//! every field type RabbitMQ accepts and writes tables back byte for byte.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::CodecError;

/// Nesting depth parsed into values; deeper tables and arrays stay encoded ([`Value::Raw`]).
/// RabbitMQ's own messages nest two or three levels.
const MAX_DEPTH: usize = 64;

/// One field value, tagged as RabbitMQ tags it on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    F32(f32),
    F64(f64),
    Decimal(u8, u32),
    LongStr(Bytes),
    Array(Vec<Value>),
    Timestamp(u64),
    Table(Table),
    Void,
    ByteArray(Bytes),
    /// A table or array nested deeper than this parser goes, kept encoded (type octet
    /// first, validated) and written back byte for byte.
    Raw(Bytes),
}

impl Value {
    pub fn long_str(s: impl AsRef<[u8]>) -> Value {
        Value::LongStr(Bytes::copy_from_slice(s.as_ref()))
    }

    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::LongStr(b) => Some(b),
            _ => None,
        }
    }

    /// An integer value of any width, as RabbitMQ's `table_lookup` users see it.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match self {
            Value::I8(n) => i64::from(*n),
            Value::U8(n) => i64::from(*n),
            Value::I16(n) => i64::from(*n),
            Value::U16(n) => i64::from(*n),
            Value::I32(n) => i64::from(*n),
            Value::U32(n) => i64::from(*n),
            Value::I64(n) => *n,
            _ => return None,
        })
    }
}

/// A field table in wire order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table(pub Vec<(Bytes, Value)>);

impl Table {
    pub fn new() -> Self {
        Table(Vec::new())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_ref() == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// Replaces the value in place, or appends it.
    pub fn set(&mut self, key: &str, value: Value) {
        match self
            .0
            .iter_mut()
            .find(|(k, _)| k.as_ref() == key.as_bytes())
        {
            Some((_, v)) => *v = value,
            None => self.0.push((Bytes::copy_from_slice(key.as_bytes()), value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let idx = self
            .0
            .iter()
            .position(|(k, _)| k.as_ref() == key.as_bytes())?;
        Some(self.0.remove(idx).1)
    }

    /// Sorts by key, bytewise, as RabbitMQ's `rabbit_misc:sort_field_table` does.
    pub fn sort(&mut self) {
        self.0.sort_by(|(a, _), (b, _)| a.cmp(b));
    }

    /// Parses a table including its 4-byte length prefix.
    pub fn parse(raw: &[u8]) -> Result<Table, CodecError> {
        let mut r = Reader { raw, pos: 0 };
        let t = r.table(0)?;
        if r.pos != raw.len() {
            return Err(CodecError::MalformedProperties);
        }
        Ok(t)
    }

    /// Writes the table with its 4-byte length prefix.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0);
        for (k, v) in &self.0 {
            // Keys are shortstrs; longer ones cannot be written and are cut, which only a
            // client that sent such a key could cause.
            let k = &k[..k.len().min(255)];
            out.put_u8(k.len() as u8);
            out.put_slice(k);
            encode_value(v, out);
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

fn encode_value(v: &Value, out: &mut BytesMut) {
    match v {
        Value::Raw(encoded) => out.put_slice(encoded),
        Value::Bool(b) => {
            out.put_u8(b't');
            out.put_u8(u8::from(*b));
        }
        Value::I8(n) => {
            out.put_u8(b'b');
            out.put_i8(*n);
        }
        Value::U8(n) => {
            out.put_u8(b'B');
            out.put_u8(*n);
        }
        Value::I16(n) => {
            out.put_u8(b's');
            out.put_i16(*n);
        }
        Value::U16(n) => {
            out.put_u8(b'u');
            out.put_u16(*n);
        }
        Value::I32(n) => {
            out.put_u8(b'I');
            out.put_i32(*n);
        }
        Value::U32(n) => {
            out.put_u8(b'i');
            out.put_u32(*n);
        }
        Value::I64(n) => {
            out.put_u8(b'l');
            out.put_i64(*n);
        }
        Value::F32(n) => {
            out.put_u8(b'f');
            out.put_f32(*n);
        }
        Value::F64(n) => {
            out.put_u8(b'd');
            out.put_f64(*n);
        }
        Value::Decimal(scale, n) => {
            out.put_u8(b'D');
            out.put_u8(*scale);
            out.put_u32(*n);
        }
        Value::LongStr(s) => {
            out.put_u8(b'S');
            out.put_u32(s.len() as u32);
            out.put_slice(s);
        }
        Value::Array(items) => {
            out.put_u8(b'A');
            let start = out.len();
            out.put_u32(0);
            for item in items {
                encode_value(item, out);
            }
            let len = (out.len() - start - 4) as u32;
            out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        Value::Timestamp(n) => {
            out.put_u8(b'T');
            out.put_u64(*n);
        }
        Value::Table(t) => {
            out.put_u8(b'F');
            t.encode(out);
        }
        Value::Void => out.put_u8(b'V'),
        Value::ByteArray(b) => {
            out.put_u8(b'x');
            out.put_u32(b.len() as u32);
            out.put_slice(b);
        }
    }
}

struct Reader<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.raw.len())
            .ok_or(CodecError::MalformedProperties)?;
        let s = self
            .raw
            .get(self.pos..end)
            .ok_or(CodecError::MalformedProperties)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn table(&mut self, depth: usize) -> Result<Table, CodecError> {
        let len = self.u32()? as usize;
        let body = self.take(len)?;
        let mut inner = Reader { raw: body, pos: 0 };
        let mut fields = Vec::new();
        while inner.pos < body.len() {
            let klen = inner.u8()? as usize;
            let key = Bytes::copy_from_slice(inner.take(klen)?);
            let value = inner.value(depth)?;
            fields.push((key, value));
        }
        Ok(Table(fields))
    }

    fn value(&mut self, depth: usize) -> Result<Value, CodecError> {
        let tag = self.u8()?;
        Ok(match tag {
            b't' => Value::Bool(self.u8()? != 0),
            b'b' => Value::I8(i8::from_be_bytes(self.array()?)),
            b'B' => Value::U8(self.u8()?),
            // RabbitMQ reads 's' as a signed 16-bit integer (not a short string).
            b's' => Value::I16(i16::from_be_bytes(self.array()?)),
            b'u' => Value::U16(u16::from_be_bytes(self.array()?)),
            b'I' => Value::I32(i32::from_be_bytes(self.array()?)),
            b'i' => Value::U32(self.u32()?),
            b'l' | b'L' => Value::I64(i64::from_be_bytes(self.array()?)),
            b'f' => Value::F32(f32::from_be_bytes(self.array()?)),
            b'd' => Value::F64(f64::from_be_bytes(self.array()?)),
            b'D' => {
                let scale = self.u8()?;
                Value::Decimal(scale, self.u32()?)
            }
            b'S' => {
                let len = self.u32()? as usize;
                Value::LongStr(Bytes::copy_from_slice(self.take(len)?))
            }
            b'F' | b'A' if depth >= MAX_DEPTH => {
                let start = self.pos - 1;
                let (end, _) = crate::nesting::value_span(self.raw, start, self.raw.len())?;
                self.pos = end;
                Value::Raw(Bytes::copy_from_slice(&self.raw[start..end]))
            }
            b'A' => {
                let len = self.u32()? as usize;
                let body = self.take(len)?;
                let mut inner = Reader { raw: body, pos: 0 };
                let mut items = Vec::new();
                while inner.pos < body.len() {
                    items.push(inner.value(depth + 1)?);
                }
                Value::Array(items)
            }
            b'T' => Value::Timestamp(u64::from_be_bytes(self.array()?)),
            b'F' => Value::Table(self.table(depth + 1)?),
            b'V' => Value::Void,
            b'x' => {
                let len = self.u32()? as usize;
                Value::ByteArray(Bytes::copy_from_slice(self.take(len)?))
            }
            _ => return Err(CodecError::MalformedProperties),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};

    fn amq_encode(t: &FieldTable) -> Vec<u8> {
        let buf = Vec::new();
        let (buf, _) =
            cookie_factory::gen(amq_protocol::types::generation::gen_field_table(t), buf)
                .expect("encodes");
        buf
    }

    #[test]
    fn round_trips_what_amq_protocol_writes() {
        let mut inner = FieldTable::default();
        inner.insert("n".into(), AMQPValue::LongLongInt(-5));
        let mut t = FieldTable::default();
        t.insert("b".into(), AMQPValue::Boolean(true));
        t.insert("i".into(), AMQPValue::LongInt(-7));
        t.insert("s".into(), AMQPValue::LongString(LongString::from("hi")));
        t.insert("t".into(), AMQPValue::Timestamp(99));
        t.insert("tab".into(), AMQPValue::FieldTable(inner));
        t.insert(
            "arr".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::LongString(LongString::from("x")),
                AMQPValue::ShortShortInt(3),
            ])),
        );
        let raw = amq_encode(&t);
        let parsed = Table::parse(&raw).expect("parses");
        assert_eq!(parsed.get("i"), Some(&Value::I32(-7)));
        assert_eq!(parsed.get("s").and_then(Value::as_bytes), Some(&b"hi"[..]));
        assert_eq!(parsed.to_bytes().as_ref(), raw.as_slice());
    }

    #[test]
    fn keeps_insertion_order_and_sorts_on_request() {
        let mut t = Table::new();
        t.set("zeta", Value::I64(1));
        t.set("alpha", Value::long_str("a"));
        t.set("zeta", Value::I64(2));
        assert_eq!(t.0.len(), 2);
        let raw = t.to_bytes();
        let back = Table::parse(&raw).expect("parses");
        assert_eq!(back.0[0].0.as_ref(), b"zeta");
        assert_eq!(back.get("zeta"), Some(&Value::I64(2)));
        let mut sorted = back;
        sorted.sort();
        assert_eq!(sorted.0[0].0.as_ref(), b"alpha");
        assert_eq!(sorted.remove("alpha"), Some(Value::long_str("a")));
        assert!(sorted.get("alpha").is_none());
    }

    #[test]
    fn refuses_truncated_and_unknown_input() {
        assert!(Table::parse(&[0, 0, 0, 5, 1, b'k']).is_err());
        assert!(Table::parse(&[0, 0, 0, 3, 1, b'k', b'?']).is_err());
        // Deep nesting is refused instead of recursing without bound.
        let mut raw = Vec::new();
        for _ in 0..200 {
            raw.extend_from_slice(&[b'A', 0xff, 0xff, 0xff, 0xff]);
        }
        assert!(Table::parse(&raw).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_garbage(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(t) = Table::parse(&data) {
                // Whatever parses writes back to a table that parses to the same value.
                let back = Table::parse(&t.to_bytes()).expect("re-parses");
                proptest::prop_assert_eq!(back.0.len(), t.0.len());
            }
        }
    }
}
