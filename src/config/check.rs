//! Turning one raw value into its runtime form or a located error: durations,
//! enum names, counts, fractions, addresses, status codes and header pairs.
//! Each helper returns a usable placeholder on error so checking can go on.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use super::duration::{format_duration, parse_duration};
use super::error::Report;
use super::locate::YamlPath;
use super::raw::{DurationText, OrderedMap};

impl Report<'_> {
    /// A duration, or `default` when absent.
    pub fn duration(
        &mut self,
        raw: Option<&DurationText>,
        path: &YamlPath,
        default: Duration,
    ) -> Duration {
        let Some(DurationText(text)) = raw else {
            return default;
        };
        parse_duration(text).unwrap_or_else(|error| {
            self.error(path, error.to_string());
            default
        })
    }

    /// A duration that must be greater than zero.
    pub fn positive_duration(
        &mut self,
        raw: Option<&DurationText>,
        path: &YamlPath,
        default: Duration,
    ) -> Duration {
        let value = self.duration(raw, path, default);
        if value.is_zero() {
            self.error(path, "must be greater than zero");
            return default;
        }
        value
    }

    /// Records an error when `small` is longer than `large`.
    pub fn not_longer(
        &mut self,
        small: (&str, Duration),
        large: (&str, Duration),
        path: &YamlPath,
    ) {
        if small.1 > large.1 {
            let (a, b) = (format_duration(small.1), format_duration(large.1));
            self.error(
                path,
                format!(
                    "{} ({a}) must not be longer than {} ({b})",
                    small.0, large.0
                ),
            );
        }
    }

    /// One of a fixed set of names; an unknown one lists the valid names.
    pub fn choice<T: Copy>(
        &mut self,
        raw: Option<&str>,
        path: &YamlPath,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(text) = raw else { return default };
        if let Some((_, value)) = options.iter().find(|(name, _)| *name == text) {
            return *value;
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        self.error(
            path,
            format!(
                "unknown value `{text}`; expected one of: {}",
                names.join(", ")
            ),
        );
        default
    }

    /// A count that must be at least 1.
    pub fn at_least_one<T: Copy + PartialOrd + From<u8> + Display>(
        &mut self,
        raw: Option<T>,
        path: &YamlPath,
        default: T,
    ) -> T {
        let value = raw.unwrap_or(default);
        if value < T::from(1) {
            self.error(path, format!("must be at least 1, got {value}"));
            return default;
        }
        value
    }

    /// A fraction in `[0, 1]`, or `(0, 1]` when `zero_ok` is false.
    pub fn fraction(
        &mut self,
        raw: Option<f64>,
        path: &YamlPath,
        default: f64,
        zero_ok: bool,
    ) -> f64 {
        let value = raw.unwrap_or(default);
        let low_ok = if zero_ok { value >= 0.0 } else { value > 0.0 };
        if low_ok && value <= 1.0 {
            return value;
        }
        let range = if zero_ok {
            "from 0 to 1"
        } else {
            "greater than 0 and at most 1"
        };
        self.error(path, format!("must be a number {range}, got {value}"));
        default
    }

    /// An `ip:port` listen address.
    pub fn socket_addr(
        &mut self,
        raw: Option<&str>,
        path: &YamlPath,
        default: SocketAddr,
    ) -> SocketAddr {
        let Some(text) = raw else { return default };
        text.trim().parse().unwrap_or_else(|_| {
            self.error(path, format!("`{text}` is not a listen address; expected ip:port, like 0.0.0.0:8080 or [::1]:8080"));
            default
        })
    }

    /// HTTP status codes, each within 100..=599.
    pub fn statuses(&mut self, raw: Option<&[i64]>, path: &YamlPath, default: &[u16]) -> Vec<u16> {
        let Some(codes) = raw else {
            return default.to_vec();
        };
        let mut out = Vec::with_capacity(codes.len());
        for (i, code) in codes.iter().enumerate() {
            match u16::try_from(*code) {
                Ok(status @ 100..=599) => out.push(status),
                _ => self.error(
                    &path.index(i),
                    format!("status code {code} is outside 100..=599"),
                ),
            }
        }
        out
    }

    /// A required, non-empty string; `""` after recording an error.
    pub fn required(&mut self, raw: Option<&str>, path: &YamlPath) -> String {
        match raw {
            None => self.error(path, "is required but missing"),
            Some(text) if text.trim().is_empty() => self.error(path, "must not be empty"),
            Some(text) => return text.to_string(),
        }
        String::new()
    }

    /// Header pairs with valid names (lower-cased when `lower`) and values
    /// without line breaks. Values are never quoted in errors.
    pub fn headers(
        &mut self,
        raw: Option<&OrderedMap<String>>,
        path: &YamlPath,
        lower: bool,
    ) -> Vec<(String, String)> {
        let Some(OrderedMap(entries)) = raw else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            let here = path.key(name);
            if !is_token(name) {
                self.error(&here, format!("`{name}` is not a valid header name"));
                continue;
            }
            if value.contains(['\r', '\n', '\0']) {
                self.error(&here, "header value must not contain line breaks");
                continue;
            }
            let name = if lower {
                name.to_ascii_lowercase()
            } else {
                name.clone()
            };
            out.push((name, value.clone()));
        }
        out
    }
}

/// RFC 9110 token characters (header names).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with<T>(f: impl FnOnce(&mut Report<'_>, &YamlPath) -> T) -> (T, Vec<String>) {
        let mut report = Report::new("x: 1\n", "t.yaml");
        let value = f(&mut report, &YamlPath::default().key("x"));
        let errors = report
            .into_errors()
            .0
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        (value, errors)
    }

    #[test]
    fn helpers_return_defaults_and_record_errors() {
        let (v, e) = report_with(|r, p| r.at_least_one(Some(0u32), p, 3));
        assert_eq!(
            (v, e),
            (
                3,
                vec!["t.yaml:1: x: must be at least 1, got 0".to_string()]
            )
        );
        let (v, e) = report_with(|r, p| r.fraction(Some(f64::NAN), p, 0.5, true));
        assert_eq!(v, 0.5);
        assert_eq!(e.len(), 1);
        let (v, e) = report_with(|r, p| r.statuses(Some(&[200, 99, 600]), p, &[]));
        assert_eq!(v, vec![200]);
        assert_eq!(e.len(), 2);
        let (v, _) =
            report_with(|r, p| r.choice(Some("json"), p, &[("logfmt", 1), ("json", 2)], 1));
        assert_eq!(v, 2);
    }

    #[test]
    fn headers_are_checked() {
        let raw = OrderedMap(vec![
            ("X-Org".to_string(), "a".to_string()),
            ("bad name".to_string(), "b".to_string()),
            ("x-inject".to_string(), "v\r\nevil: 1".to_string()),
        ]);
        let (v, e) = report_with(|r, p| r.headers(Some(&raw), p, true));
        assert_eq!(v, vec![("x-org".to_string(), "a".to_string())]);
        assert_eq!(e.len(), 2);
        assert!(!e.iter().any(|m| m.contains("evil")));
    }
}
