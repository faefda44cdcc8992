//! JSON Schema (as OpenAI tools and `response_format` carry it) narrowed to the
//! OpenAPI subset Gemini's `Schema` accepts.
//!
//! Keywords Gemini lacks but that only loosen or annotate (`additionalProperties`,
//! `$schema`, `strict`, ...) are dropped; `oneOf` becomes `anyOf`, `const` a
//! one-value `enum`, `type: [t, "null"]` a `nullable` type. Keywords whose meaning
//! cannot be kept (`$ref`, `allOf`, `not`) make the translation fail.

use serde_json::{Map, Value};

use super::TranslateError;

/// Deepest schema nesting translated.
const MAX_DEPTH: usize = 32;

/// Keywords copied as they are.
const KEPT: &[&str] = &[
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "propertyOrdering",
    "default",
    "minimum",
    "maximum",
];

/// Keywords whose meaning Gemini's schema cannot carry.
const UNEXPRESSIBLE: &[&str] = &["$ref", "allOf", "not", "if", "patternProperties"];

/// Translates one schema.
pub fn convert(schema: &Value) -> Result<Value, TranslateError> {
    convert_at(schema, 0)
}

/// Whether a converted schema is an object with no properties (Gemini rejects
/// those as function parameters; such a function simply takes no arguments).
pub fn is_empty_object(schema: &Value) -> bool {
    let properties = schema.get("properties").and_then(Value::as_object);
    schema.get("type").and_then(Value::as_str) == Some("object")
        && properties.map_or(0, Map::len) == 0
}

fn convert_at(schema: &Value, depth: usize) -> Result<Value, TranslateError> {
    if depth > MAX_DEPTH {
        return Err(unexpressible("nesting deeper than 32 levels"));
    }
    let Value::Object(source) = schema else {
        return Err(unexpressible("a schema that is not an object"));
    };
    let mut out = Map::new();
    for (key, value) in source {
        convert_keyword(key, value, depth, &mut out)?;
    }
    Ok(Value::Object(out))
}

fn convert_keyword(
    key: &str,
    value: &Value,
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    match key {
        "type" => convert_type(value, out),
        "properties" => {
            let Value::Object(properties) = value else {
                return Err(unexpressible("`properties` that is not an object"));
            };
            let mut converted = Map::new();
            for (name, property) in properties {
                converted.insert(name.clone(), convert_at(property, depth + 1)?);
            }
            out.insert(key.into(), Value::Object(converted));
        }
        "items" => {
            out.insert(key.into(), convert_at(value, depth + 1)?);
        }
        "anyOf" | "oneOf" => {
            let Value::Array(options) = value else {
                return Err(unexpressible("`anyOf` that is not an array"));
            };
            let converted = options
                .iter()
                .map(|option| convert_at(option, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            out.insert("anyOf".into(), Value::Array(converted));
        }
        "const" => {
            out.insert("enum".into(), Value::Array(vec![value.clone()]));
        }
        _ if UNEXPRESSIBLE.contains(&key) => {
            return Err(unexpressible(&format!("the `{key}` keyword")));
        }
        _ if KEPT.contains(&key) => {
            out.insert(key.into(), value.clone());
        }
        _ => {}
    }
    Ok(())
}

/// `type: "t"` stays; `type: ["t", "null"]` becomes `t` + `nullable`; several
/// non-null types become an `anyOf`.
fn convert_type(value: &Value, out: &mut Map<String, Value>) {
    let Value::Array(types) = value else {
        out.insert("type".into(), value.clone());
        return;
    };
    let nullable = types.iter().any(|t| t == "null");
    let others: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
    match others.as_slice() {
        [] => {
            out.insert("type".into(), Value::from("null"));
        }
        [one] => {
            out.insert("type".into(), (*one).clone());
        }
        many => {
            let options = many
                .iter()
                .map(|t| serde_json::json!({ "type": t }))
                .collect();
            out.insert("anyOf".into(), Value::Array(options));
        }
    }
    if nullable && !others.is_empty() {
        out.insert("nullable".into(), Value::Bool(true));
    }
}

fn unexpressible(what: &str) -> TranslateError {
    TranslateError::Request(format!("Gemini's schema cannot express {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_strict_schema_is_narrowed() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                "tags": {"type": "array", "items": {"type": "string", "const": "x"}},
                "either": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
                "many": {"type": ["integer", "string"]}
            },
            "required": ["city", "unit"],
            "additionalProperties": false
        });
        let expected = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "nullable": true, "enum": ["c", "f"]},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["x"]}},
                "either": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
                "many": {"anyOf": [{"type": "integer"}, {"type": "string"}]}
            },
            "required": ["city", "unit"]
        });
        assert_eq!(convert(&schema).unwrap(), expected);
    }

    #[test]
    fn references_are_refused() {
        let schema = json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}});
        assert!(matches!(convert(&schema), Err(TranslateError::Request(_))));
        assert!(convert(&json!("string")).is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let mut schema = json!({"type": "string"});
        for _ in 0..40 {
            schema = json!({"type": "array", "items": schema});
        }
        assert!(convert(&schema).is_err());
    }

    #[test]
    fn empty_objects() {
        assert!(is_empty_object(&json!({"type": "object"})));
        assert!(is_empty_object(
            &json!({"type": "object", "properties": {}})
        ));
        assert!(!is_empty_object(
            &json!({"type": "object", "properties": {"a": {"type": "string"}}})
        ));
    }
}
