//! `${NAME}` references inside config strings, replaced from the environment
//! (`$${` stands for a literal `${`). Values are never echoed in errors.

use serde_yaml::Value;

use super::locate::YamlPath;

/// Why a string's `${...}` references could not be expanded. Carries variable
/// names only, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable `{0}` is not set")]
    Missing(String),
    #[error("unterminated `${{` (write `$${{` for a literal `${{`)")]
    Unterminated,
    #[error("`${{{0}}}` is not a valid variable reference; expected `${{NAME}}` with letters, digits and `_`")]
    BadName(String),
}

/// Expands every `${NAME}` in `text`; reports every problem found.
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<EnvError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some((before, after)) = rest.split_once('$') {
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some((name, tail)) = tail.split_once('}') else {
                errors.push(EnvError::Unterminated);
                return Err(errors);
            };
            match lookup(name, env) {
                Ok(value) => out.push_str(&value),
                Err(error) => errors.push(error),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn lookup(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(EnvError::BadName(name.to_string()));
    }
    env(name).ok_or_else(|| EnvError::Missing(name.to_string()))
}

/// Expands every string value (not mapping keys) in the tree, in place.
/// Returns the path of each failure with its error.
pub fn expand_tree(
    value: &mut Value,
    path: &YamlPath,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<(YamlPath, EnvError)> {
    let mut errors = Vec::new();
    walk(value, path, env, &mut errors);
    errors
}

fn walk(
    value: &mut Value,
    path: &YamlPath,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<(YamlPath, EnvError)>,
) {
    match value {
        Value::String(text) => match expand(text, env) {
            Ok(expanded) => *text = expanded,
            Err(found) => errors.extend(found.into_iter().map(|e| (path.clone(), e))),
        },
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                walk(item, &path.index(index), env, errors);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                walk(item, &path.key(&key_text(key)), env, errors);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, env, errors),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A mapping key as the path segment text (`200` for a numeric key).
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-secret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_variables() {
        assert_eq!(expand("${KEY}", &env).unwrap(), "sk-secret");
        assert_eq!(expand("Bearer ${KEY}!", &env).unwrap(), "Bearer sk-secret!");
        assert_eq!(expand("${KEY}${KEY}", &env).unwrap(), "sk-secretsk-secret");
        assert_eq!(expand("a${EMPTY}b", &env).unwrap(), "ab");
        assert_eq!(expand("no vars", &env).unwrap(), "no vars");
    }

    #[test]
    fn escapes_and_lone_dollars_are_literal() {
        assert_eq!(expand("$${KEY}", &env).unwrap(), "${KEY}");
        assert_eq!(expand("cost $5 $", &env).unwrap(), "cost $5 $");
        assert_eq!(expand("$$", &env).unwrap(), "$$");
    }

    #[test]
    fn reports_every_missing_variable_by_name_only() {
        let errors = expand("${A} and ${B_2}", &env).unwrap_err();
        assert_eq!(
            errors,
            vec![
                EnvError::Missing("A".into()),
                EnvError::Missing("B_2".into())
            ]
        );
        assert_eq!(errors[0].to_string(), "environment variable `A` is not set");
    }

    #[test]
    fn rejects_unterminated_and_bad_names() {
        assert_eq!(
            expand("x ${KEY", &env).unwrap_err(),
            vec![EnvError::Unterminated]
        );
        assert_eq!(
            expand("${}", &env).unwrap_err(),
            vec![EnvError::BadName(String::new())]
        );
        assert_eq!(
            expand("${1A}", &env).unwrap_err(),
            vec![EnvError::BadName("1A".into())]
        );
        assert_eq!(
            expand("${A-B}", &env).unwrap_err(),
            vec![EnvError::BadName("A-B".into())]
        );
    }

    #[test]
    fn expands_a_tree_and_names_paths() {
        let mut value: Value =
            serde_yaml::from_str("a: ${KEY}\nlist: [x, '${NOPE}']\nn: 3\n").unwrap();
        let errors = expand_tree(&mut value, &YamlPath::default(), &env);
        assert_eq!(value["a"], Value::String("sk-secret".into()));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0.to_string(), "list[1]");
        assert!(!format!("{errors:?}").contains("sk-secret"));
    }
}
