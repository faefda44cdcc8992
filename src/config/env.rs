//! `${NAME}` references inside config strings, replaced from the environment
//! (`$${` stands for a literal `${`). Values are never echoed in errors: each
//! expansion is remembered as a [`Hidden`] value, and [`hide`] puts the
//! reference back wherever a message would quote the value.

use std::fmt;

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

/// Expands every `${NAME}` in `text`, noting each variable used as (name,
/// value); reports every problem found.
fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    used: &mut Vec<(String, String)>,
) -> Result<String, Vec<EnvError>> {
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
                Ok(value) => {
                    out.push_str(&value);
                    used.push((name.to_string(), value));
                }
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

/// A value that came from the environment, and what error messages show in its
/// place: the `${NAME}` reference, or the whole string as the file wrote it.
#[derive(Clone, PartialEq, Eq)]
pub struct Hidden {
    /// The YAML path (as displayed) of the string it was expanded into.
    pub path: String,
    pub value: String,
    pub shown: String,
}

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hidden")
            .field("path", &self.path)
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

/// What [`expand_tree`] found.
#[derive(Debug, Default)]
pub struct Expanded {
    /// The path of each failure with its error.
    pub errors: Vec<(YamlPath, EnvError)>,
    /// Every value put into the tree, for [`hide`].
    pub hidden: Vec<Hidden>,
}

/// Expands every string value (not mapping keys) in the tree, in place.
pub fn expand_tree(
    value: &mut Value,
    path: &YamlPath,
    env: &dyn Fn(&str) -> Option<String>,
) -> Expanded {
    let mut found = Expanded::default();
    walk(value, path, env, &mut found);
    found
}

fn walk(
    value: &mut Value,
    path: &YamlPath,
    env: &dyn Fn(&str) -> Option<String>,
    found: &mut Expanded,
) {
    match value {
        Value::String(text) => {
            let mut used = Vec::new();
            match expand(text, env, &mut used) {
                Ok(expanded) => {
                    let at = path.to_string();
                    // The whole string as written, unless it is just one variable
                    // (or every variable in it is empty).
                    let whole = used.iter().any(|(_, v)| !v.is_empty())
                        && !used.iter().any(|(_, v)| *v == expanded);
                    if whole {
                        found.hidden.push(Hidden {
                            path: at.clone(),
                            value: expanded.clone(),
                            shown: text.clone(),
                        });
                    }
                    found
                        .hidden
                        .extend(used.into_iter().map(|(name, value)| Hidden {
                            path: at.clone(),
                            value,
                            shown: format!("${{{name}}}"),
                        }));
                    *text = expanded;
                }
                Err(errors) => found
                    .errors
                    .extend(errors.into_iter().map(|e| (path.clone(), e))),
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                walk(item, &path.index(index), env, found);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                walk(item, &path.key(&key_text(key)), env, found);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, env, found),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Values this long are hidden in every message. Shorter ones (`4`, `on`) are
/// hidden only in messages about their own path, where an echo is likely, since
/// replacing them everywhere would garble unrelated text ("at least 1").
const HIDE_EVERYWHERE_FROM: usize = 6;

/// `message` (about the node at `path`) with every environment value that could
/// appear in it replaced by what the file wrote. One left-to-right pass, longest
/// value first, so inserted text is never scanned again.
pub fn hide(message: &str, path: &str, hidden: &[Hidden]) -> String {
    let mut candidates: Vec<&Hidden> = hidden
        .iter()
        .filter(|h| !h.value.is_empty())
        .filter(|h| h.value.len() >= HIDE_EVERYWHERE_FROM || related(path, &h.path))
        .collect();
    if candidates.is_empty() {
        return message.to_string();
    }
    candidates.sort_by_key(|h| std::cmp::Reverse(h.value.len()));
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    // Each pass consumes at least one character: bounded by the message length.
    while let Some(first) = rest.chars().next() {
        match candidates
            .iter()
            .find(|h| rest.starts_with(h.value.as_str()))
        {
            Some(h) => {
                out.push_str(&h.shown);
                rest = rest.get(h.value.len()..).unwrap_or_default();
            }
            None => {
                out.push(first);
                rest = rest.get(first.len_utf8()..).unwrap_or_default();
            }
        }
    }
    out
}

/// Whether one path is the other or lies inside it (`a.b` and `a.b[0]`).
fn related(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|tail| tail.is_empty() || tail.starts_with(['.', '[']))
    };
    !a.is_empty() && !b.is_empty() && (inside(a, b) || inside(b, a))
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

    fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<EnvError>> {
        super::expand(text, env, &mut Vec::new())
    }

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
        let found = expand_tree(&mut value, &YamlPath::default(), &env);
        assert_eq!(value["a"], Value::String("sk-secret".into()));
        assert_eq!(found.errors.len(), 1);
        assert_eq!(found.errors[0].0.to_string(), "list[1]");
        assert_eq!(found.hidden.len(), 1);
        assert_eq!(found.hidden[0].path, "a");
        assert_eq!(found.hidden[0].shown, "${KEY}");
        assert!(!format!("{found:?}").contains("sk-secret"));
    }

    #[test]
    fn hide_puts_the_reference_back() {
        let mut value: Value = serde_yaml::from_str(
            "a: ${KEY}
b: 'x-${KEY}-y'
n: '${SHORT}'
",
        )
        .unwrap();
        let env = |name: &str| match name {
            "KEY" => Some("sk-secret".to_string()),
            "SHORT" => Some("4".to_string()),
            _ => None,
        };
        let hidden = expand_tree(&mut value, &YamlPath::default(), &env).hidden;
        // Whole strings show as written; a value inside other text as its variable.
        assert_eq!(
            hide("unknown `x-sk-secret-y`", "b", &hidden),
            "unknown `x-${KEY}-y`"
        );
        assert_eq!(
            hide("`sk-secret` and `sk-secretsk-secret`", "", &hidden),
            "`${KEY}` and `${KEY}${KEY}`"
        );
        // A short value is hidden only where it belongs.
        assert_eq!(hide("`4` is bad", "n", &hidden), "`${SHORT}` is bad");
        assert_eq!(hide("at least 4", "a", &hidden), "at least 4");
        assert_eq!(hide("plain", "a", &[]), "plain");
        assert!(related("a.b", "a.b[0]") && related("a.b[0]", "a.b"));
        assert!(!related("a.b", "a.bc") && !related("", "a"));
    }
}
