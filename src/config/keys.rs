//! Client keys from the config: their secrets (kept only as SHA-256 digests),
//! access (routes, models, expiry), limits and labels; and the `rpm`/`tpm` quota a
//! key, provider or target may carry.

use std::time::SystemTime;

use super::error::Report;
use super::locate::YamlPath;
use super::raw::{RawBudget, RawKey};
use super::types::{Budget, BudgetPeriod, ClientKey, Quota};

/// The most a budget may be, in USD: spend is counted in 44 bits of
/// micro-dollars (about $17.59 million) per key and period.
const MAX_BUDGET_USD: f64 = 17_000_000.0;

/// The configured keys, each checked and appended to `keys`; duplicates (by name
/// or by secret, with each other or with keys already there) refused. `elsewhere`
/// says where the keys already in `keys` came from, for the message.
pub(super) fn keys(
    raw: Vec<RawKey>,
    path: &YamlPath,
    keys: &mut Vec<ClientKey>,
    elsewhere: &str,
    r: &mut Report<'_>,
) {
    let before = keys.len();
    for (i, entry) in raw.into_iter().enumerate() {
        let here = path.index(i);
        let Some(key) = key(entry, &here, r) else {
            continue;
        };
        let origin = |at: usize| if at < before { elsewhere } else { "" };
        if let Some(at) = keys.iter().position(|k| k.name == key.name) {
            let message = format!("duplicate client key name `{}`{}", key.name, origin(at));
            r.error(&here.key("name"), message);
        }
        if let Some(at) = keys.iter().position(|k| k.digest == key.digest) {
            let message = format!(
                "uses the same key value as client key `{}`{}; each client needs its own key",
                keys[at].name,
                origin(at)
            );
            r.error(&here.key("key"), message);
        }
        keys.push(key);
    }
}

/// `budget: { usd, period }`: both required, usd from 0 (a frozen key) up.
fn budget(raw: &RawBudget, path: &YamlPath, r: &mut Report<'_>) -> Option<Budget> {
    let usd_path = path.key("usd");
    let usd = match raw.usd {
        None => {
            r.error(
                &usd_path,
                "is required (the most this key may spend per period, in USD)",
            );
            return None;
        }
        Some(usd) if !usd.is_finite() || !(0.0..=MAX_BUDGET_USD).contains(&usd) => {
            r.error(
                &usd_path,
                format!("must be from 0 to {MAX_BUDGET_USD} USD, got {usd}"),
            );
            return None;
        }
        Some(usd) => usd,
    };
    let period_path = path.key("period");
    let expected = "1d (resets 00:00 UTC), 7d (Monday 00:00 UTC), 30d (the 1st of each month, 00:00 UTC) or total (never)";
    let period = match raw.period.as_deref().map(str::trim) {
        None => {
            r.error(&period_path, format!("is required: {expected}"));
            return None;
        }
        Some(text) => match BudgetPeriod::parse(text) {
            Some(period) => period,
            None => {
                r.error(
                    &period_path,
                    format!("unknown period `{text}`; expected {expected}"),
                );
                return None;
            }
        },
    };
    Some(Budget {
        limit_micros: (usd * 1e6).round() as u64,
        period,
    })
}

fn key(entry: RawKey, path: &YamlPath, r: &mut Report<'_>) -> Option<ClientKey> {
    let name = r.required(entry.name.as_deref(), &path.key("name"));
    let digest = secret_digest(&entry, path, r)?;
    Some(ClientKey {
        name,
        digest,
        limits: quota(entry.rpm, entry.tpm, path, r),
        max_concurrency: entry
            .max_concurrency
            .map(|n| r.at_least_one(Some(n), &path.key("max_concurrency"), 1)),
        routes: entry.routes.unwrap_or_default(),
        models: entry.models.unwrap_or_default(),
        metadata: r.headers(entry.metadata.as_ref(), &path.key("metadata"), false),
        expires: entry
            .expires
            .as_deref()
            .and_then(|text| expiry(text, &path.key("expires"), r)),
        budget: entry
            .budget
            .as_ref()
            .and_then(|raw| budget(raw, &path.key("budget"), r)),
    })
}

/// The digest of `key`, or the configured `key_sha256`: exactly one of them.
fn secret_digest(entry: &RawKey, path: &YamlPath, r: &mut Report<'_>) -> Option<[u8; 32]> {
    match (entry.key.as_deref(), entry.key_sha256.as_deref()) {
        (Some(_), Some(_)) => {
            r.error(&path.key("key_sha256"), "give either `key` or `key_sha256`, not both");
            None
        }
        (None, None) => {
            r.error(&path.key("key"), "is required but missing (or give `key_sha256`)");
            None
        }
        (Some(key), None) if key.trim().is_empty() => {
            r.error(&path.key("key"), "must not be empty");
            None
        }
        (Some(key), None) => Some(digest(key.as_bytes())),
        (None, Some(hex)) => parse_digest(hex).or_else(|| {
            r.error(
                &path.key("key_sha256"),
                "must be 64 hex digits (the SHA-256 of the key, e.g. from `printf %s KEY | sha256sum`)",
            );
            None
        }),
    }
}

/// SHA-256 of a presented or configured secret.
pub fn digest(secret: &[u8]) -> [u8; 32] {
    let hash = ring::digest::digest(&ring::digest::SHA256, secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.as_ref());
    out
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn expiry(text: &str, path: &YamlPath, r: &mut Report<'_>) -> Option<SystemTime> {
    match humantime::parse_rfc3339_weak(text.trim()) {
        Ok(at) => Some(at),
        Err(e) => {
            r.error(
                path,
                format!("`{text}` is not a date and time ({e}); use RFC 3339, like 2027-01-31T00:00:00Z"),
            );
            None
        }
    }
}

/// `rpm` and `tpm` of a key, provider or target: each at least 1 when given.
pub(super) fn quota(
    rpm: Option<u64>,
    tpm: Option<u64>,
    path: &YamlPath,
    r: &mut Report<'_>,
) -> Quota {
    Quota {
        rpm: rpm.map(|n| r.at_least_one(Some(n), &path.key("rpm"), 1)),
        tpm: tpm.map(|n| r.at_least_one(Some(n), &path.key("tpm"), 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_from_hex() {
        let key = digest(b"sk-test");
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_digest(&hex), Some(key));
        assert_eq!(parse_digest(&hex.to_uppercase()), Some(key));
        assert_eq!(parse_digest(&hex[..62]), None);
        assert_eq!(parse_digest(&format!("{}zz", &hex[..62])), None);
    }
}
