//! A client's JSON schema checked against the subset Coffer enforces and rebuilt from
//! it: `type` (one or a list), `properties`, `required`, `additionalProperties`, `items`,
//! `minItems`/`maxItems`, `minLength`/`maxLength`, `pattern` (rewritten by
//! [`super::pattern`]), `format` (date, time, date-time, uuid), `minimum`/`maximum`
//! and their exclusive forms, `enum`, `const`, `anyOf`/`oneOf`, and `$ref` into the
//! schema's own `$defs`/`definitions` (inlined; a recursive one is refused by depth).
//! Annotations (`title`, `description`, `default`, `examples`, …) are dropped. Anything
//! else is refused by name, every bound in [`super::limits`] is checked, and the rebuilt
//! schema holds only what was checked: llama.cpp's converter reads nothing else.

use serde_json::{Map, Value};

use super::limits;
use super::pattern::{self, PatternError};

/// Why a schema was refused: where (a JSON pointer into the schema) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("{path}: keyword '{keyword}' is not supported")]
    Keyword { path: String, keyword: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: &'static str },
    #[error("{path}: {what} is {value}; at most {max}")]
    Bound {
        path: String,
        what: &'static str,
        value: String,
        max: String,
    },
    #[error("{path}: {what} is greater than its maximum")]
    Inverted { path: String, what: &'static str },
    #[error("{path}: pattern {source}")]
    Pattern {
        path: String,
        #[source]
        source: PatternError,
    },
    #[error("the schema nests deeper than {max} levels (a recursive $ref?)", max = limits::MAX_DEPTH)]
    TooDeep,
    #[error("the schema has more than {max} subschemas", max = limits::MAX_NODES)]
    TooManyNodes,
    #[error("the schema is larger than {max} bytes once normalised", max = limits::MAX_SCHEMA_BYTES)]
    TooLarge,
}

const TYPES: [&str; 7] = [
    "object", "array", "string", "integer", "number", "boolean", "null",
];
const FORMATS: [&str; 4] = ["date", "time", "date-time", "uuid"];
const ANNOTATIONS: [&str; 11] = [
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "strict",
];

/// Checks `schema` and returns the rebuilt schema the converter may read.
pub fn normalize(schema: &Value) -> Result<Value, SchemaError> {
    let mut n = Normalizer {
        root: schema,
        nodes: 0,
    };
    let out = n.node(schema, "#", 0)?;
    if out.to_string().len() > limits::MAX_SCHEMA_BYTES {
        return Err(SchemaError::TooLarge);
    }
    Ok(out)
}

struct Normalizer<'a> {
    root: &'a Value,
    nodes: usize,
}

/// A key as it may appear in a message: bounded, so a huge key is not echoed whole.
fn shown(key: &str) -> String {
    key.chars().take(64).collect()
}

/// A value past one of [`limits`]'s bounds.
fn exceeds(path: &str, what: &'static str, value: String, max: String) -> SchemaError {
    SchemaError::Bound {
        path: path.to_string(),
        what,
        value,
        max,
    }
}

/// A non-empty array of at most `max` items.
fn non_empty_list<'v>(
    value: &'v Value,
    at: &str,
    max: usize,
    what: &'static str,
) -> Result<&'v [Value], SchemaError> {
    let list = value
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| invalid(at, "must be a non-empty array"))?;
    if list.len() > max {
        return Err(exceeds(at, what, list.len().to_string(), max.to_string()));
    }
    Ok(list)
}

fn invalid(path: &str, reason: &'static str) -> SchemaError {
    SchemaError::Invalid {
        path: path.to_string(),
        reason,
    }
}

impl Normalizer<'_> {
    fn node(&mut self, schema: &Value, path: &str, depth: usize) -> Result<Value, SchemaError> {
        if depth > limits::MAX_DEPTH {
            return Err(SchemaError::TooDeep);
        }
        self.nodes += 1;
        if self.nodes > limits::MAX_NODES {
            return Err(SchemaError::TooManyNodes);
        }
        let obj = match schema {
            Value::Bool(true) => return Ok(Value::Object(Map::new())),
            Value::Object(o) => o,
            _ => return Err(invalid(path, "a schema must be an object or true")),
        };
        if let Some(r) = obj.get("$ref") {
            return self.reference(r, path, depth);
        }
        let mut out = Map::new();
        for (key, value) in obj {
            let at = format!("{path}/{}", shown(key));
            match key.as_str() {
                "type" => {
                    out.insert(key.clone(), types(value, &at)?);
                }
                "properties" => {
                    out.insert(key.clone(), self.properties(value, &at, depth)?);
                }
                "required" => {
                    out.insert(key.clone(), required(value, obj.get("properties"), &at)?);
                }
                "additionalProperties" | "items" => {
                    let v = match value {
                        Value::Bool(b) if key == "additionalProperties" => Value::Bool(*b),
                        _ => self.node(value, &at, depth + 1)?,
                    };
                    out.insert(key.clone(), v);
                }
                "anyOf" | "oneOf" => {
                    out.insert(key.clone(), self.alternatives(value, &at, depth)?);
                }
                "minItems" | "maxItems" | "minLength" | "maxLength" => {
                    out.insert(key.clone(), count(value, &at, key)?);
                }
                "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
                    out.insert(key.clone(), bound(value, &at)?);
                }
                "pattern" => {
                    let Value::String(p) = value else {
                        return Err(invalid(&at, "pattern must be a string"));
                    };
                    let p = pattern::normalize(p)
                        .map_err(|source| SchemaError::Pattern { path: at, source })?;
                    out.insert(key.clone(), Value::String(p));
                }
                "format" => match value.as_str() {
                    Some(f) if FORMATS.contains(&f) => {
                        out.insert(key.clone(), value.clone());
                    }
                    _ => {
                        return Err(invalid(
                            &at,
                            "format must be one of date, time, date-time, uuid",
                        ));
                    }
                },
                "enum" => {
                    out.insert(key.clone(), enumeration(value, &at)?);
                }
                "const" => {
                    literal(value, &at)?;
                    out.insert(key.clone(), value.clone());
                }
                "$defs" | "definitions" if depth == 0 => {}
                k if ANNOTATIONS.contains(&k) => {}
                _ => {
                    return Err(SchemaError::Keyword {
                        path: path.to_string(),
                        keyword: shown(key),
                    });
                }
            }
        }
        open_names(&out, path)?;
        inverted(&out, "minItems", "maxItems", path)?;
        inverted(&out, "minLength", "maxLength", path)?;
        inverted(&out, "minimum", "maximum", path)?;
        inverted(&out, "exclusiveMinimum", "exclusiveMaximum", path)?;
        inverted(&out, "minimum", "exclusiveMaximum", path)?;
        inverted(&out, "exclusiveMinimum", "maximum", path)?;
        Ok(Value::Object(out))
    }

    /// `#/$defs/NAME` or `#/definitions/NAME` of the same schema, inlined.
    fn reference(&mut self, r: &Value, path: &str, depth: usize) -> Result<Value, SchemaError> {
        let at = format!("{path}/$ref");
        let target = r
            .as_str()
            .and_then(|r| {
                r.strip_prefix("#/$defs/")
                    .map(|n| ("$defs", n))
                    .or_else(|| r.strip_prefix("#/definitions/").map(|n| ("definitions", n)))
            })
            .ok_or_else(|| invalid(&at, "$ref must point into #/$defs or #/definitions"))?;
        let name = target.1.replace("~1", "/").replace("~0", "~");
        let found = self
            .root
            .get(target.0)
            .and_then(|defs| defs.get(&name))
            .ok_or_else(|| invalid(&at, "$ref names no definition of this schema"))?;
        self.node(found, &at, depth + 1)
    }

    fn properties(&mut self, value: &Value, at: &str, depth: usize) -> Result<Value, SchemaError> {
        let Value::Object(props) = value else {
            return Err(invalid(at, "properties must be an object"));
        };
        if props.len() > limits::MAX_PROPERTIES {
            return Err(exceeds(
                at,
                "the number of properties",
                props.len().to_string(),
                limits::MAX_PROPERTIES.to_string(),
            ));
        }
        let mut out = Map::new();
        for (name, sub) in props {
            if name.len() > limits::MAX_LITERAL_BYTES {
                return Err(invalid(at, "a property name is too long"));
            }
            let sub_at = format!("{at}/{}", shown(name));
            out.insert(name.clone(), self.node(sub, &sub_at, depth + 1)?);
        }
        Ok(Value::Object(out))
    }

    fn alternatives(
        &mut self,
        value: &Value,
        at: &str,
        depth: usize,
    ) -> Result<Value, SchemaError> {
        let list = non_empty_list(
            value,
            at,
            limits::MAX_ALTERNATIVES,
            "the number of alternatives",
        )?;
        let mut out = Vec::with_capacity(list.len());
        for (i, sub) in list.iter().enumerate() {
            out.push(self.node(sub, &format!("{at}/{i}"), depth + 1)?);
        }
        Ok(Value::Array(out))
    }
}

fn types(value: &Value, at: &str) -> Result<Value, SchemaError> {
    let ok = |v: &Value| v.as_str().is_some_and(|t| TYPES.contains(&t));
    match value {
        Value::String(_) if ok(value) => Ok(value.clone()),
        Value::Array(list)
            if !list.is_empty() && list.len() <= TYPES.len() && list.iter().all(ok) =>
        {
            Ok(value.clone())
        }
        _ => Err(invalid(
            at,
            "type must be one of object, array, string, integer, number, boolean, null, or a list of them",
        )),
    }
}

fn required(value: &Value, properties: Option<&Value>, at: &str) -> Result<Value, SchemaError> {
    let list = value
        .as_array()
        .ok_or_else(|| invalid(at, "required must be an array of property names"))?;
    if list.len() > limits::MAX_PROPERTIES {
        return Err(invalid(
            at,
            "required names more properties than an object may have",
        ));
    }
    for (i, name) in list.iter().enumerate() {
        let Some(name) = name.as_str() else {
            return Err(invalid(at, "required must be an array of property names"));
        };
        if properties.and_then(|p| p.get(name)).is_none() {
            return Err(invalid(
                at,
                "required names a property that properties does not define",
            ));
        }
        if list[..i].iter().any(|n| n.as_str() == Some(name)) {
            return Err(invalid(at, "required names a property twice"));
        }
    }
    Ok(value.clone())
}

fn count(value: &Value, at: &str, what: &str) -> Result<Value, SchemaError> {
    let n = value
        .as_u64()
        .ok_or_else(|| invalid(at, "must be a non-negative integer"))?;
    if n > limits::MAX_REPEAT {
        return Err(exceeds(
            at,
            if what.ends_with("Items") {
                "an item count"
            } else {
                "a length"
            },
            n.to_string(),
            limits::MAX_REPEAT.to_string(),
        ));
    }
    Ok(Value::from(n))
}

fn bound(value: &Value, at: &str) -> Result<Value, SchemaError> {
    let v = value
        .as_f64()
        .filter(|v| v.is_finite())
        .ok_or_else(|| invalid(at, "must be a number"))?;
    if v.abs() > limits::MAX_BOUND {
        return Err(exceeds(
            at,
            "a bound's magnitude",
            format!("{v:e}"),
            "2^53".to_string(),
        ));
    }
    Ok(value.clone())
}

fn enumeration(value: &Value, at: &str) -> Result<Value, SchemaError> {
    let list = non_empty_list(value, at, limits::MAX_ENUM, "the number of enum values")?;
    for v in list {
        literal(v, at)?;
    }
    Ok(value.clone())
}

fn literal(value: &Value, at: &str) -> Result<(), SchemaError> {
    if value.to_string().len() > limits::MAX_LITERAL_BYTES {
        return Err(exceeds(
            at,
            "a literal's size in bytes",
            "larger".to_string(),
            limits::MAX_LITERAL_BYTES.to_string(),
        ));
    }
    Ok(())
}

/// With `additionalProperties` `true` or a schema, llama.cpp's converter writes each
/// property name's characters unescaped into character classes (the rule for "any other
/// key"), one nested group per character: a `]`, `-` or `^` there breaks the grammar, and
/// a long name nests deep. Such names are refused; with `false` (or absent) names are
/// written as escaped literals and any name up to the literal bound is fine.
fn open_names(out: &Map<String, Value>, path: &str) -> Result<(), SchemaError> {
    let open = out
        .get("additionalProperties")
        .is_some_and(|a| a != &Value::Bool(false));
    let Some(Value::Object(props)) = out.get("properties").filter(|_| open) else {
        return Ok(());
    };
    let unsafe_char = |c: char| c.is_control() || matches!(c, '[' | ']' | '\\' | '^' | '-' | '"');
    if props
        .keys()
        .any(|k| k.chars().count() > limits::MAX_OPEN_NAME_CHARS || k.chars().any(unsafe_char))
    {
        return Err(invalid(
            path,
            "with additionalProperties other than false, property names must be at most 64 characters without [ ] \\ ^ - \" or control characters",
        ));
    }
    Ok(())
}

/// `lo` greater than `hi` (both present) is refused.
fn inverted(
    out: &Map<String, Value>,
    lo: &'static str,
    hi: &str,
    path: &str,
) -> Result<(), SchemaError> {
    if let (Some(a), Some(b)) = (
        out.get(lo).and_then(Value::as_f64),
        out.get(hi).and_then(Value::as_f64),
    ) {
        if a > b {
            return Err(SchemaError::Inverted {
                path: path.to_string(),
                what: lo,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_supported_subset_is_rebuilt_without_annotations() {
        let s = json!({
            "title": "Person", "type": "object", "additionalProperties": false,
            "properties": {
                "name": {"type": "string", "maxLength": 40, "description": "full name"},
                "age": {"type": ["integer", "null"], "minimum": 0, "maximum": 150},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
                "id": {"type": "string", "pattern": "^[A-Z]{2}\\d{4}$"},
                "kind": {"$ref": "#/$defs/Kind"}
            },
            "required": ["name", "age"],
            "$defs": {"Kind": {"const": "x"}}
        });
        let n = normalize(&s).unwrap();
        assert!(n.get("title").is_none() && n.get("$defs").is_none());
        assert_eq!(n["properties"]["kind"], json!({"const": "x"}));
        assert_eq!(
            n["properties"]["name"],
            json!({"type": "string", "maxLength": 40})
        );
        assert!(
            n["properties"]["id"]["pattern"]
                .as_str()
                .unwrap()
                .starts_with("^([\\u0041")
        );
    }

    #[test]
    fn each_bound_and_unsupported_keyword_is_refused_with_its_path() {
        let cases = [
            (
                json!({"type": "string", "pattern": "^a{2,1}$"}),
                "#/pattern",
            ),
            (
                json!({"type": "string", "minLength": 5, "maxLength": 2}),
                "#",
            ),
            (
                json!({"type": "array", "minItems": 100000000}),
                "#/minItems",
            ),
            (
                json!({"type": "string", "maxLength": 1000000}),
                "#/maxLength",
            ),
            (json!({"type": "integer", "minimum": 10, "maximum": 1}), "#"),
            (json!({"type": "object", "patternProperties": {}}), "#"),
            (json!({"not": {}}), "#"),
            (json!({"allOf": [{}]}), "#"),
            (json!({"type": "strin"}), "#/type"),
            (json!({"format": "email"}), "#/format"),
            (json!({"$ref": "https://example.invalid/s.json"}), "#/$ref"),
            (
                json!({"properties": {"a": {"type": "integer"}}, "required": ["b"]}),
                "#/required",
            ),
            (
                json!({"items": {"items": {"minLength": -1}}}),
                "#/items/items/minLength",
            ),
        ];
        for (schema, path) in cases {
            let e = normalize(&schema).unwrap_err();
            let text = e.to_string();
            assert!(text.starts_with(path), "{schema}: {text}");
        }
    }

    #[test]
    fn recursion_depth_size_and_count_are_bounded() {
        let recursive = json!({"$ref": "#/$defs/n", "$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}});
        assert_eq!(normalize(&recursive), Err(SchemaError::TooDeep));
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"type": "array", "items": deep});
        }
        assert_eq!(normalize(&deep), Err(SchemaError::TooDeep));
        let wide: Map<String, Value> = (0..65).map(|i| (format!("p{i}"), json!({}))).collect();
        assert!(matches!(
            normalize(&json!({"properties": wide})),
            Err(SchemaError::Bound { .. })
        ));
        // $refs that fan out eightfold at each level, shallow but 8^4 leaves: the node
        // count stops them.
        let mut defs = Map::new();
        defs.insert("d0".into(), json!({"type": "string"}));
        for i in 1..5 {
            let prev = json!({"$ref": format!("#/$defs/d{}", i - 1)});
            defs.insert(format!("d{i}"), json!({"anyOf": vec![prev; 8]}));
        }
        let diamond = json!({"$ref": "#/$defs/d4", "$defs": defs});
        assert_eq!(normalize(&diamond), Err(SchemaError::TooManyNodes));
        let huge_enum: Vec<Value> = (0..300).map(Value::from).collect();
        assert!(normalize(&json!({"enum": huge_enum})).is_err());
        assert!(normalize(&json!({"const": "x".repeat(5000)})).is_err());
    }

    #[test]
    fn refusals_do_not_echo_values() {
        // Found by fuzzing: a ']' in a property name broke the converter's grammar.
        let open = json!({"properties": {"a]b": {"type": "integer"}}, "additionalProperties": {"type": "integer"}});
        assert!(
            normalize(&open)
                .unwrap_err()
                .to_string()
                .contains("additionalProperties")
        );
        let closed =
            json!({"properties": {"a]b-^": {"type": "integer"}}, "additionalProperties": false});
        assert!(normalize(&closed).is_ok());
        let e = normalize(&json!({"type": "string", "pattern": "^4111111111111111{2,1}$"}))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("4111"), "{e}");
    }
}
