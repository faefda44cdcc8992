//! Human-written durations in the config: a number and a unit, such as `250ms`,
//! `1s`, `1.5s`, `2m` or `1h`.

use std::time::Duration;

const UNITS: &[(&str, u128)] = &[
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

const HINT: &str =
    "expected a number with a unit (ms, s, m, h), like `250ms`, `1.5s`, `2m` or `1h`";

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration; {HINT}")]
    Empty,
    #[error("`{0}` has no unit; {HINT}")]
    MissingUnit(String),
    #[error("`{text}` has an unknown unit `{unit}`; {HINT}")]
    UnknownUnit { text: String, unit: String },
    #[error("`{0}` is not a valid duration; {HINT}")]
    BadNumber(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Parses `250ms`, `1s`, `1.5s`, `2m`, `1h` (at most 9 decimals).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim_start();
    if number.is_empty() {
        return Err(DurationError::BadNumber(trimmed.to_string()));
    }
    if unit.is_empty() {
        return Err(DurationError::MissingUnit(trimmed.to_string()));
    }
    let Some(scale) = unit_scale(unit) else {
        return Err(DurationError::UnknownUnit {
            text: trimmed.to_string(),
            unit: unit.to_string(),
        });
    };
    let nanos =
        scaled_nanos(number, scale).ok_or_else(|| DurationError::BadNumber(trimmed.to_string()))?;
    let nanos = u64::try_from(nanos).map_err(|_| DurationError::TooLarge(trimmed.to_string()))?;
    Ok(Duration::from_nanos(nanos))
}

fn unit_scale(unit: &str) -> Option<u128> {
    UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, scale)| *scale)
}

/// `number` is `digits` or `digits.digits`; returns `number * scale` exactly,
/// or `None` when it is malformed or overflows.
fn scaled_nanos(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    let has_dot = number.contains('.');
    if whole.is_empty() || (has_dot && fraction.is_empty()) || fraction.len() > 9 {
        return None;
    }
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u128 = whole.parse().ok()?;
    let mut total = whole.checked_mul(scale)?;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        let denominator = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        total = total.checked_add(digits.checked_mul(scale)? / denominator)?;
    }
    Some(total)
}

/// The shortest exact spelling that [`parse_duration`] reads back.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    for (name, scale) in UNITS.iter().rev() {
        if nanos.checked_rem(*scale) == Some(0) {
            return format!("{}{name}", nanos / scale);
        }
    }
    let millis = nanos / 1_000_000;
    let rest = nanos % 1_000_000;
    let fraction = format!("{rest:06}");
    format!("{millis}.{}ms", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration(" 0s ").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0.5ms").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("10 s").unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn rejects_with_clear_errors() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("30"),
            Err(DurationError::MissingUnit("30".into()))
        );
        assert!(matches!(
            parse_duration("3 days"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("ms"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("1.s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("1.2.3s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("1.0000000001s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(DurationError::TooLarge(_) | DurationError::BadNumber(_))
        ));
        let message = parse_duration("5 sec").unwrap_err().to_string();
        assert!(message.contains("unknown unit `sec`"), "{message}");
        assert!(message.contains("250ms"), "{message}");
    }

    #[test]
    fn formats_round_trip() {
        for text in ["250ms", "1s", "1500ms", "2m", "1h", "0.5ms", "90s", "0s"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(
                parse_duration(&format_duration(parsed)).unwrap(),
                parsed,
                "{text}"
            );
        }
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
