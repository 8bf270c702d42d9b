//! Headers exchange matching, following RabbitMQ 3.x `rabbit_exchange_type_headers`.
//!
//! RabbitMQ compares header values as Erlang terms with `==`: the AMQP type tag
//! is ignored at the top level (a byte `1` equals a long `1`, even `1.0`),
//! short and long strings and byte arrays are all binaries, a timestamp is an
//! integer. Inside arrays and nested tables every element keeps its type tag,
//! so there the types must agree too.

use amq_protocol::types::{AMQPValue, FieldTable, ShortString};

const X_MATCH: &str = "x-match";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// A headers binding's arguments, pre-digested for routing.
#[derive(Clone, Debug)]
pub(crate) struct HeadersSpec {
    mode: Mode,
    /// The arguments that take part in matching, x-match and (unless
    /// `-with-x`) other `x-` keys already left out.
    args: Vec<(ShortString, AMQPValue)>,
}

/// The x-match value as a string, when it is one.
fn x_match_str(v: &AMQPValue) -> Option<&[u8]> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        _ => None,
    }
}

impl HeadersSpec {
    pub(crate) fn new(arguments: &FieldTable) -> Self {
        let parsed = arguments
            .inner()
            .get(X_MATCH)
            .and_then(x_match_str)
            .and_then(|s| match s {
                b"all" => Some((Mode::All, false)),
                b"any" => Some((Mode::Any, false)),
                b"all-with-x" => Some((Mode::All, true)),
                b"any-with-x" => Some((Mode::Any, true)),
                _ => None,
            });
        // Absent or unknown means "all": RabbitMQ's legacy default for bindings
        // made before x-match was validated.
        let (mode, with_x) = parsed.unwrap_or((Mode::All, false));
        let args = arguments
            .inner()
            .iter()
            .filter(|(k, _)| {
                let k = k.as_str();
                k != X_MATCH && (with_x || !k.starts_with("x-"))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        HeadersSpec { mode, args }
    }

    pub(crate) fn matches(&self, headers: &FieldTable) -> bool {
        let h = headers.inner();
        let one = |(k, v): &(ShortString, AMQPValue)| match h.get(k.as_str()) {
            // A Void binding value asks only for the header's presence.
            Some(hv) => matches!(v, AMQPValue::Void) || loose_eq(v, hv),
            None => false,
        };
        match self.mode {
            Mode::All => self.args.iter().all(one),
            Mode::Any => self.args.iter().any(one),
        }
    }
}

/// Checks a headers binding's `x-match` as RabbitMQ's `validate_binding/2`
/// does; the error is the text that follows `PRECONDITION_FAILED - `.
pub fn validate_headers_binding(arguments: &FieldTable) -> Result<(), String> {
    let Some(v) = arguments.inner().get(X_MATCH) else {
        return Ok(());
    };
    match x_match_str(v) {
        Some(b"all" | b"any" | b"all-with-x" | b"any-with-x") => Ok(()),
        Some(other) => Err(format!(
            "Invalid x-match field value {}; expected all, any, all-with-x, or any-with-x",
            erl_binary(other)
        )),
        None => Err(format!(
            "Invalid x-match field type {} (value {}); expected longstr",
            type_atom(v),
            erl_term(v)
        )),
    }
}

/// An AMQP value seen as the Erlang term RabbitMQ holds for it.
enum Term<'a> {
    Int(i128),
    Float(f64),
    Bin(&'a [u8]),
    Bool(bool),
    Decimal(u8, u32),
    Array(&'a [AMQPValue]),
    Table(&'a FieldTable),
    Undefined,
}

fn term(v: &AMQPValue) -> Term<'_> {
    match v {
        AMQPValue::Boolean(b) => Term::Bool(*b),
        AMQPValue::ShortShortInt(i) => Term::Int(i128::from(*i)),
        AMQPValue::ShortShortUInt(i) => Term::Int(i128::from(*i)),
        AMQPValue::ShortInt(i) => Term::Int(i128::from(*i)),
        AMQPValue::ShortUInt(i) => Term::Int(i128::from(*i)),
        AMQPValue::LongInt(i) => Term::Int(i128::from(*i)),
        AMQPValue::LongUInt(i) => Term::Int(i128::from(*i)),
        AMQPValue::LongLongInt(i) => Term::Int(i128::from(*i)),
        AMQPValue::Timestamp(i) => Term::Int(i128::from(*i)),
        AMQPValue::Float(f) => Term::Float(f64::from(*f)),
        AMQPValue::Double(f) => Term::Float(*f),
        AMQPValue::DecimalValue(d) => Term::Decimal(d.scale, d.value),
        AMQPValue::ShortString(s) => Term::Bin(s.as_str().as_bytes()),
        AMQPValue::LongString(s) => Term::Bin(s.as_bytes()),
        AMQPValue::ByteArray(b) => Term::Bin(b.as_slice()),
        AMQPValue::FieldArray(a) => Term::Array(a.as_slice()),
        AMQPValue::FieldTable(t) => Term::Table(t),
        AMQPValue::Void => Term::Undefined,
    }
}

/// The type atom RabbitMQ's parser tags a field value with (as its error texts name it).
pub fn type_atom(v: &AMQPValue) -> &'static str {
    match v {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        // RabbitMQ has no short strings in tables; they travel as longstr.
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

/// Erlang `==` between an integer and a float: equal when numerically equal.
fn int_float_eq(i: i128, f: f64) -> bool {
    // Beyond ±2^127 no 64-bit integer can be equal, and the cast would saturate.
    f.is_finite() && f.fract() == 0.0 && f.abs() < 1.7e38 && (f as i128) == i
}

/// Erlang `==` on the terms of two values (type tags ignored).
pub fn loose_eq(a: &AMQPValue, b: &AMQPValue) -> bool {
    match (term(a), term(b)) {
        (Term::Int(x), Term::Int(y)) => x == y,
        (Term::Float(x), Term::Float(y)) => x == y,
        (Term::Int(i), Term::Float(f)) | (Term::Float(f), Term::Int(i)) => int_float_eq(i, f),
        (Term::Bin(x), Term::Bin(y)) => x == y,
        (Term::Bool(x), Term::Bool(y)) => x == y,
        (Term::Decimal(s1, v1), Term::Decimal(s2, v2)) => s1 == s2 && v1 == v2,
        (Term::Undefined, Term::Undefined) => true,
        (Term::Array(x), Term::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| typed_eq(a, b))
        }
        // Nested tables are compared as sorted maps: RabbitMQ compares the
        // wire order, which FieldTable does not keep.
        (Term::Table(x), Term::Table(y)) => {
            x.inner().len() == y.inner().len()
                && x.inner()
                    .iter()
                    .zip(y.inner())
                    .all(|((ka, va), (kb, vb))| ka == kb && typed_eq(va, vb))
        }
        _ => false,
    }
}

/// `{Type, Value}` equality, as inside arrays and nested tables.
fn typed_eq(a: &AMQPValue, b: &AMQPValue) -> bool {
    type_atom(a) == type_atom(b) && loose_eq(a, b)
}

/// Exact identity of two argument values, used to tell bindings apart:
/// variants must agree and floats compare by bits (so NaN equals itself
/// and a binding with one can still be removed).
pub(crate) fn value_identical(a: &AMQPValue, b: &AMQPValue) -> bool {
    match (a, b) {
        (AMQPValue::Float(x), AMQPValue::Float(y)) => x.to_bits() == y.to_bits(),
        (AMQPValue::Double(x), AMQPValue::Double(y)) => x.to_bits() == y.to_bits(),
        (AMQPValue::FieldArray(x), AMQPValue::FieldArray(y)) => {
            x.as_slice().len() == y.as_slice().len()
                && x.as_slice()
                    .iter()
                    .zip(y.as_slice())
                    .all(|(a, b)| value_identical(a, b))
        }
        (AMQPValue::FieldTable(x), AMQPValue::FieldTable(y)) => tables_identical(x, y),
        _ => a == b,
    }
}

pub(crate) fn tables_identical(a: &FieldTable, b: &FieldTable) -> bool {
    a.inner().len() == b.inner().len()
        && a.inner()
            .iter()
            .zip(b.inner())
            .all(|((ka, va), (kb, vb))| ka == kb && value_identical(va, vb))
}

/// Erlang `~tp` of a value, best effort (used in error texts only).
fn erl_term(v: &AMQPValue) -> String {
    match term(v) {
        Term::Int(i) => i.to_string(),
        Term::Float(f) => erl_float(f),
        Term::Bin(b) => erl_binary(b),
        Term::Bool(b) => b.to_string(),
        Term::Decimal(s, v) => format!("{{{s},{v}}}"),
        Term::Undefined => "undefined".to_owned(),
        Term::Array(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|e| format!("{{{},{}}}", type_atom(e), erl_term(e)))
                .collect();
            format!("[{}]", items.join(","))
        }
        Term::Table(t) => {
            let items: Vec<String> = t
                .inner()
                .iter()
                .map(|(k, e)| {
                    format!(
                        "{{{},{},{}}}",
                        erl_binary(k.as_str().as_bytes()),
                        type_atom(e),
                        erl_term(e)
                    )
                })
                .collect();
            format!("[{}]", items.join(","))
        }
    }
}

fn erl_float(f: f64) -> String {
    let s = format!("{f:?}");
    // Erlang always writes a fractional part before the exponent: 1.0e20.
    match s.split_once('e') {
        Some((m, e)) if !m.contains('.') => format!("{m}.0e{e}"),
        _ => s,
    }
}

fn latin1_printable(c: u32) -> bool {
    matches!(c, 8..=13 | 27 | 32..=126 | 160..=255)
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\u{1b}' => out.push_str("\\e"),
        c => out.push(c),
    }
}

/// Erlang `~tp` of a binary with the default latin1 printable range:
/// `<<"foo">>`, `<<"é"/utf8>>`, or `<<1,2>>`.
pub fn erl_binary(b: &[u8]) -> String {
    if b.is_empty() {
        return "<<>>".to_owned();
    }
    let mut out = String::from("<<\"");
    if let Ok(s) = std::str::from_utf8(b) {
        if s.chars().all(|c| latin1_printable(u32::from(c))) {
            s.chars().for_each(|c| push_escaped(&mut out, c));
            out.push('"');
            if !s.is_ascii() {
                out.push_str("/utf8");
            }
            out.push_str(">>");
            return out;
        }
    }
    if b.iter().all(|&c| latin1_printable(u32::from(c))) {
        b.iter()
            .for_each(|&c| push_escaped(&mut out, char::from(c)));
        out.push_str("\">>");
        return out;
    }
    let bytes: Vec<String> = b.iter().map(|c| c.to_string()).collect();
    format!("<<{}>>", bytes.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{DecimalValue, FieldArray, LongString};

    fn ls(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s))
    }

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    fn m(args: &[(&str, AMQPValue)], headers: &[(&str, AMQPValue)]) -> bool {
        HeadersSpec::new(&table(args)).matches(&table(headers))
    }

    #[test]
    fn all_is_the_default() {
        let args = [("a", ls("1")), ("b", ls("2"))];
        assert!(m(&args, &[("a", ls("1")), ("b", ls("2"))]));
        assert!(m(&args, &[("a", ls("1")), ("b", ls("2")), ("c", ls("3"))]));
        assert!(!m(&args, &[("a", ls("1"))]));
        assert!(!m(&args, &[("a", ls("1")), ("b", ls("x"))]));
        assert!(!m(&args, &[]));
        let mut explicit = args.to_vec();
        explicit.push(("x-match", ls("all")));
        assert!(m(&explicit, &[("a", ls("1")), ("b", ls("2"))]));
        assert!(!m(&explicit, &[("b", ls("2"))]));
    }

    #[test]
    fn any_needs_one() {
        let args = [("x-match", ls("any")), ("a", ls("1")), ("b", ls("2"))];
        assert!(m(&args, &[("a", ls("1"))]));
        assert!(m(&args, &[("b", ls("2")), ("a", ls("no"))]));
        assert!(!m(&args, &[("a", ls("2")), ("b", ls("1"))]));
        assert!(!m(&args, &[]));
    }

    #[test]
    fn no_remaining_arguments() {
        assert!(m(&[], &[]));
        assert!(m(&[("x-match", ls("all"))], &[("a", ls("1"))]));
        assert!(!m(&[("x-match", ls("any"))], &[("a", ls("1"))]));
        // Only x- keys: ignored by all/any.
        assert!(m(&[("x-foo", ls("1"))], &[]));
        assert!(!m(
            &[("x-match", ls("any")), ("x-foo", ls("1"))],
            &[("x-foo", ls("1"))]
        ));
    }

    #[test]
    fn x_keys_only_with_x() {
        let h = [("x-tag", ls("t")), ("k", ls("v"))];
        assert!(m(&[("x-match", ls("all")), ("x-tag", ls("other"))], &h));
        assert!(!m(
            &[("x-match", ls("all-with-x")), ("x-tag", ls("other"))],
            &h
        ));
        assert!(m(&[("x-match", ls("all-with-x")), ("x-tag", ls("t"))], &h));
        assert!(m(
            &[
                ("x-match", ls("all-with-x")),
                ("x-tag", ls("t")),
                ("k", ls("v"))
            ],
            &h
        ));
        assert!(!m(
            &[("x-match", ls("all-with-x")), ("x-tag", ls("t"))],
            &[("k", ls("v"))]
        ));
        assert!(m(
            &[
                ("x-match", ls("any-with-x")),
                ("x-tag", ls("t")),
                ("k", ls("no"))
            ],
            &h
        ));
        assert!(!m(&[("x-match", ls("any")), ("x-tag", ls("t"))], &h));
        // x-match itself never takes part, even when the message carries it.
        assert!(m(
            &[("x-match", ls("all-with-x"))],
            &[("x-match", ls("any"))]
        ));
        assert!(!m(
            &[("x-match", ls("any-with-x"))],
            &[("x-match", ls("any-with-x"))]
        ));
    }

    #[test]
    fn void_means_present() {
        let args = [("k", AMQPValue::Void)];
        assert!(m(&args, &[("k", ls("anything"))]));
        assert!(m(&args, &[("k", AMQPValue::Void)]));
        assert!(m(&args, &[("k", AMQPValue::LongInt(0))]));
        assert!(!m(&args, &[("j", ls("x"))]));
        // A Void header only equals a Void binding value.
        assert!(!m(&[("k", ls(""))], &[("k", AMQPValue::Void)]));
    }

    #[test]
    fn short_string_x_match_and_unknown_mode() {
        let any = AMQPValue::ShortString("any".into());
        assert!(m(
            &[("x-match", any), ("a", ls("1")), ("b", ls("2"))],
            &[("a", ls("1"))]
        ));
        // Unknown or non-string modes fall back to all (legacy, unvalidated).
        assert!(!m(
            &[("x-match", ls("foo")), ("a", ls("1")), ("b", ls("2"))],
            &[("a", ls("1"))]
        ));
        assert!(!m(
            &[
                ("x-match", AMQPValue::LongInt(1)),
                ("a", ls("1")),
                ("b", ls("2"))
            ],
            &[("a", ls("1"))]
        ));
    }

    #[test]
    fn erlang_equality() {
        let one = [
            AMQPValue::ShortShortInt(1),
            AMQPValue::ShortShortUInt(1),
            AMQPValue::ShortInt(1),
            AMQPValue::ShortUInt(1),
            AMQPValue::LongInt(1),
            AMQPValue::LongUInt(1),
            AMQPValue::LongLongInt(1),
            AMQPValue::Timestamp(1),
            AMQPValue::Float(1.0),
            AMQPValue::Double(1.0),
        ];
        for a in &one {
            for b in &one {
                assert!(loose_eq(a, b), "{a:?} == {b:?}");
                assert!(m(&[("k", a.clone())], &[("k", b.clone())]));
            }
        }
        assert!(!loose_eq(&AMQPValue::LongInt(1), &AMQPValue::LongInt(2)));
        assert!(!loose_eq(
            &AMQPValue::LongInt(-1),
            &AMQPValue::LongUInt(u32::MAX)
        ));
        assert!(!loose_eq(&AMQPValue::LongInt(1), &AMQPValue::Double(1.5)));
        assert!(loose_eq(&AMQPValue::Float(1.5), &AMQPValue::Double(1.5)));
        assert!(!loose_eq(
            &AMQPValue::Double(f64::NAN),
            &AMQPValue::Double(f64::NAN)
        ));
        assert!(!loose_eq(
            &AMQPValue::LongLongInt(i64::MAX),
            &AMQPValue::Double(f64::INFINITY)
        ));
        assert!(!loose_eq(&AMQPValue::LongInt(1), &ls("1")));
        assert!(!loose_eq(&AMQPValue::Boolean(true), &AMQPValue::LongInt(1)));
        assert!(loose_eq(
            &AMQPValue::Boolean(true),
            &AMQPValue::Boolean(true)
        ));
        assert!(!loose_eq(
            &AMQPValue::Boolean(true),
            &AMQPValue::Boolean(false)
        ));
        // Strings and byte arrays are all binaries.
        assert!(loose_eq(&ls("abc"), &AMQPValue::ShortString("abc".into())));
        assert!(loose_eq(
            &ls("abc"),
            &AMQPValue::ByteArray(b"abc".to_vec().into())
        ));
        assert!(!loose_eq(&ls("abc"), &ls("abd")));
        let d = |scale, value| AMQPValue::DecimalValue(DecimalValue { scale, value });
        assert!(loose_eq(&d(2, 150), &d(2, 150)));
        assert!(!loose_eq(&d(2, 150), &d(1, 15)));
        assert!(!loose_eq(&d(0, 1), &AMQPValue::LongInt(1)));
    }

    #[test]
    fn nested_values_keep_their_types() {
        let arr = |v: Vec<AMQPValue>| AMQPValue::FieldArray(FieldArray::from(v));
        assert!(loose_eq(
            &arr(vec![ls("a"), AMQPValue::LongInt(1)]),
            &arr(vec![
                AMQPValue::ShortString("a".into()),
                AMQPValue::LongInt(1)
            ])
        ));
        assert!(!loose_eq(
            &arr(vec![AMQPValue::LongInt(1)]),
            &arr(vec![AMQPValue::LongLongInt(1)])
        ));
        assert!(!loose_eq(&arr(vec![AMQPValue::LongInt(1)]), &arr(vec![])));
        let t1 = AMQPValue::FieldTable(table(&[("x", AMQPValue::LongInt(1))]));
        let t2 = AMQPValue::FieldTable(table(&[("x", AMQPValue::LongInt(1))]));
        let t3 = AMQPValue::FieldTable(table(&[("x", AMQPValue::ShortInt(1))]));
        assert!(loose_eq(&t1, &t2));
        assert!(!loose_eq(&t1, &t3));
        assert!(m(&[("k", t1.clone())], &[("k", t2)]));
        assert!(!m(&[("k", t1)], &[("k", t3)]));
    }

    #[test]
    fn identity_is_strict() {
        assert!(!value_identical(
            &AMQPValue::LongInt(1),
            &AMQPValue::LongLongInt(1)
        ));
        assert!(value_identical(
            &AMQPValue::Double(f64::NAN),
            &AMQPValue::Double(f64::NAN)
        ));
        assert!(!value_identical(
            &AMQPValue::Double(0.0),
            &AMQPValue::Double(-0.0)
        ));
        let a = table(&[("n", AMQPValue::Float(f32::NAN)), ("s", ls("v"))]);
        let b = table(&[("n", AMQPValue::Float(f32::NAN)), ("s", ls("v"))]);
        assert!(tables_identical(&a, &b));
        assert!(!tables_identical(&a, &table(&[("s", ls("v"))])));
    }

    #[test]
    fn validation_messages() {
        for ok in ["all", "any", "all-with-x", "any-with-x"] {
            assert_eq!(
                validate_headers_binding(&table(&[("x-match", ls(ok))])),
                Ok(())
            );
        }
        assert_eq!(validate_headers_binding(&table(&[])), Ok(()));
        assert_eq!(validate_headers_binding(&table(&[("a", ls("b"))])), Ok(()));
        assert_eq!(
            validate_headers_binding(&table(&[("x-match", ls("foo"))])),
            Err("Invalid x-match field value <<\"foo\">>; expected all, any, all-with-x, or any-with-x"
                .to_owned())
        );
        assert_eq!(
            validate_headers_binding(&table(&[("x-match", ls("ALL"))])),
            Err("Invalid x-match field value <<\"ALL\">>; expected all, any, all-with-x, or any-with-x"
                .to_owned())
        );
        assert_eq!(
            validate_headers_binding(&table(&[("x-match", ls(""))])),
            Err(
                "Invalid x-match field value <<>>; expected all, any, all-with-x, or any-with-x"
                    .to_owned()
            )
        );
        assert_eq!(
            validate_headers_binding(&table(&[("x-match", AMQPValue::LongInt(1))])),
            Err("Invalid x-match field type signedint (value 1); expected longstr".to_owned())
        );
        assert_eq!(
            validate_headers_binding(&table(&[("x-match", AMQPValue::Boolean(true))])),
            Err("Invalid x-match field type bool (value true); expected longstr".to_owned())
        );
    }

    #[test]
    fn erlang_printing() {
        assert_eq!(erl_binary(b"a\"b\\c"), r#"<<"a\"b\\c">>"#);
        assert_eq!(erl_binary("é".as_bytes()), "<<\"é\"/utf8>>");
        assert_eq!(erl_binary(&[255]), "<<\"ÿ\">>");
        assert_eq!(erl_binary(&[0, 1, 200]), "<<0,1,200>>");
        assert_eq!(erl_binary(b"a\nb"), "<<\"a\\nb\">>");
        assert_eq!(erl_float(1.0), "1.0");
        assert_eq!(erl_float(1e20), "1.0e20");
        assert_eq!(erl_float(0.5), "0.5");
        assert_eq!(
            erl_term(&AMQPValue::FieldArray(FieldArray::from(vec![
                ls("a"),
                AMQPValue::LongLongInt(2)
            ]))),
            "[{longstr,<<\"a\">>},{long,2}]"
        );
        assert_eq!(
            erl_term(&AMQPValue::FieldTable(table(&[("k", AMQPValue::Void)]))),
            "[{<<\"k\">>,void,undefined}]"
        );
        assert_eq!(
            erl_term(&AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 5
            })),
            "{2,5}"
        );
    }
}
