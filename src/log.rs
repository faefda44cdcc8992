//! Structured logs: one line per event, logfmt or JSON, to stderr, at or above
//! the configured level.
//!
//! Logging is off the request path except for sampled request lines, so a plain
//! locked stderr write is enough. Callers never pass secrets here. Values keep
//! their type in JSON (`"status":200`, `"hedged":true`): a field that is an
//! integer, float or bool is written as one; anything else is its `Display` text.

use std::fmt::{Display, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::{LogConfig, LogFormat};

static FORMAT: AtomicU8 = AtomicU8::new(0);
/// The least [`Level`] written, as its `u8`; Info until configured.
static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// The environment variable that overrides `log.level` (`SWITCHYARD_LOG=debug`).
pub const LEVEL_ENV: &str = "SWITCHYARD_LOG";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    pub const NAMES: &'static [(&'static str, Level)] = &[
        ("debug", Level::Debug),
        ("info", Level::Info),
        ("warn", Level::Warn),
        ("error", Level::Error),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// `debug`, `INFO`, `warning`... as `SWITCHYARD_LOG` or `RUST_LOG` write it.
    pub fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_lowercase().as_str() {
            "trace" | "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

/// Chooses the line format for every later event.
pub fn set_format(format: LogFormat) {
    FORMAT.store(matches!(format, LogFormat::Json) as u8, Ordering::Relaxed);
}

/// Applies the `log:` section: format, and the level (`SWITCHYARD_LOG` wins
/// over `log.level` when it names a level).
pub fn configure(config: &LogConfig) {
    set_format(config.format);
    let env = std::env::var(LEVEL_ENV).ok();
    LEVEL.store(
        effective_level(config.level, env.as_deref()) as u8,
        Ordering::Relaxed,
    );
}

/// The level in force: the environment's when it names one, else the config's.
pub fn effective_level(configured: Level, env: Option<&str>) -> Level {
    env.and_then(Level::parse).unwrap_or(configured)
}

/// Whether an event at `level` would be written.
pub fn enabled(level: Level) -> bool {
    level as u8 >= LEVEL.load(Ordering::Relaxed)
}

/// One field's value as the line writes it.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    Text(&'a dyn Display),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Bool(bool),
    /// An optional value that is not there: JSON `null`, logfmt `-`.
    Absent,
}

impl Value<'_> {
    fn json(&self) -> serde_json::Value {
        match *self {
            Value::Text(v) => v.to_string().into(),
            Value::Unsigned(v) => v.into(),
            Value::Signed(v) => v.into(),
            Value::Float(v) => serde_json::Number::from_f64(v)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Bool(v) => v.into(),
            Value::Absent => serde_json::Value::Null,
        }
    }

    fn text(&self) -> String {
        match *self {
            Value::Text(v) => v.to_string(),
            Value::Unsigned(v) => v.to_string(),
            Value::Signed(v) => v.to_string(),
            Value::Float(v) => v.to_string(),
            Value::Bool(v) => v.to_string(),
            Value::Absent => "-".to_string(),
        }
    }
}

/// Wraps a field for [`event!`], which picks [`Typed`] when the value has a
/// JSON type and falls back to `Display` (autoref specialisation: the typed
/// impl is on `&Field`, the text one on `Field`).
pub struct Field<'a, T: ?Sized>(pub &'a T);

/// A value with a JSON type of its own.
pub trait Typed {
    fn value(&self) -> Value<'_>;
}

macro_rules! typed {
    ($variant:ident as $as:ty: $($t:ty),*) => {
        $(impl Typed for $t {
            fn value(&self) -> Value<'_> {
                Value::$variant(*self as $as)
            }
        })*
    };
}
typed!(Unsigned as u64: u8, u16, u32, u64, usize);
typed!(Signed as i64: i8, i16, i32, i64, isize);
typed!(Float as f64: f32, f64);

impl Typed for bool {
    fn value(&self) -> Value<'_> {
        Value::Bool(*self)
    }
}

impl<T: Typed> Typed for Option<T> {
    fn value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Absent, Typed::value)
    }
}

/// The typed branch of [`Field`]: chosen first when `T: Typed`.
pub trait ViaTyped {
    fn log_value(&self) -> Value<'_>;
}

impl<T: Typed + ?Sized> ViaTyped for &Field<'_, T> {
    fn log_value(&self) -> Value<'_> {
        self.0.value()
    }
}

/// The fallback branch of [`Field`]: the value's `Display` text.
pub trait ViaDisplay {
    fn log_value(&self) -> Value<'_>;
}

impl<T: Display> ViaDisplay for Field<'_, T> {
    fn log_value(&self) -> Value<'_> {
        Value::Text(self.0)
    }
}

/// Writes one event line: `level`, `msg`, then the fields in order.
pub fn emit(level: Level, msg: &str, fields: &[(&str, Value<'_>)]) {
    if !enabled(level) {
        return;
    }
    let line = if FORMAT.load(Ordering::Relaxed) == 1 {
        json_line(level, msg, fields)
    } else {
        logfmt_line(level, msg, fields)
    };
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn logfmt_line(level: Level, msg: &str, fields: &[(&str, Value<'_>)]) -> String {
    let mut line = format!(
        "ts={} level={} msg={}",
        timestamp(),
        level.as_str(),
        logfmt_value(msg)
    );
    for (key, value) in fields {
        let _ = write!(line, " {key}={}", logfmt_value(&value.text()));
    }
    line.push('\n');
    line
}

/// Rejections logged per status per second on one shard; the rest are counted
/// and the count rides on the next line for that status.
pub const REJECTIONS_PER_SECOND: u32 = 5;

/// Samples one shard's rejected-request lines (401/404/413/429...): a client
/// stuck in a loop must not flood the log, and the metric has the full count.
#[derive(Debug, Default)]
pub struct RejectSampler {
    /// (status, second, logged in that second, suppressed since the last line).
    statuses: Vec<(u16, u64, u32, u64)>,
}

impl RejectSampler {
    /// Whether to log a rejection with `status` in second `now_secs`; `Some(n)`
    /// carries how many of that status were suppressed since the last line.
    pub fn admit(&mut self, status: u16, now_secs: u64) -> Option<u64> {
        let i = match self.statuses.iter().position(|e| e.0 == status) {
            Some(i) => i,
            None => {
                self.statuses.push((status, now_secs, 0, 0));
                self.statuses.len() - 1
            }
        };
        let entry = &mut self.statuses[i];
        if entry.1 != now_secs {
            entry.1 = now_secs;
            entry.2 = 0;
        }
        if entry.2 >= REJECTIONS_PER_SECOND {
            entry.3 += 1;
            return None;
        }
        entry.2 += 1;
        Some(std::mem::take(&mut entry.3))
    }
}

fn logfmt_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=');
    if plain {
        value.to_string()
    } else {
        format!("{value:?}")
    }
}

fn json_line(level: Level, msg: &str, fields: &[(&str, Value<'_>)]) -> String {
    let mut map = serde_json::Map::new();
    map.insert("ts".into(), timestamp().into());
    map.insert("level".into(), level.as_str().into());
    map.insert("msg".into(), msg.into());
    for (key, value) in fields {
        map.insert((*key).into(), value.json());
    }
    let mut line = serde_json::Value::Object(map).to_string();
    line.push('\n');
    line
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-25T18:39:43.120Z`.
fn timestamp() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to the proleptic Gregorian (year, month, day), after
/// Howard Hinnant's algorithm. Also dates SigV4 signatures (`provider::bedrock::sigv4`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `event!(Level::Info, "message", key = value, ...)`: one structured log line.
#[macro_export]
macro_rules! event {
    ($level:expr, $msg:expr $(, $key:ident = $value:expr)* $(,)?) => {
        {
            #[allow(unused_imports)]
            use $crate::log::{ViaDisplay as _, ViaTyped as _};
            $crate::log::emit(
                $level,
                $msg,
                &[$((stringify!($key), (&&$crate::log::Field(&$value)).log_value())),*],
            )
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_512), (2026, 2, 28));
    }

    #[test]
    // `&&Field` is what `event!` writes: the borrows choose Typed over Display.
    #[allow(clippy::needless_borrow)]
    fn json_values_keep_their_type() {
        let name = String::from("gpt");
        // One expression, as `event!` writes it: the fields borrow temporaries.
        let line = json_line(
            Level::Warn,
            "m",
            &[
                ("status", (&&Field(&200u16)).log_value()),
                ("ms", (&&Field(&1.5f64)).log_value()),
                ("hedged", (&&Field(&true)).log_value()),
                ("delta", (&&Field(&-3i64)).log_value()),
                ("model", (&&Field(&name)).log_value()),
                ("route", (&&Field(&"chat")).log_value()),
                ("code", (&&Field(&"200")).log_value()),
                ("ttft_ms", (&&Field(&None::<f64>)).log_value()),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["status"].as_u64(), Some(200));
        assert_eq!(v["ms"].as_f64(), Some(1.5));
        assert_eq!(v["hedged"].as_bool(), Some(true));
        assert_eq!(v["delta"].as_i64(), Some(-3));
        assert_eq!(v["model"].as_str(), Some("gpt"));
        assert_eq!(v["route"].as_str(), Some("chat"));
        // A string that looks like a number stays a string.
        assert_eq!(v["code"].as_str(), Some("200"));
        assert!(v["ttft_ms"].is_null());
    }

    #[test]
    fn env_overrides_configured_level() {
        let table = [
            (Level::Info, None, Level::Info),
            (Level::Info, Some("debug"), Level::Debug),
            (Level::Warn, Some("DEBUG"), Level::Debug),
            (Level::Debug, Some("error"), Level::Error),
            (Level::Warn, Some("warning"), Level::Warn),
            (Level::Info, Some("trace"), Level::Debug),
            (Level::Warn, Some("nonsense"), Level::Warn),
            (Level::Warn, Some(""), Level::Warn),
        ];
        for (configured, env, want) in table {
            assert_eq!(effective_level(configured, env), want, "{env:?}");
        }
    }

    #[test]
    fn rejections_are_sampled_per_status_and_second() {
        let mut sampler = RejectSampler::default();
        let mut logged = Vec::new();
        for _ in 0..8 {
            logged.push(sampler.admit(401, 10));
        }
        assert_eq!(logged.iter().filter(|l| l.is_some()).count(), 5);
        // Another status has its own allowance.
        assert_eq!(sampler.admit(429, 10), Some(0));
        // The next second's first line carries the 3 suppressed.
        assert_eq!(sampler.admit(401, 11), Some(3));
        assert_eq!(sampler.admit(401, 11), Some(0));
    }

    #[test]
    fn logfmt_quotes_when_needed() {
        assert_eq!(logfmt_value("abc"), "abc");
        assert_eq!(logfmt_value("a b"), "\"a b\"");
        assert_eq!(logfmt_value(""), "\"\"");
    }
}
