//! Validating routes: matching rules, targets and their providers, and the
//! retry, fallback, timeout and streaming policies with their defaults.

use std::time::Duration;

use serde_yaml::Value;

use super::duration::parse_duration;
use super::error::Report;
use super::locate::YamlPath;
use super::raw::{
    AutoWord, DurationText, OrderedMap, RawFallback, RawForwardHeaders, RawHedge, RawMatch,
    RawRetry, RawRoute, RawStream, RawSwitch, RawTarget, RawTimeouts,
};
use super::types::*;
use crate::proxy::headers;

const STRATEGIES: &[(&str, Strategy)] = &[
    ("priority", Strategy::Priority),
    ("weighted", Strategy::Weighted),
    ("latency", Strategy::Latency),
    ("least-busy", Strategy::LeastBusy),
];

const RETRY_STATUS: &[u16] = &[429, 500, 502, 503, 504];
const FALLBACK_STATUS: &[u16] = &[429, 500, 502, 503, 504, 529];

/// What routes may refer to by name.
pub struct Refs<'c> {
    pub providers: &'c [Provider],
    pub keys: &'c [ClientKey],
}

/// The route-level retry policy when the file says nothing.
pub fn default_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        on_status: RETRY_STATUS.to_vec(),
        budget_ratio: 0.2,
        budget_min_per_sec: 10,
        max_retry_after: Duration::from_secs(10),
        wait_retry_after_up_to: Duration::ZERO,
    }
}

pub fn routes(
    raw: Vec<RawRoute>,
    refs: &Refs<'_>,
    path: &YamlPath,
    r: &mut Report<'_>,
) -> Vec<Route> {
    if raw.is_empty() {
        r.error(path, "at least one route is required");
    }
    let routes: Vec<Route> = raw
        .into_iter()
        .enumerate()
        .map(|(i, route)| self::route(route, refs, &path.index(i), r))
        .collect();
    check_unique_names(&routes, path, r);
    check_context_length(&routes, path, r);
    routes
}

fn route(raw: RawRoute, refs: &Refs<'_>, path: &YamlPath, r: &mut Report<'_>) -> Route {
    let retry = retry(
        raw.retry.unwrap_or_default(),
        &default_retry(),
        &path.key("retry"),
        r,
    );
    let targets_path = path.key("targets");
    let raw_targets = raw.targets.unwrap_or_default();
    if raw_targets.is_empty() {
        r.error(&targets_path, "at least one target is required");
    }
    let timeouts = timeouts(
        raw.timeouts.unwrap_or_default(),
        &Timeouts::DEFAULT,
        &path.key("timeouts"),
        r,
    );
    let targets = raw_targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let here = targets_path.index(i);
            target(t, refs.providers, &retry, &timeouts, &here, r)
        })
        .collect();
    Route {
        name: r.required(raw.name.as_deref(), &path.key("name")),
        matcher: matcher(
            raw.matcher.unwrap_or_default(),
            refs.keys,
            &path.key("match"),
            r,
        ),
        strategy: r.choice(
            raw.strategy.as_deref(),
            &path.key("strategy"),
            STRATEGIES,
            Strategy::Priority,
        ),
        targets,
        retry,
        fallback: fallback(raw.fallback.unwrap_or_default(), &path.key("fallback"), r),
        timeouts,
        stream: stream(raw.stream.unwrap_or_default()),
        hedge: raw.hedge.map(|h| hedge(h, &path.key("hedge"), r)),
        forward_headers: forward_headers(
            raw.forward_headers.unwrap_or_default(),
            &path.key("forward_headers"),
            r,
        ),
    }
}

fn matcher(raw: RawMatch, keys: &[ClientKey], path: &YamlPath, r: &mut Report<'_>) -> RouteMatch {
    let models = models(raw.model.as_ref(), &path.key("model"), r);
    let key_names = raw.keys.unwrap_or_default();
    for (i, name) in key_names.iter().enumerate() {
        if !keys.iter().any(|k| k.name == *name) {
            r.error(&path.key("keys").index(i), unknown_key_message(name, keys));
        }
    }
    RouteMatch {
        models,
        keys: key_names,
        headers: r.headers(raw.headers.as_ref(), &path.key("headers"), true),
    }
}

fn unknown_key_message(name: &str, keys: &[ClientKey]) -> String {
    if keys.is_empty() {
        return format!("unknown client key `{name}`: no client keys are defined under `keys`");
    }
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    format!(
        "unknown client key `{name}`; expected one of: {}",
        names.join(", ")
    )
}

fn models(raw: Option<&Value>, path: &YamlPath, r: &mut Report<'_>) -> Vec<String> {
    const EXPECTED: &str = "expected a model name or a list of model names (`*` = any)";
    let items: Vec<(YamlPath, &Value)> = match raw {
        None => return Vec::new(),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (path.index(i), v))
            .collect(),
        Some(other) => vec![(path.clone(), other)],
    };
    let mut models = Vec::with_capacity(items.len());
    for (here, value) in items {
        match value {
            Value::String(name) if !name.trim().is_empty() => models.push(name.clone()),
            _ => r.error(&here, EXPECTED),
        }
    }
    models
}

fn target(
    raw: RawTarget,
    providers: &[Provider],
    retry: &RetryPolicy,
    route_timeouts: &Timeouts,
    path: &YamlPath,
    r: &mut Report<'_>,
) -> Target {
    let provider_path = path.key("provider");
    let name = r.required(raw.provider.as_deref(), &provider_path);
    let index = providers.iter().position(|p| p.name == name);
    if index.is_none() && !name.is_empty() {
        let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        r.error(
            &provider_path,
            format!(
                "unknown provider `{name}`; expected one of: {}",
                names.join(", ")
            ),
        );
    }
    Target {
        provider: index.unwrap_or(0),
        model: r.required(raw.model.as_deref(), &path.key("model")),
        priority: raw.priority.unwrap_or(0),
        weight: r.at_least_one(raw.weight, &path.key("weight"), 1),
        retry: raw
            .retry
            .map(|t| self::retry(t, retry, &path.key("retry"), r)),
        prefill: match raw.prefill {
            None | Some(RawSwitch::Word(AutoWord::Auto)) => Prefill::Auto,
            Some(RawSwitch::Bool(true)) => Prefill::Always,
            Some(RawSwitch::Bool(false)) => Prefill::Never,
        },
        headers: r.headers(raw.headers.as_ref(), &path.key("headers"), true),
        query: query(raw.query.as_ref(), &path.key("query"), r),
        quota: super::keys::quota(raw.rpm, raw.tpm, path, r),
        timeouts: raw
            .timeouts
            .map(|t| timeouts(t, route_timeouts, &path.key("timeouts"), r))
            .map_or(*route_timeouts, |t| Timeouts {
                total: route_timeouts.total,
                ..t
            }),
    }
}

/// Query parameters: names and values are percent-encoded when the path is built,
/// so only line breaks are refused here.
fn query(
    raw: Option<&OrderedMap<String>>,
    path: &YamlPath,
    r: &mut Report<'_>,
) -> Vec<(String, String)> {
    let Some(OrderedMap(entries)) = raw else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|(name, value)| {
            let bad =
                name.is_empty() || name.contains(['\r', '\n']) || value.contains(['\r', '\n']);
            if bad {
                r.error(
                    &path.key(name),
                    "query names must be non-empty and names and values free of line breaks",
                );
            }
            !bad
        })
        .cloned()
        .collect()
}

/// A retry policy whose absent fields come from `base`.
fn retry(raw: RawRetry, base: &RetryPolicy, path: &YamlPath, r: &mut Report<'_>) -> RetryPolicy {
    let backoff = r.duration(raw.backoff.as_ref(), &path.key("backoff"), base.backoff);
    let max_backoff = r.duration(
        raw.max_backoff.as_ref(),
        &path.key("max_backoff"),
        base.max_backoff,
    );
    r.not_longer(
        ("backoff", backoff),
        ("max_backoff", max_backoff),
        &path.key("backoff"),
    );
    let max_retry_after = r.duration(
        raw.max_retry_after.as_ref(),
        &path.key("max_retry_after"),
        base.max_retry_after,
    );
    let wait_retry_after_up_to = r.duration(
        raw.wait_retry_after_up_to.as_ref(),
        &path.key("wait_retry_after_up_to"),
        base.wait_retry_after_up_to,
    );
    // A pause worth waiting for must be one the cap lets us wait out in full.
    r.not_longer(
        ("wait_retry_after_up_to", wait_retry_after_up_to),
        ("max_retry_after", max_retry_after),
        &path.key("wait_retry_after_up_to"),
    );
    RetryPolicy {
        attempts: r.at_least_one(raw.attempts, &path.key("attempts"), base.attempts),
        backoff,
        max_backoff,
        on_status: r.statuses(
            raw.on_status.as_deref(),
            &path.key("on_status"),
            &base.on_status,
        ),
        budget_ratio: r.fraction(
            raw.budget_ratio,
            &path.key("budget_ratio"),
            base.budget_ratio,
            true,
        ),
        budget_min_per_sec: raw.budget_min_per_sec.unwrap_or(base.budget_min_per_sec),
        max_retry_after,
        wait_retry_after_up_to,
    }
}

fn fallback(raw: RawFallback, path: &YamlPath, r: &mut Report<'_>) -> FallbackPolicy {
    FallbackPolicy {
        on_status: r.statuses(
            raw.on_status.as_deref(),
            &path.key("on_status"),
            FALLBACK_STATUS,
        ),
        on_timeout: raw.on_timeout.unwrap_or(true),
        on_connect_error: raw.on_connect_error.unwrap_or(true),
        on_context_length: raw.on_context_length,
        on_content_policy: raw.on_content_policy.unwrap_or(false),
    }
}

/// Timeouts whose absent fields come from `base`.
fn timeouts(raw: RawTimeouts, base: &Timeouts, path: &YamlPath, r: &mut Report<'_>) -> Timeouts {
    let connect = r.positive_duration(raw.connect.as_ref(), &path.key("connect"), base.connect);
    let first_byte = r.positive_duration(
        raw.first_byte.as_ref(),
        &path.key("first_byte"),
        base.first_byte,
    );
    let between_chunks = r.positive_duration(
        raw.between_chunks.as_ref(),
        &path.key("between_chunks"),
        base.between_chunks,
    );
    let total = r.positive_duration(raw.total.as_ref(), &path.key("total"), base.total);
    // Only what the file says is checked against `total`; an inherited default
    // (connect is 3 s by default) longer than a short `total` simply gives way to it.
    let (connect, first_byte) = (
        within_total(r, ("connect", connect), raw.connect.is_some(), total, path),
        within_total(
            r,
            ("first_byte", first_byte),
            raw.first_byte.is_some(),
            total,
            path,
        ),
    );
    let first_token = first_token(
        raw.first_token.as_ref(),
        base.first_token,
        (first_byte, total),
        &path.key("first_token"),
        r,
    );
    Timeouts {
        connect,
        first_byte,
        first_token,
        between_chunks,
        total,
    }
}

/// `first_token`: `auto`, or a positive duration no longer than `total` nor
/// `first_byte` (which bounds the first content too: a longer limit would never
/// apply); absent, `base` (the route's, or the default `auto`).
fn first_token(
    raw: Option<&DurationText>,
    base: FirstToken,
    (first_byte, total): (Duration, Duration),
    path: &YamlPath,
    r: &mut Report<'_>,
) -> FirstToken {
    let Some(text) = raw else {
        return base;
    };
    if text.0.trim() == "auto" {
        return FirstToken::Auto;
    }
    match parse_duration(&text.0) {
        Ok(limit) if limit.is_zero() => {
            r.error(path, "must be greater than zero (or `auto`)");
            base
        }
        Ok(limit) => {
            let bound = if limit > total {
                ("total", total)
            } else {
                ("first_byte", first_byte)
            };
            r.not_longer(("first_token", limit), bound, path);
            FirstToken::Fixed(limit)
        }
        Err(error) => {
            r.error(
                path,
                format!("{error}; or `auto` (learned from the target's time to first token)"),
            );
            base
        }
    }
}

fn within_total(
    r: &mut Report<'_>,
    (name, value): (&'static str, Duration),
    written: bool,
    total: Duration,
    path: &YamlPath,
) -> Duration {
    if !written {
        return value.min(total);
    }
    r.not_longer((name, value), ("total", total), &path.key(name));
    value
}

/// `hedge:`: `after` is `p95` (the default) or a positive duration; `max_extra`
/// is 1 (the one extra attempt supported); `budget_ratio` 0..=1 (default 0.05)
/// with `budget_min_per_sec` (default 1) always allowed.
fn hedge(raw: RawHedge, path: &YamlPath, r: &mut Report<'_>) -> HedgePolicy {
    let after_path = path.key("after");
    let after = match raw.after.as_ref() {
        None => HedgeAfter::P95,
        Some(text) if text.0.trim() == "p95" => HedgeAfter::P95,
        Some(text) => match parse_duration(&text.0) {
            Ok(after) if after.is_zero() => {
                r.error(&after_path, "must be greater than zero (or `p95`)");
                HedgeAfter::P95
            }
            Ok(after) => HedgeAfter::Fixed(after),
            Err(error) => {
                let message = format!("{error}; or `p95` (the target's observed p95 TTFT)");
                r.error(&after_path, message);
                HedgeAfter::P95
            }
        },
    };
    let max_extra = raw.max_extra.unwrap_or(1);
    if max_extra != 1 {
        let message = format!("must be 1 (one extra attempt per request), got {max_extra}");
        r.error(&path.key("max_extra"), message);
    }
    HedgePolicy {
        after,
        max_extra: 1,
        budget_ratio: r.fraction(
            raw.budget_ratio,
            &path.key("budget_ratio"),
            DEFAULT_HEDGE_BUDGET_RATIO,
            true,
        ),
        budget_min_per_sec: raw.budget_min_per_sec.unwrap_or(1),
    }
}

/// `forward_headers:`: `allow` and `deny` list header names (a trailing `*`
/// makes a prefix); an `allow` entry naming a header the gateway never forwards
/// is an error (it would be configured but never enforced).
fn forward_headers(raw: RawForwardHeaders, path: &YamlPath, r: &mut Report<'_>) -> ForwardHeaders {
    let mut names = |list: Option<Vec<String>>, key: &str, allow: bool| -> Vec<String> {
        let list_path = path.key(key);
        let mut out = Vec::new();
        for (i, entry) in list.unwrap_or_default().into_iter().enumerate() {
            let here = list_path.index(i);
            let entry = entry.trim().to_ascii_lowercase();
            if !headers::valid_entry(&entry) {
                let message = format!("`{entry}` is not a header name (letters, digits and -_.!#$%&'+^`|~, optionally ending in `*`)");
                r.error(&here, message);
                continue;
            }
            if let Some(why) = headers::never_allowed(&entry).filter(|_| allow) {
                r.error(
                    &here,
                    format!("`{entry}` is never forwarded to a provider: {why}"),
                );
                continue;
            }
            out.push(entry);
        }
        out
    };
    let allow = names(raw.allow, "allow", true);
    let deny = names(raw.deny, "deny", false);
    ForwardHeaders { allow, deny }
}

/// Hedges allowed per request of the route when `budget_ratio` is absent.
const DEFAULT_HEDGE_BUDGET_RATIO: f64 = 0.05;

fn stream(raw: RawStream) -> StreamPolicy {
    StreamPolicy {
        continue_after_commit: raw.continue_after_commit != Some(RawSwitch::Bool(false)),
        hold_until_content: raw.hold_until_content.unwrap_or(true),
    }
}

fn check_unique_names(routes: &[Route], path: &YamlPath, r: &mut Report<'_>) {
    for (i, route) in routes.iter().enumerate() {
        let first = routes
            .iter()
            .take(i)
            .position(|earlier| earlier.name == route.name);
        let Some(first) = first.filter(|_| !route.name.is_empty()) else {
            continue;
        };
        let first_line = r.line_of(&path.index(first).key("name"));
        let place = first_line
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        r.error(
            &path.index(i).key("name"),
            format!(
                "duplicate route name `{}`; already used by routes[{first}]{place}",
                route.name
            ),
        );
    }
}

fn check_context_length(routes: &[Route], path: &YamlPath, r: &mut Report<'_>) {
    for (i, route) in routes.iter().enumerate() {
        let Some(wanted) = route.fallback.on_context_length.as_deref() else {
            continue;
        };
        let here = path.index(i).key("fallback").key("on_context_length");
        if wanted == route.name {
            r.error(
                &here,
                format!("route `{wanted}` cannot fall back to itself"),
            );
        } else if !routes.iter().any(|other| other.name == wanted) {
            let others: Vec<&str> = routes
                .iter()
                .map(|o| o.name.as_str())
                .filter(|n| *n != route.name)
                .collect();
            let expected = if others.is_empty() {
                "there are no other routes".to_string()
            } else {
                format!("expected one of: {}", others.join(", "))
            };
            r.error(&here, format!("unknown route `{wanted}`; {expected}"));
        }
    }
}
