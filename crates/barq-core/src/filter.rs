//! [`Filter`]: conditions on a document's id and JSON payload, in the form users know from
//! Qdrant, parsed and validated before anything runs, and evaluated row by row against a
//! payload (the form every filter can fall back to).
//!
//! ```json
//! {"must": [{"key": "meta.lang", "match": {"value": "en"}},
//!           {"key": "year", "range": {"gte": 2020}}],
//!  "should": [{"key": "tags", "match": {"any": ["news", "sport"]}}],
//!  "must_not": [{"has_id": ["a1", "a7"]}, {"is_null": {"key": "deleted_at"}}]}
//! ```
//!
//! - `must`: every condition holds; `should`: at least one holds (when there is any);
//!   `must_not`: none holds. An empty filter matches every document.
//! - A condition is one of: `{"key": K, "match": {"value": V}}` (V a string, an integer or a
//!   boolean), `{"key": K, "match": {"any": [V, …]}}`, `{"key": K, "range": {"gt"|"gte"|"lt"|
//!   "lte": number, …}}`, `{"exists": {"key": K}}`, `{"is_null": {"key": K}}`,
//!   `{"has_id": [id, …]}`, or a nested filter (`{"must": …, "should": …, "must_not": …}`).
//! - A key is a dot-separated path into the payload (`meta.lang`). Where the path meets an
//!   array, the condition holds if it holds for any element (`tags` = `["news", "sport"]`
//!   matches `{"value": "news"}`).
//! - An integer `match` value matches a number equal to it (`2020` matches `2020.0`); numbers
//!   never match strings or booleans.
//!
//! Errors name the condition by its place (`filter.must[1].range`), and say what was expected.

use serde_json::Value;

use crate::{Error, Result};

/// Nested filters deeper than this are refused.
pub const MAX_FILTER_DEPTH: usize = 8;
/// Conditions (all groups and nesting levels together) one filter may hold.
pub const MAX_FILTER_CONDITIONS: usize = 1024;
/// Values one `match.any` or `has_id` list may hold.
pub const MAX_FILTER_VALUES: usize = 10_000;

/// A validated filter. See the module docs for the form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Every one holds.
    pub must: Vec<Condition>,
    /// At least one holds (when non-empty).
    pub should: Vec<Condition>,
    /// None holds.
    pub must_not: Vec<Condition>,
}

/// One condition of a [`Filter`].
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The value at `key` equals `value` (or, for an array, one element does).
    Match {
        /// The payload path.
        key: Vec<String>,
        /// The value.
        value: MatchValue,
    },
    /// The value at `key` equals one of `any`.
    MatchAny {
        /// The payload path.
        key: Vec<String>,
        /// The values.
        any: Vec<MatchValue>,
    },
    /// The number at `key` lies in the range.
    Range {
        /// The payload path.
        key: Vec<String>,
        /// The bounds.
        range: Range,
    },
    /// A value (null included) is at `key`.
    Exists {
        /// The payload path.
        key: Vec<String>,
    },
    /// `null` is at `key` (an absent key is not null: use `must_not` + `exists` for that).
    IsNull {
        /// The payload path.
        key: Vec<String>,
    },
    /// The document's id is one of these.
    HasId(Vec<String>),
    /// A nested filter.
    Nested(Box<Filter>),
}

/// A value a `match` compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchValue {
    /// A string.
    Keyword(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

/// Bounds of a `range` condition; at least one is set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Range {
    /// Greater than.
    pub gt: Option<f64>,
    /// Greater than or equal.
    pub gte: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
    /// Less than or equal.
    pub lte: Option<f64>,
}

impl Range {
    /// Whether `x` lies within every bound.
    pub fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

impl Filter {
    /// Parse and validate a filter from its JSON form. Nothing is evaluated: an unknown
    /// operator, a value of the wrong type, an empty key or a filter nested too deep is an
    /// `InvalidArgument` naming the condition.
    pub fn from_json(v: &Value) -> Result<Filter> {
        let mut count = 0;
        parse_filter(v, "filter", 1, &mut count)
    }

    /// Whether the document with `id` and `payload` matches.
    pub fn matches(&self, id: &str, payload: Option<&crate::Payload>) -> bool {
        self.must.iter().all(|c| c.matches(id, payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.matches(id, payload)))
            && !self.must_not.iter().any(|c| c.matches(id, payload))
    }

    /// Whether the filter has no condition at all (it matches every document).
    pub fn is_empty(&self) -> bool {
        self.must.is_empty() && self.should.is_empty() && self.must_not.is_empty()
    }
}

impl Condition {
    /// Whether the document with `id` and `payload` meets the condition.
    pub fn matches(&self, id: &str, payload: Option<&crate::Payload>) -> bool {
        let at = |key: &[String]| values_at(payload, key);
        match self {
            Condition::Match { key, value } => at(key).iter().any(|v| value.equals(v)),
            Condition::MatchAny { key, any } => at(key)
                .iter()
                .any(|v| any.iter().any(|value| value.equals(v))),
            Condition::Range { key, range } => at(key)
                .iter()
                .any(|v| v.as_f64().is_some_and(|x| range.contains(x))),
            Condition::Exists { key } => !at(key).is_empty(),
            Condition::IsNull { key } => at(key).iter().any(|v| v.is_null()),
            Condition::HasId(ids) => ids.iter().any(|i| i == id),
            Condition::Nested(f) => f.matches(id, payload),
        }
    }
}

impl Condition {
    /// The payload path the condition is on (`None` for `has_id` and nested filters).
    pub fn key(&self) -> Option<&[String]> {
        match self {
            Condition::Match { key, .. }
            | Condition::MatchAny { key, .. }
            | Condition::Range { key, .. }
            | Condition::Exists { key }
            | Condition::IsNull { key } => Some(key),
            Condition::HasId(_) | Condition::Nested(_) => None,
        }
    }
}

/// The values at `key` in `payload`, arrays expanded: the values every condition on `key` is
/// evaluated against (a payload index holds exactly these).
pub fn values_at<'a>(payload: Option<&'a crate::Payload>, key: &[String]) -> Vec<&'a Value> {
    let mut found = Vec::new();
    if let Some(p) = payload
        && let Some((first, rest)) = key.split_first()
        && let Some(v) = p.get(first)
    {
        collect(v, rest, &mut found);
    }
    found
}

/// Parse a payload path (`meta.lang`) into its field names.
pub fn parse_path(s: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = s.split('.').map(str::to_owned).collect();
    (!s.is_empty() && !parts.iter().any(String::is_empty)).then_some(parts)
}

/// The type of an indexed payload field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Strings: a row bitmap per distinct value (`match`).
    Keyword,
    /// Integers: a row bitmap per distinct value (`match`, and `range` over the values).
    Integer,
    /// Numbers: the values sorted with their rows (`range`, and `match` of integers).
    Float,
    /// Booleans: a row bitmap per value.
    Bool,
}

impl FieldType {
    /// Lowercase name for messages.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Keyword => "keyword",
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
        }
    }
}

/// A payload field a collection indexes in each sealed segment, so that filters on it read a
/// bitmap instead of every payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexedField {
    /// The payload path (`meta.lang`).
    pub path: String,
    /// The type of the values indexed; values of other types stay correct through the rows'
    /// payloads.
    #[serde(rename = "type")]
    pub field_type: FieldType,
}

/// Indexed fields one collection may declare.
pub const MAX_INDEXED_FIELDS: usize = 64;

impl IndexedField {
    /// A field of `field_type` at `path`.
    pub fn new(path: impl Into<String>, field_type: FieldType) -> IndexedField {
        IndexedField {
            path: path.into(),
            field_type,
        }
    }

    /// The path's field names.
    pub fn key(&self) -> Vec<String> {
        parse_path(&self.path).unwrap_or_default()
    }
}

/// Check a collection's indexed fields: valid paths, no path twice, at most
/// [`MAX_INDEXED_FIELDS`].
pub fn validate_indexed_fields(fields: &[IndexedField]) -> Result<()> {
    if fields.len() > MAX_INDEXED_FIELDS {
        return Err(Error::invalid(format!(
            "a collection indexes at most {MAX_INDEXED_FIELDS} payload fields, not {}",
            fields.len()
        )));
    }
    for (i, f) in fields.iter().enumerate() {
        if parse_path(&f.path).is_none() || f.path.len() > 256 {
            return Err(Error::invalid(format!(
                "indexed_fields[{i}].path: \"{}\" is not a path (dot-separated field names, none empty, at most 256 bytes)",
                f.path
            )));
        }
        if fields[..i].iter().any(|g| g.path == f.path) {
            return Err(Error::invalid(format!(
                "indexed_fields[{i}].path: \"{}\" is indexed twice",
                f.path
            )));
        }
    }
    Ok(())
}

impl MatchValue {
    /// Whether a payload number `x` equals this value (only an integer can).
    pub fn equals_number(&self, x: f64) -> bool {
        matches!(self, MatchValue::Integer(i) if x == *i as f64)
    }

    /// Whether the payload value `v` equals this one (an integer equals a number of the same
    /// value; other types never equal each other).
    pub fn equals(&self, v: &Value) -> bool {
        match (self, v) {
            (MatchValue::Keyword(s), Value::String(x)) => s == x,
            (MatchValue::Bool(b), Value::Bool(x)) => b == x,
            (MatchValue::Integer(i), Value::Number(n)) => match n.as_i64() {
                Some(x) => x == *i,
                None => n.as_f64().is_some_and(|x| x == *i as f64),
            },
            _ => false,
        }
    }
}

/// The values at `rest` below `v`, arrays expanded (an array at the end of the path gives its
/// elements; an array on the way is searched element by element).
fn collect<'a>(v: &'a Value, rest: &[String], out: &mut Vec<&'a Value>) {
    match (v, rest.split_first()) {
        (Value::Array(items), _) => {
            for item in items {
                collect(item, rest, out);
            }
        }
        (_, None) => out.push(v),
        (Value::Object(m), Some((first, rest))) => {
            if let Some(next) = m.get(first) {
                collect(next, rest, out);
            }
        }
        _ => {}
    }
}

fn invalid(at: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{at}: {why}"))
}

fn parse_filter(v: &Value, at: &str, depth: usize, count: &mut usize) -> Result<Filter> {
    if depth > MAX_FILTER_DEPTH {
        return Err(invalid(
            at,
            format!("filters nest at most {MAX_FILTER_DEPTH} levels deep"),
        ));
    }
    let obj = v.as_object().ok_or_else(|| {
        invalid(
            at,
            "expected an object with \"must\", \"should\" or \"must_not\"",
        )
    })?;
    let mut f = Filter::default();
    for (k, list) in obj {
        let group = match k.as_str() {
            "must" => &mut f.must,
            "should" => &mut f.should,
            "must_not" => &mut f.must_not,
            other => {
                return Err(invalid(
                    at,
                    format!(
                        "unknown field \"{other}\" (a filter has \"must\", \"should\" and \"must_not\")"
                    ),
                ));
            }
        };
        let items = list
            .as_array()
            .ok_or_else(|| invalid(&format!("{at}.{k}"), "expected a list of conditions"))?;
        for (i, c) in items.iter().enumerate() {
            *count += 1;
            if *count > MAX_FILTER_CONDITIONS {
                return Err(invalid(
                    at,
                    format!("a filter holds at most {MAX_FILTER_CONDITIONS} conditions"),
                ));
            }
            group.push(parse_condition(c, &format!("{at}.{k}[{i}]"), depth, count)?);
        }
    }
    Ok(f)
}

fn parse_condition(v: &Value, at: &str, depth: usize, count: &mut usize) -> Result<Condition> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(at, "expected a condition object"))?;
    let nested = ["must", "should", "must_not"];
    if obj.keys().any(|k| nested.contains(&k.as_str())) {
        return Ok(Condition::Nested(Box::new(parse_filter(
            v,
            at,
            depth + 1,
            count,
        )?)));
    }
    let only = |field: &str| -> Result<()> {
        match obj
            .keys()
            .find(|k| k.as_str() != field && k.as_str() != "key")
        {
            Some(extra) => Err(invalid(
                at,
                format!("unexpected field \"{extra}\" beside \"{field}\""),
            )),
            None => Ok(()),
        }
    };
    if let Some(ids) = obj.get("has_id") {
        if obj.len() > 1 {
            return Err(invalid(at, "\"has_id\" stands alone in its condition"));
        }
        let at = format!("{at}.has_id");
        let list = ids
            .as_array()
            .ok_or_else(|| invalid(&at, "expected a list of document ids"))?;
        check_len(&at, list.len())?;
        let ids = list
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(&at, format!("document ids are strings, not {i}")))
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(Condition::HasId(ids));
    }
    for (name, make) in [
        (
            "exists",
            (|key| Condition::Exists { key }) as fn(Vec<String>) -> Condition,
        ),
        ("is_null", |key| Condition::IsNull { key }),
    ] {
        if let Some(inner) = obj.get(name) {
            if obj.len() > 1 {
                return Err(invalid(
                    at,
                    format!("\"{name}\" stands alone in its condition"),
                ));
            }
            let at = format!("{at}.{name}");
            let inner = inner
                .as_object()
                .filter(|o| o.len() == 1)
                .ok_or_else(|| invalid(&at, "expected {\"key\": \"path\"}"))?;
            return Ok(make(parse_key(inner.get("key"), &at)?));
        }
    }
    let key = || parse_key(obj.get("key"), at);
    if let Some(m) = obj.get("match") {
        only("match")?;
        let key = key()?;
        let at = format!("{at}.match");
        let m = m
            .as_object()
            .filter(|o| o.len() == 1)
            .ok_or_else(|| invalid(&at, "expected {\"value\": v} or {\"any\": [v, …]}"))?;
        if let Some(value) = m.get("value") {
            return Ok(Condition::Match {
                key,
                value: parse_value(value, &format!("{at}.value"))?,
            });
        }
        if let Some(any) = m.get("any") {
            let at = format!("{at}.any");
            let list = any
                .as_array()
                .ok_or_else(|| invalid(&at, "expected a list of values"))?;
            check_len(&at, list.len())?;
            let any = list
                .iter()
                .map(|v| parse_value(v, &at))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Condition::MatchAny { key, any });
        }
        let op = m.keys().next().map_or("", String::as_str);
        return Err(invalid(
            &at,
            format!("unknown match operator \"{op}\" (expected \"value\" or \"any\")"),
        ));
    }
    if let Some(r) = obj.get("range") {
        only("range")?;
        let key = key()?;
        let at = format!("{at}.range");
        let r = r
            .as_object()
            .ok_or_else(|| invalid(&at, "expected an object of gt, gte, lt, lte"))?;
        let mut range = Range::default();
        for (op, bound) in r {
            let x = bound.as_f64().ok_or_else(|| {
                invalid(
                    &format!("{at}.{op}"),
                    format!("expected a number, not {bound}"),
                )
            })?;
            let slot = match op.as_str() {
                "gt" => &mut range.gt,
                "gte" => &mut range.gte,
                "lt" => &mut range.lt,
                "lte" => &mut range.lte,
                other => {
                    return Err(invalid(
                        &at,
                        format!("unknown range operator \"{other}\" (expected gt, gte, lt, lte)"),
                    ));
                }
            };
            *slot = Some(x);
        }
        if range == Range::default() {
            return Err(invalid(&at, "give at least one of gt, gte, lt, lte"));
        }
        return Ok(Condition::Range { key, range });
    }
    let names: Vec<&str> = obj.keys().map(String::as_str).collect();
    Err(invalid(
        at,
        format!(
            "unknown condition {names:?} (expected match, range, exists, is_null, has_id or a \
             nested must/should/must_not)"
        ),
    ))
}

fn check_len(at: &str, n: usize) -> Result<()> {
    if n == 0 {
        return Err(invalid(at, "the list is empty"));
    }
    if n > MAX_FILTER_VALUES {
        return Err(invalid(
            at,
            format!("at most {MAX_FILTER_VALUES} values, not {n}"),
        ));
    }
    Ok(())
}

fn parse_key(v: Option<&Value>, at: &str) -> Result<Vec<String>> {
    let at = format!("{at}.key");
    let s = v
        .ok_or_else(|| invalid(&at, "missing: the payload path the condition is on"))?
        .as_str()
        .ok_or_else(|| invalid(&at, "expected a string such as \"meta.lang\""))?;
    parse_path(s).ok_or_else(|| {
        invalid(
            &at,
            format!("\"{s}\" is not a path (dot-separated field names, none empty)"),
        )
    })
}

fn parse_value(v: &Value, at: &str) -> Result<MatchValue> {
    match v {
        Value::String(s) => Ok(MatchValue::Keyword(s.clone())),
        Value::Bool(b) => Ok(MatchValue::Bool(*b)),
        Value::Number(n) => n.as_i64().map(MatchValue::Integer).ok_or_else(|| {
            invalid(
                at,
                format!("match values are strings, integers or booleans, not {n} (use range for other numbers)"),
            )
        }),
        other => Err(invalid(
            at,
            format!("match values are strings, integers or booleans, not {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> crate::Payload {
        v.as_object().expect("object").clone()
    }

    fn parse(v: Value) -> Filter {
        Filter::from_json(&v).expect("valid filter")
    }

    fn refused(v: Value) -> String {
        let e = Filter::from_json(&v).expect_err("invalid filter");
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        e.message().to_owned()
    }

    #[test]
    fn conditions_match_as_documented() {
        let p = payload(json!({
            "meta": {"lang": "en", "year": 2021},
            "tags": ["news", "sport"],
            "score": 0.5,
            "flag": true,
            "gone": null,
            "items": [{"kind": "a"}, {"kind": "b"}]
        }));
        let yes = |f: Value| assert!(parse(f.clone()).matches("d1", Some(&p)), "{f}");
        let no = |f: Value| assert!(!parse(f.clone()).matches("d1", Some(&p)), "{f}");
        yes(json!({}));
        yes(json!({"must": [{"key": "meta.lang", "match": {"value": "en"}}]}));
        no(json!({"must": [{"key": "meta.lang", "match": {"value": "de"}}]}));
        yes(json!({"must": [{"key": "tags", "match": {"value": "sport"}}]}));
        yes(json!({"must": [{"key": "items.kind", "match": {"any": ["x", "b"]}}]}));
        yes(json!({"must": [{"key": "meta.year", "match": {"value": 2021}}]}));
        no(json!({"must": [{"key": "meta.year", "match": {"value": "2021"}}]}));
        yes(json!({"must": [{"key": "flag", "match": {"value": true}}]}));
        yes(json!({"must": [{"key": "meta.year", "range": {"gte": 2020, "lt": 2022}}]}));
        no(json!({"must": [{"key": "meta.year", "range": {"gt": 2021}}]}));
        yes(json!({"must": [{"key": "score", "range": {"lte": 0.5}}]}));
        no(json!({"must": [{"key": "meta.lang", "range": {"gte": 0}}]}));
        yes(json!({"must": [{"exists": {"key": "gone"}}, {"is_null": {"key": "gone"}}]}));
        no(json!({"must": [{"is_null": {"key": "nowhere"}}]}));
        yes(json!({"must_not": [{"exists": {"key": "nowhere"}}]}));
        no(json!({"must": [{"exists": {"key": "nowhere"}}]}));
        no(json!({"must": [{"is_null": {"key": "meta.lang"}}]}));
        yes(json!({"must": [{"has_id": ["d0", "d1"]}]}));
        no(json!({"must_not": [{"has_id": ["d1"]}]}));
        yes(json!({"should": [{"has_id": ["x"]}, {"key": "flag", "match": {"value": true}}]}));
        no(json!({"should": [{"has_id": ["x"]}, {"key": "flag", "match": {"value": false}}]}));
        yes(json!({"must": [{"should": [{"has_id": ["x"]}, {"must_not": [{"has_id": ["y"]}]}]}]}));
        // Without a payload only id conditions and absence can hold.
        assert!(!parse(json!({"must": [{"is_null": {"key": "a"}}]})).matches("d", None));
        assert!(!parse(json!({"must": [{"exists": {"key": "a"}}]})).matches("d", None));
        assert!(parse(json!({"must_not": [{"exists": {"key": "a"}}]})).matches("d", None));
        assert!(parse(json!({"must": [{"has_id": ["d"]}]})).matches("d", None));
    }

    #[test]
    fn bad_filters_are_refused_naming_the_condition() {
        let m = refused(json!({"must": [{"key": "a", "mach": {"value": 1}}]}));
        assert!(m.starts_with("filter.must[0]: unknown condition"), "{m}");
        let m = refused(json!({"must": [{"key": "a", "match": {"value": 1.5}}]}));
        assert!(
            m.starts_with("filter.must[0].match.value: match values are strings"),
            "{m}"
        );
        let m = refused(json!({"must": [{"key": "a", "match": {"eq": 1}}]}));
        assert!(m.contains("unknown match operator \"eq\""), "{m}");
        let m = refused(json!({"should": [{"key": "a", "range": {"gte": "x"}}]}));
        assert!(
            m.starts_with("filter.should[0].range.gte: expected a number"),
            "{m}"
        );
        let m = refused(json!({"must": [{"key": "a", "range": {"from": 1}}]}));
        assert!(m.contains("unknown range operator \"from\""), "{m}");
        let m = refused(json!({"must": [{"key": "a", "range": {}}]}));
        assert!(m.contains("at least one of"), "{m}");
        let m = refused(json!({"must": [{"key": "a..b", "match": {"value": 1}}]}));
        assert!(m.starts_with("filter.must[0].key:"), "{m}");
        let m = refused(json!({"must": [{"match": {"value": 1}}]}));
        assert!(m.starts_with("filter.must[0].key: missing"), "{m}");
        let m = refused(json!({"must": [{"has_id": [1]}]}));
        assert!(m.starts_with("filter.must[0].has_id"), "{m}");
        let m = refused(json!({"filter": []}));
        assert!(m.contains("unknown field \"filter\""), "{m}");
        let m = refused(json!({"must": {"key": "a"}}));
        assert!(m.starts_with("filter.must: expected a list"), "{m}");
        let m = refused(json!({"must": [{"key": "a", "match": {"any": []}}]}));
        assert!(m.contains("the list is empty"), "{m}");
        let mut deep = json!({"must": [{"has_id": ["x"]}]});
        for _ in 0..MAX_FILTER_DEPTH {
            deep = json!({"must": [deep]});
        }
        let m = refused(deep);
        assert!(m.contains("nest at most"), "{m}");
        let many: Vec<Value> = (0..=MAX_FILTER_CONDITIONS)
            .map(|i| json!({"has_id": [format!("d{i}")]}))
            .collect();
        let m = refused(json!({"should": many}));
        assert!(m.contains("at most 1024 conditions"), "{m}");
    }
}
