//! `GET /admin/keys` and the per-key metrics: each configured key's limits,
//! where it stands in the current window, what it has used, and its labels —
//! never its secret. Read from the gateway-wide atomics of the current table's
//! limits, so nothing here touches a shard.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use crate::limits::gate::KeyState;
use crate::limits::lease::Ledger;
use crate::route::Table;

/// The keys as `/admin/keys` shows them.
pub fn keys_json(table: &Table) -> serde_json::Value {
    let limits = &table.limits;
    let window = limits.windows.index(Instant::now());
    let reset = limits
        .windows
        .end(window)
        .saturating_duration_since(Instant::now());
    let now = SystemTime::now();
    let keys: Vec<serde_json::Value> = table
        .config
        .keys
        .iter()
        .zip(&limits.keys)
        .enumerate()
        .map(|(index, (key, state))| {
            let used = |ledger: &Option<Ledger>| {
                ledger
                    .as_ref()
                    .map(|l| serde_json::json!({"limit": l.limit(), "used": l.used(window)}))
            };
            let metadata: serde_json::Map<String, serde_json::Value> = key
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            serde_json::json!({
                "name": key.name,
                "metadata": metadata,
                "routes": key.routes,
                "models": key.models,
                "expires": key.expires.map(|at| humantime::format_rfc3339_seconds(at).to_string()),
                "expired": key.expires.is_some_and(|at| at <= SystemTime::now()),
                "rpm": used(&state.limiter.rpm),
                "tpm": used(&state.limiter.tpm),
                "max_concurrency": state.max_concurrency,
                "in_flight": state.in_flight.load(Ordering::Relaxed),
                "budget": budget_json(table, index, key, now),
                "totals": totals(state),
            })
        })
        .collect();
    serde_json::json!({
        "rate_window_ms": limits.windows.length().as_millis() as u64,
        "window_resets_in_ms": reset.as_millis() as u64,
        "keys": keys,
    })
}

/// The key's spend in its current period, against its budget if it has one.
fn budget_json(
    table: &Table,
    index: usize,
    key: &crate::config::ClientKey,
    now: SystemTime,
) -> serde_json::Value {
    let Some(status) = table.spend.book.status(index, now) else {
        return serde_json::Value::Null;
    };
    let usd = |micros: u64| micros as f64 / 1e6;
    serde_json::json!({
        "period": key.budget.map(|b| b.period.as_str()),
        "spent_usd": usd(status.spent_micros),
        "limit_usd": status.limit_micros.map(usd),
        "resets_at": status.resets_at.map(|at| humantime::format_rfc3339_seconds(at).to_string()),
        "exhausted": status.exhausted,
    })
}

fn totals(state: &KeyState) -> serde_json::Value {
    let stats = &state.stats;
    serde_json::json!({
        "requests": stats.requests.load(Ordering::Relaxed),
        "limited": stats.limited.load(Ordering::Relaxed),
        "tokens_in": stats.tokens_in.load(Ordering::Relaxed),
        "tokens_out": stats.tokens_out.load(Ordering::Relaxed),
    })
}

/// Per-key series for `/metrics`: one per configured key (bounded by the config).
pub fn keys_prometheus(table: &Table, out: &mut String) {
    type Get = fn(&KeyState) -> u64;
    let series: [(&str, &str, &str, Get); 5] = [
        (
            "switchyard_key_requests_total",
            "counter",
            "Requests made with the key.",
            |s| s.stats.requests.load(Ordering::Relaxed),
        ),
        (
            "switchyard_key_limited_total",
            "counter",
            "Requests of the key refused by its rpm, tpm or max_concurrency.",
            |s| s.stats.limited.load(Ordering::Relaxed),
        ),
        (
            "switchyard_key_tokens_in_total",
            "counter",
            "Input tokens providers reported for the key's requests (every attempt).",
            |s| s.stats.tokens_in.load(Ordering::Relaxed),
        ),
        (
            "switchyard_key_tokens_out_total",
            "counter",
            "Output tokens providers reported for the key's requests (every attempt).",
            |s| s.stats.tokens_out.load(Ordering::Relaxed),
        ),
        (
            "switchyard_key_in_flight",
            "gauge",
            "Requests of the key in flight now.",
            |s| u64::from(s.in_flight.load(Ordering::Relaxed)),
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (key, state) in table.config.keys.iter().zip(&table.limits.keys) {
            let _ = writeln!(
                out,
                "{name}{{key=\"{}\"}} {}",
                escape(&key.name),
                get(state)
            );
        }
    }
}

/// A label value as Prometheus' text format takes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
