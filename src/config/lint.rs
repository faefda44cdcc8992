//! Warnings about a config that loads but is probably not what the operator
//! meant: `$NAME` written without braces (left as literal text), and `${NAME}`
//! whose value is still a placeholder from the example env file. Warnings never
//! fail `check`; they name the variable and the file:line, never a value.

use serde_yaml::Value;

use super::env::key_text;
use super::error::ConfigError;
use super::locate::{self, YamlPath};

/// Warnings for the config at `path`, with `${NAME}` resolved from `env`.
/// Unreadable or invalid YAML yields none: loading reports that as an error.
pub fn lint_file(path: &std::path::Path, env: &dyn Fn(&str) -> Option<String>) -> Vec<ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => lint_str(&text, &path.display().to_string(), env),
        Err(_) => Vec::new(),
    }
}

/// Warnings for config text; `origin` names it.
pub fn lint_str(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<ConfigError> {
    let Ok(doc) = serde_yaml::from_str::<Value>(text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    walk(&doc, &YamlPath::default(), &mut found);
    let mut warnings: Vec<ConfigError> = found
        .into_iter()
        .filter_map(|(at, finding)| {
            let message = message(&finding, env)?;
            Some(ConfigError {
                origin: origin.to_string(),
                line: locate::line_of(text, at.segments()),
                path: at.to_string(),
                message,
            })
        })
        .collect();
    warnings.sort_by_key(|w| w.line.unwrap_or(0));
    warnings
}

/// What a string value contains that may deserve a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Finding {
    /// `$NAME` without braces.
    Bare(String),
    /// `${NAME}`.
    Reference(String),
}

fn message(finding: &Finding, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    match finding {
        Finding::Bare(name) => Some(format!(
            "`${name}` is kept as literal text; did you mean ${{{name}}}?"
        )),
        Finding::Reference(name) => env(name).filter(|v| is_placeholder(v)).map(|_| {
            format!(
                "environment variable `{name}` still holds a placeholder; set the real secret \
                 (e.g. in /etc/switchyard/switchyard.env)"
            )
        }),
    }
}

fn walk(value: &Value, path: &YamlPath, found: &mut Vec<(YamlPath, Finding)>) {
    match value {
        Value::String(text) => found.extend(scan(text).into_iter().map(|f| (path.clone(), f))),
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                walk(item, &path.index(index), found);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map {
                walk(item, &path.key(&key_text(key)), found);
            }
        }
        Value::Tagged(tagged) => walk(&tagged.value, path, found),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The `$NAME` and `${NAME}` in one string, with `$${` read as the escape it is.
fn scan(text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some((_, after)) = rest.split_once('$') {
        if let Some(tail) = after.strip_prefix("${") {
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some((name, tail)) = tail.split_once('}') else {
                break;
            };
            found.push(Finding::Reference(name.to_string()));
            rest = tail;
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..len];
            if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                found.push(Finding::Bare(name.to_string()));
            }
            rest = &after[len..];
        }
    }
    found
}

/// Words that only an unedited example value contains.
const PLACEHOLDER_WORDS: &[&str] = &[
    "replace-me",
    "replace_me",
    "replaceme",
    "replace-with",
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "your-api-key",
    "your_api_key",
];

/// Whether an environment value looks like a placeholder rather than a secret:
/// a placeholder word, `<...>`, or a run of three or more `x` as a whole part
/// (`xxx`, `sk-xxxx`).
pub fn is_placeholder(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    if PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w)) {
        return true;
    }
    if lower.starts_with('<') && lower.ends_with('>') {
        return true;
    }
    lower
        .split(['-', '_', '.'])
        .any(|part| part.len() >= 3 && part.chars().all(|c| c == 'x'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_told_from_secrets() {
        let table = [
            ("sk-replace-me", true),
            ("replace-with-a-long-random-client-key", true),
            ("changeme", true),
            ("CHANGEME", true),
            ("xxx", true),
            ("sk-xxxxxxxx", true),
            ("<your key>", true),
            ("sk-proj-4f9aXk2mQ", false),
            ("gsk_8aa1f0c2e9", false),
            ("xx", false),
            ("", false),
            ("sk-ant-api03-x9x", false),
        ];
        for (value, expected) in table {
            assert_eq!(is_placeholder(value), expected, "{value:?}");
        }
    }

    #[test]
    fn scan_finds_bare_and_braced_names() {
        use Finding::*;
        let table: [(&str, Vec<Finding>); 6] = [
            ("${KEY}", vec![Reference("KEY".into())]),
            ("$KEY", vec![Bare("KEY".into())]),
            ("Bearer $TOKEN!", vec![Bare("TOKEN".into())]),
            ("$${KEY} costs $5", vec![]),
            ("a $ b", vec![]),
            ("${A}-$B_2", vec![Reference("A".into()), Bare("B_2".into())]),
        ];
        for (text, expected) in table {
            assert_eq!(scan(text), expected, "{text:?}");
        }
    }

    #[test]
    fn warnings_name_the_variable_and_line_never_the_value() {
        let text = "admin:\n  token: \"${ADMIN}\"\nkeys:\n  - { name: a, key: \"$APP_KEY\" }\n\
                    providers:\n  p: { api_key: \"${REAL}\" }\n";
        let env = |name: &str| match name {
            "ADMIN" => Some("sk-replace-me".to_string()),
            "REAL" => Some("sk-live-9f8e7d".to_string()),
            _ => None,
        };
        let warnings = lint_str(text, "t.yaml", &env);
        let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].starts_with("t.yaml:2: admin.token: environment variable `ADMIN`"));
        assert!(shown[1].starts_with("t.yaml:4: keys[0].key: `$APP_KEY`"));
        assert!(shown[1].contains("did you mean ${APP_KEY}?"));
        assert!(!shown.concat().contains("sk-replace-me"));
    }
}
