//! The config file's shape as serde structs, exactly as written (before defaults
//! and validation), and reading a YAML tree into it while collecting every shape
//! mistake (unknown key, wrong type) with its path.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_yaml::Value;

use super::env::key_text;
use super::locate::{Seg, YamlPath};

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub listen: Option<String>,
    /// `auto` or a positive integer (a string after `${VAR}` expansion).
    pub shards: Option<Value>,
    pub driver: Option<String>,
    pub shutdown_grace: Option<DurationText>,
    pub health_endpoints: Option<bool>,
    /// The window of every rpm/tpm limit (`60s` unless set; tests shorten it).
    pub rate_window: Option<DurationText>,
    pub admin: Option<RawAdmin>,
    pub keys: Option<Vec<RawKey>>,
    /// A YAML file holding a list of more keys, shaped like `keys:`.
    pub keys_file: Option<String>,
    /// `provider/model` → rates in USD per million tokens.
    pub prices: Option<OrderedMap<RawPrice>>,
    /// A YAML file holding more prices, shaped like `prices:`.
    pub prices_file: Option<String>,
    pub state_dir: Option<String>,
    pub state_flush: Option<DurationText>,
    pub providers: Option<OrderedMap<RawProvider>>,
    pub routes: Option<Vec<RawRoute>>,
    pub health: Option<RawHealth>,
    pub limits: Option<RawLimits>,
    pub log: Option<RawLog>,
    pub cluster: Option<RawCluster>,
    pub telemetry: Option<RawTelemetry>,
}

/// `telemetry:`: OpenTelemetry trace export.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub sample_ratio: Option<f64>,
    pub headers: Option<OrderedMap<String>>,
}

/// `cluster:`: several nodes sharing provider health through Redis.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCluster {
    pub redis: Option<String>,
    /// `auto` or a name.
    pub node_id: Option<String>,
    pub sync_interval: Option<DurationText>,
    /// `local` or `closed`.
    pub on_redis_down: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
    /// Opt-in for a tokenless admin listener on a non-loopback address.
    pub allow_public_without_token: Option<bool>,
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKey {
    pub name: Option<String>,
    pub key: Option<String>,
    /// The key's SHA-256 (hex), so the secret itself is not in the file.
    pub key_sha256: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrency: Option<u32>,
    pub routes: Option<Vec<String>>,
    pub models: Option<Vec<String>>,
    pub metadata: Option<OrderedMap<String>>,
    pub expires: Option<String>,
    pub budget: Option<RawBudget>,
}

/// `budget:` of a key.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBudget {
    pub usd: Option<f64>,
    pub period: Option<String>,
}

/// One `prices:` entry, USD per million tokens.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPrice {
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cached_input: Option<f64>,
}

impl fmt::Debug for RawKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawKey")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProvider {
    pub kind: Option<String>,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub headers: Option<OrderedMap<String>>,
    pub max_connections: Option<usize>,
    pub pool_idle_timeout: Option<DurationText>,
    pub api_version: Option<String>,
    pub responses: Option<bool>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub region: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub aws_session_token: Option<String>,
    pub ca_file: Option<String>,
}

impl fmt::Debug for RawProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawProvider")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("headers", &self.headers.as_ref().map(|h| h.0.len()))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRoute {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    pub strategy: Option<String>,
    pub targets: Option<Vec<RawTarget>>,
    pub retry: Option<RawRetry>,
    pub fallback: Option<RawFallback>,
    pub timeouts: Option<RawTimeouts>,
    pub stream: Option<RawStream>,
    pub hedge: Option<RawHedge>,
    pub forward_headers: Option<RawForwardHeaders>,
}

/// `forward_headers:` of a route.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForwardHeaders {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

/// `hedge:` of a route.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHedge {
    /// `p95` or a duration.
    pub after: Option<DurationText>,
    pub max_extra: Option<u32>,
    pub budget_ratio: Option<f64>,
    pub budget_min_per_sec: Option<u32>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMatch {
    /// A model name or a list of them.
    pub model: Option<Value>,
    pub keys: Option<Vec<String>>,
    pub headers: Option<OrderedMap<String>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTarget {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub priority: Option<u32>,
    pub weight: Option<u32>,
    pub prefill: Option<RawSwitch>,
    pub retry: Option<RawRetry>,
    pub headers: Option<OrderedMap<String>>,
    pub query: Option<OrderedMap<String>>,
    pub timeouts: Option<RawTimeouts>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

/// `true`, `false` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum RawSwitch {
    Bool(bool),
    Word(AutoWord),
}

/// The one word a [`RawSwitch`] takes besides `true` and `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoWord {
    Auto,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetry {
    pub attempts: Option<u32>,
    pub backoff: Option<DurationText>,
    pub max_backoff: Option<DurationText>,
    pub on_status: Option<Vec<i64>>,
    pub budget_ratio: Option<f64>,
    pub budget_min_per_sec: Option<u32>,
    pub max_retry_after: Option<DurationText>,
    pub wait_retry_after_up_to: Option<DurationText>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFallback {
    pub on_status: Option<Vec<i64>>,
    pub on_timeout: Option<bool>,
    pub on_connect_error: Option<bool>,
    pub on_context_length: Option<String>,
    pub on_content_policy: Option<bool>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTimeouts {
    pub connect: Option<DurationText>,
    pub first_byte: Option<DurationText>,
    /// A duration or `auto`.
    pub first_token: Option<DurationText>,
    pub between_chunks: Option<DurationText>,
    pub total: Option<DurationText>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStream {
    pub continue_after_commit: Option<RawSwitch>,
    pub hold_until_content: Option<bool>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHealth {
    pub window: Option<DurationText>,
    pub min_requests: Option<u32>,
    pub failure_rate: Option<f64>,
    pub consecutive_failures: Option<u32>,
    pub cooldown: Option<DurationText>,
    pub max_cooldown: Option<DurationText>,
    pub half_open_probes: Option<u32>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub max_header_bytes: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub max_response_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub idle_timeout: Option<DurationText>,
    pub request_timeout: Option<DurationText>,
    pub client_write_timeout: Option<DurationText>,
    pub max_stream_buffer_bytes: Option<usize>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
    pub request_sample: Option<f64>,
}

/// A duration as written (`250ms`); parsed during validation, after `${VAR}`
/// expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = DurationText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, like `250ms`, `1.5s`, `2m` or `1h`")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationText, E> {
        Ok(DurationText(text.to_string()))
    }
}

/// A YAML mapping with its entries in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedMapVisitor(PhantomData))
    }
}

struct OrderedMapVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedMapVisitor<V> {
    type Value = OrderedMap<V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of names to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedMap<V>, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, V>()? {
            entries.push(entry);
        }
        Ok(OrderedMap(entries))
    }

    fn visit_unit<E: de::Error>(self) -> Result<OrderedMap<V>, E> {
        Ok(OrderedMap::default())
    }
}

/// A shape mistake: the path of the offending node and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    pub path: YamlPath,
    pub message: String,
}

/// Most shape mistakes reported for one file; the rest are likely echoes.
const MAX_SHAPE_ERRORS: usize = 64;

/// Keys whose values are secrets: their shape errors never quote the value.
const SECRET_KEYS: &[&str] = &["api_key", "key", "token"];

/// Reads the tree into [`RawConfig`]. On failure, every offending node is reported:
/// after each error the node is cut out of a scratch copy and reading resumes.
#[cfg(test)]
pub fn read_raw(doc: &Value) -> Result<RawConfig, Vec<ShapeError>> {
    read_shape(doc, Value::Mapping(serde_yaml::Mapping::new()))
}

/// Reads any tree into `T` like [`read_raw`]; an empty document reads as `empty`.
#[cfg(test)]
pub fn read_shape<T: serde::de::DeserializeOwned>(
    doc: &Value,
    empty: Value,
) -> Result<T, Vec<ShapeError>> {
    let pruned = read_pruned::<T>(doc, empty);
    match pruned.value {
        Some(raw) if pruned.errors.is_empty() => Ok(raw),
        _ => Err(pruned.errors),
    }
}

/// What [`read_pruned`] made of a tree.
pub struct Pruned<T> {
    /// The tree read without its offending nodes; `None` when even that failed.
    pub value: Option<T>,
    /// One error per node cut out.
    pub errors: Vec<ShapeError>,
    /// The tree without those nodes.
    pub tree: Value,
}

/// Reads the tree into `T`, cutting out each node of the wrong shape (and
/// noting why) until the rest reads, so validation can go on over the rest.
pub fn read_pruned<T: serde::de::DeserializeOwned>(doc: &Value, empty: Value) -> Pruned<T> {
    let mut tree = match doc {
        Value::Null => empty,
        other => other.clone(),
    };
    let mut errors = Vec::new();
    for _ in 0..MAX_SHAPE_ERRORS {
        let error = match serde_path_to_error::deserialize::<_, T>(&tree) {
            Ok(raw) => {
                return Pruned {
                    value: Some(raw),
                    errors,
                    tree,
                }
            }
            Err(error) => shape_error(&error),
        };
        let removed = remove_node(&mut tree, error.path.segments());
        errors.push(error);
        if !removed {
            break;
        }
    }
    Pruned {
        value: None,
        errors,
        tree,
    }
}

fn shape_error(error: &serde_path_to_error::Error<serde_yaml::Error>) -> ShapeError {
    let mut path = YamlPath::default();
    for segment in error.path().iter() {
        path = match segment {
            serde_path_to_error::Segment::Seq { index } => path.index(*index),
            serde_path_to_error::Segment::Map { key } => path.key(key),
            _ => path,
        };
    }
    let raw_message = error.inner().to_string();
    if let Some(field) = unknown_field(&raw_message) {
        if path.last() != Some(&Seg::Key(field.to_string())) {
            path = path.key(field);
        }
        return ShapeError {
            message: describe_unknown_field(&raw_message, field),
            path,
        };
    }
    let message = describe(&raw_message, &path);
    ShapeError { path, message }
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

fn describe_unknown_field(message: &str, field: &str) -> String {
    let expected = message
        .split_once(", expected ")
        .map(|(_, e)| e)
        .unwrap_or("");
    let expected = expected.trim_start_matches("one of ").replace('`', "");
    if expected.is_empty() || expected.starts_with("there are no fields") {
        return format!("unknown key `{field}`");
    }
    format!("unknown key `{field}`; expected one of: {expected}")
}

/// serde's wording, made plain; values under secret keys are never quoted.
fn describe(message: &str, path: &YamlPath) -> String {
    let secret = matches!(path.last(), Some(Seg::Key(k)) if SECRET_KEYS.contains(&k.as_str()));
    if secret {
        return "invalid value; expected a string (value not shown: it is a secret)".to_string();
    }
    let mut text = message.to_string();
    for (from, to) in [
        ("expected u16", "expected an integer from 0 to 65535"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("unit value", "empty value"),
    ] {
        text = text.replace(from, to);
    }
    text
}

/// Cuts the node at `path` (or, for a list element, the whole list) out of the
/// tree. Returns whether anything was removed.
fn remove_node(doc: &mut Value, path: &[Seg]) -> bool {
    let keep = path.iter().rposition(|seg| matches!(seg, Seg::Key(_)));
    let Some(keep) = keep else { return false };
    let (Some(parent_path), Some(Seg::Key(key))) = (path.get(..keep), path.get(keep)) else {
        return false;
    };
    let Some(Value::Mapping(parent)) = node_mut(doc, parent_path) else {
        return false;
    };
    let before = parent.len();
    parent.retain(|k, _| key_text(k) != *key);
    parent.len() != before
}

fn node_mut<'v>(doc: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(doc);
    };
    let child = match (first, doc) {
        (Seg::Index(i), Value::Sequence(items)) => items.get_mut(*i)?,
        (Seg::Key(key), Value::Mapping(map)) => map
            .iter_mut()
            .find(|(k, _)| key_text(k) == *key)
            .map(|(_, v)| v)?,
        (_, Value::Tagged(tagged)) => return node_mut(&mut tagged.value, path),
        _ => return None,
    };
    node_mut(child, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<RawConfig, Vec<ShapeError>> {
        read_raw(&serde_yaml::from_str(text).unwrap())
    }

    #[test]
    fn reads_a_minimal_file_and_keeps_provider_order() {
        let raw =
            read("providers:\n  z: {kind: openai}\n  a: {kind: anthropic}\nroutes: []\n").unwrap();
        let names: Vec<_> = raw
            .providers
            .unwrap()
            .0
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["z", "a"]);
    }

    #[test]
    fn collects_every_shape_error_with_paths() {
        let text = "\
lisen: 1
providers:
  a: { kind: openai, max_connections: lots }
routes:
  - name: r
    targets:
      - { provider: a, model: m, weigth: 2 }
    retry: { attempts: -1 }
";
        let errors = read(text).unwrap_err();
        let shown: Vec<_> = errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        assert_eq!(errors.len(), 4, "{shown:#?}");
        assert!(
            shown[0].starts_with("lisen: unknown key `lisen`; expected one of: listen,"),
            "{shown:#?}"
        );
        assert!(shown.iter().any(|s| s.starts_with("providers.a.max_connections: invalid type: string \"lots\", expected a non-negative integer")), "{shown:#?}");
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("routes[0].targets[0].weigth: unknown key `weigth`")),
            "{shown:#?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("routes[0].retry.attempts: invalid value: integer `-1`")),
            "{shown:#?}"
        );
    }

    #[test]
    fn never_quotes_secret_values() {
        let errors = read("keys:\n  - { name: a, key: 12345 }\n").unwrap_err();
        assert_eq!(errors[0].path.to_string(), "keys[0].key");
        assert!(
            !errors[0].message.contains("12345"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn a_non_mapping_document_is_one_error() {
        let errors = read("- a\n- b\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("invalid type"),
            "{}",
            errors[0].message
        );
    }
}
