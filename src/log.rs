//! Structured logs: one line per event, logfmt or JSON, to stderr.
//!
//! Logging is off the request path except for sampled request lines, so a plain
//! locked stderr write is enough. Callers never pass secrets here.

use std::fmt::{Display, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::LogFormat;

static FORMAT: AtomicU8 = AtomicU8::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Chooses the line format for every later event.
pub fn set_format(format: LogFormat) {
    FORMAT.store(matches!(format, LogFormat::Json) as u8, Ordering::Relaxed);
}

/// Writes one event line: `level`, `msg`, then the fields in order.
pub fn emit(level: Level, msg: &str, fields: &[(&str, &dyn Display)]) {
    let line = if FORMAT.load(Ordering::Relaxed) == 1 {
        json_line(level, msg, fields)
    } else {
        logfmt_line(level, msg, fields)
    };
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn logfmt_line(level: Level, msg: &str, fields: &[(&str, &dyn Display)]) -> String {
    let mut line = format!(
        "ts={} level={} msg={}",
        timestamp(),
        level.as_str(),
        logfmt_value(msg)
    );
    for (key, value) in fields {
        let _ = write!(line, " {key}={}", logfmt_value(&value.to_string()));
    }
    line.push('\n');
    line
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

fn json_line(level: Level, msg: &str, fields: &[(&str, &dyn Display)]) -> String {
    let mut map = serde_json::Map::new();
    map.insert("ts".into(), timestamp().into());
    map.insert("level".into(), level.as_str().into());
    map.insert("msg".into(), msg.into());
    for (key, value) in fields {
        map.insert((*key).into(), value.to_string().into());
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
        $crate::log::emit($level, $msg, &[$((stringify!($key), &$value as &dyn ::std::fmt::Display)),*])
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
    fn logfmt_quotes_when_needed() {
        assert_eq!(logfmt_value("abc"), "abc");
        assert_eq!(logfmt_value("a b"), "\"a b\"");
        assert_eq!(logfmt_value(""), "\"\"");
    }
}
