use std::ops::Range;

use amq_protocol::protocol::basic;
use bytes::{BufMut, Bytes, BytesMut};

use crate::error::CodecError;

/// Parsed basic properties, for the rare paths that need to change them.
pub type BasicProperties = basic::AMQPProperties;

// Property flag bits of class basic, most significant first (AMQP 0-9-1 section 4.2.6.1).
const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;

/// Where the properties the broker looks at sit inside a raw property block.
///
/// Produced by one forward scan, without allocating; the raw block itself is forwarded
/// unchanged to consumers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertiesView {
    pub flags: u16,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub headers: Option<Range<usize>>,
    pub reply_to: Option<Range<usize>>,
    pub expiration: Option<Range<usize>>,
    pub user_id: Option<Range<usize>>,
}

struct Cursor<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<Range<usize>, CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.raw.len())
            .ok_or(CodecError::MalformedProperties)?;
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        let r = self.take(1)?;
        Ok(self.raw[r.start])
    }
    fn short_str(&mut self) -> Result<Range<usize>, CodecError> {
        let len = self.u8()? as usize;
        self.take(len)
    }
    fn table(&mut self) -> Result<Range<usize>, CodecError> {
        let r = self.take(4)?;
        let b = &self.raw[r];
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let start = self.pos - 4;
        self.take(len)?;
        Ok(start..self.pos)
    }
}

impl PropertiesView {
    /// Scans a raw property block (flags then values), checking that every present
    /// property fits. Field-table contents are not validated here; see [`parse_properties`].
    pub fn scan(raw: &[u8]) -> Result<PropertiesView, CodecError> {
        let mut cur = Cursor { raw, pos: 0 };
        let f = cur.take(2)?;
        let flags = u16::from_be_bytes([raw[f.start], raw[f.start + 1]]);
        // A set continuation bit would announce more flag words; class basic has none.
        if flags & 1 != 0 {
            return Err(CodecError::MalformedProperties);
        }
        let mut view = PropertiesView {
            flags,
            ..Default::default()
        };
        if flags & CONTENT_TYPE != 0 {
            cur.short_str()?;
        }
        if flags & CONTENT_ENCODING != 0 {
            cur.short_str()?;
        }
        if flags & HEADERS != 0 {
            view.headers = Some(cur.table()?);
        }
        if flags & DELIVERY_MODE != 0 {
            view.delivery_mode = Some(cur.u8()?);
        }
        if flags & PRIORITY != 0 {
            view.priority = Some(cur.u8()?);
        }
        if flags & CORRELATION_ID != 0 {
            cur.short_str()?;
        }
        if flags & REPLY_TO != 0 {
            view.reply_to = Some(cur.short_str()?);
        }
        if flags & EXPIRATION != 0 {
            view.expiration = Some(cur.short_str()?);
        }
        if flags & MESSAGE_ID != 0 {
            cur.short_str()?;
        }
        if flags & TIMESTAMP != 0 {
            cur.take(8)?;
        }
        if flags & TYPE != 0 {
            cur.short_str()?;
        }
        if flags & USER_ID != 0 {
            view.user_id = Some(cur.short_str()?);
        }
        if flags & APP_ID != 0 {
            cur.short_str()?;
        }
        if flags & CLUSTER_ID != 0 {
            cur.short_str()?;
        }
        if cur.pos != raw.len() {
            return Err(CodecError::MalformedProperties);
        }
        Ok(view)
    }

    /// delivery_mode 2 means persistent.
    pub fn persistent(&self) -> bool {
        self.delivery_mode == Some(2)
    }
}

/// Fully parses a raw property block with amq-protocol's parser. Headers nested deeper
/// than [`crate::MAX_PARSE_DEPTH`] lose their too-deep top-level entries (see
/// [`crate::parse_table_bounded`]); the raw block a consumer receives is never this one.
pub fn parse_properties(raw: &[u8]) -> Result<BasicProperties, CodecError> {
    let view = PropertiesView::scan(raw)?;
    let shallow;
    let raw = match view.headers {
        Some(range) if crate::table_depth(&raw[range.clone()])? > crate::MAX_PARSE_DEPTH => {
            let headers = crate::filter_table(&raw[range], |_, d| d < crate::MAX_PARSE_DEPTH)?;
            shallow = rewrite_properties(
                raw,
                &PropertiesEdit {
                    headers: Some(Some(headers)),
                    ..PropertiesEdit::default()
                },
            )?;
            &shallow[..]
        }
        _ => raw,
    };
    match basic::parse_properties(raw) {
        Ok((&[], props)) => Ok(props),
        _ => Err(CodecError::MalformedProperties),
    }
}

/// A change to a raw property block; everything not named is copied byte for byte.
#[derive(Debug, Clone, Default)]
pub struct PropertiesEdit {
    /// `Some(Some(table))` sets the headers (a table with its length prefix),
    /// `Some(None)` removes them, `None` keeps them.
    pub headers: Option<Option<Bytes>>,
    pub remove_expiration: bool,
    /// Replaces (or adds) reply-to; the value is the string without its length octet.
    pub reply_to: Option<Bytes>,
}

/// Applies `edit` to a raw property block.
pub fn rewrite_properties(raw: &[u8], edit: &PropertiesEdit) -> Result<Bytes, CodecError> {
    // Ranges of every present field, in flag order, so untouched ones are copied as is.
    let mut cur = Cursor { raw, pos: 0 };
    let f = cur.take(2)?;
    let flags = u16::from_be_bytes([raw[f.start], raw[f.start + 1]]);
    if flags & 1 != 0 {
        return Err(CodecError::MalformedProperties);
    }
    let mut fields: Vec<(u16, Range<usize>)> = Vec::with_capacity(14);
    for bit in (2..16).rev() {
        let flag = 1u16 << bit;
        if flags & flag == 0 {
            continue;
        }
        let start = cur.pos;
        match flag {
            HEADERS => {
                cur.table()?;
            }
            DELIVERY_MODE | PRIORITY => {
                cur.u8()?;
            }
            TIMESTAMP => {
                cur.take(8)?;
            }
            _ => {
                cur.short_str()?;
            }
        }
        fields.push((flag, start..cur.pos));
    }
    if cur.pos != raw.len() {
        return Err(CodecError::MalformedProperties);
    }
    let mut new_flags = flags;
    let mut out = BytesMut::with_capacity(raw.len() + 64);
    out.put_u16(0);
    let mut headers_written = false;
    for bit in (2..16).rev() {
        let flag = 1u16 << bit;
        if flag == HEADERS {
            headers_written = true;
            match &edit.headers {
                Some(Some(table)) => {
                    new_flags |= HEADERS;
                    out.put_slice(table);
                    continue;
                }
                Some(None) => {
                    new_flags &= !HEADERS;
                    continue;
                }
                None => {}
            }
        }
        if flag == REPLY_TO {
            if let Some(value) = &edit.reply_to {
                let len = u8::try_from(value.len()).map_err(|_| {
                    CodecError::Encode(format!("reply-to of {} bytes", value.len()))
                })?;
                new_flags |= REPLY_TO;
                out.put_u8(len);
                out.put_slice(value);
                continue;
            }
        }
        if flag == EXPIRATION && edit.remove_expiration {
            new_flags &= !EXPIRATION;
            continue;
        }
        if let Some((_, range)) = fields.iter().find(|(f, _)| *f == flag) {
            out.put_slice(&raw[range.clone()]);
        }
    }
    debug_assert!(headers_written);
    out[0..2].copy_from_slice(&new_flags.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod rewrite_tests {
    use super::*;
    use crate::table::{Table, Value};
    use amq_protocol::types::{FieldTable, ShortString};

    fn encode(p: &BasicProperties) -> Vec<u8> {
        crate::encode_properties(p).expect("encodes")
    }

    #[test]
    fn sets_headers_and_drops_expiration_keeping_the_rest() {
        let props = BasicProperties::default()
            .with_content_type(ShortString::from("text/plain"))
            .with_delivery_mode(2)
            .with_expiration(ShortString::from("1000"))
            .with_correlation_id(ShortString::from("c1"))
            .with_app_id(ShortString::from("app"));
        let raw = encode(&props);
        let mut t = Table::new();
        t.set("x-death", Value::long_str("v"));
        let edit = PropertiesEdit {
            headers: Some(Some(t.to_bytes())),
            remove_expiration: true,
            reply_to: None,
        };
        let out = rewrite_properties(&raw, &edit).expect("rewrites");
        let back = parse_properties(&out).expect("parses");
        assert_eq!(back.expiration(), &None);
        assert_eq!(back.delivery_mode(), &Some(2));
        assert_eq!(
            back.correlation_id().as_ref().map(|s| s.as_str()),
            Some("c1")
        );
        assert_eq!(back.app_id().as_ref().map(|s| s.as_str()), Some("app"));
        assert_eq!(
            back.content_type().as_ref().map(|s| s.as_str()),
            Some("text/plain")
        );
        assert!(back
            .headers()
            .as_ref()
            .is_some_and(|h: &FieldTable| h.contains_key("x-death")));
    }

    #[test]
    fn no_edit_is_identity_and_headers_can_be_removed() {
        let mut h = FieldTable::default();
        h.insert("a".into(), amq_protocol::types::AMQPValue::LongLongInt(1));
        let props = BasicProperties::default()
            .with_headers(h)
            .with_priority(3)
            .with_timestamp(77);
        let raw = encode(&props);
        let same = rewrite_properties(&raw, &PropertiesEdit::default()).expect("rewrites");
        assert_eq!(same.as_ref(), raw.as_slice());
        let edit = PropertiesEdit {
            headers: Some(None),
            remove_expiration: false,
            reply_to: None,
        };
        let out = rewrite_properties(&raw, &edit).expect("rewrites");
        let back = parse_properties(&out).expect("parses");
        assert!(back.headers().is_none());
        assert_eq!(back.priority(), &Some(3));
        assert_eq!(back.timestamp(), &Some(77));
        assert!(rewrite_properties(&raw[..raw.len() - 1], &edit).is_err());
    }
}
