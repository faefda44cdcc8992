//! The running config as JSON in the YAML's shape, with every secret replaced by
//! `"<redacted>"`: what `/admin/config` shows.

use serde_json::{json, Map, Value};

use super::duration::format_duration;
use super::types::*;

const REDACTED: &str = "<redacted>";

/// A copy of the config with api keys, client keys, the admin token and provider
/// header values (which often carry credentials) replaced by `"<redacted>"`.
pub fn redacted_json(config: &Config) -> Value {
    json!({
        "listen": config.listen.to_string(),
        "shards": match config.shards {
            ShardCount::Auto => json!("auto"),
            ShardCount::Fixed(n) => json!(n),
        },
        "driver": match config.driver {
            DriverChoice::Auto => "auto",
            DriverChoice::IoUring => "io_uring",
            DriverChoice::Legacy => "legacy",
        },
        "shutdown_grace": format_duration(config.shutdown_grace),
        "health_endpoints": config.health_endpoints,
        "admin": config.admin.as_ref().map(|a| json!({
            "listen": a.listen.to_string(),
            "token": a.token.as_ref().map(|_| REDACTED),
        })),
        "keys": config.keys.iter().map(|k| json!({ "name": k.name, "key": REDACTED })).collect::<Vec<_>>(),
        "providers": providers(&config.providers),
        "routes": config.routes.iter().map(|r| route(r, &config.providers)).collect::<Vec<_>>(),
        "health": health(&config.health),
        "limits": limits(&config.limits),
        "log": {
            "format": match config.log.format { LogFormat::Json => "json", LogFormat::Logfmt => "logfmt" },
            "level": config.log.level.as_str(),
            "request_sample": config.log.request_sample,
        },
        "cluster": config.cluster.as_ref().map(|c| json!({
            // The link's Display hides the password.
            "redis": crate::cluster::link::LinkUrl::parse(&c.redis)
                .map_or_else(|_| REDACTED.to_string(), |u| u.to_string()),
            "node_id": c.node_id,
            "sync_interval": format_duration(c.sync_interval),
            "on_redis_down": c.on_redis_down.as_str(),
        })),
    })
}

fn providers(providers: &[Provider]) -> Value {
    let mut map = Map::new();
    for p in providers {
        let headers: Map<String, Value> = p
            .headers
            .iter()
            .map(|(name, _)| (name.clone(), json!(REDACTED)))
            .collect();
        map.insert(
            p.name.clone(),
            json!({
                "kind": p.kind.as_str(),
                "base_url": base_url(&p.base_url),
                "api_key": p.api_key.as_ref().map(|_| REDACTED),
                "headers": headers,
                "max_connections": p.max_connections,
                "pool_idle_timeout": format_duration(p.pool_idle_timeout),
            }),
        );
    }
    Value::Object(map)
}

fn base_url(url: &BaseUrl) -> String {
    let scheme = if url.tls { "https" } else { "http" };
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    format!("{scheme}://{host}:{}{}", url.port, url.path)
}

fn route(route: &Route, providers: &[Provider]) -> Value {
    let strategy = match route.strategy {
        Strategy::Priority => "priority",
        Strategy::Weighted => "weighted",
        Strategy::Latency => "latency",
        Strategy::LeastBusy => "least-busy",
    };
    let headers: Map<String, Value> = route
        .matcher
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), json!(v)))
        .collect();
    json!({
        "name": route.name,
        "match": { "model": route.matcher.models, "keys": route.matcher.keys, "headers": headers },
        "strategy": strategy,
        "targets": route.targets.iter().map(|t| target(t, providers)).collect::<Vec<_>>(),
        "retry": retry(&route.retry),
        "fallback": {
            "on_status": route.fallback.on_status,
            "on_timeout": route.fallback.on_timeout,
            "on_connect_error": route.fallback.on_connect_error,
            "on_context_length": route.fallback.on_context_length,
            "on_content_policy": route.fallback.on_content_policy,
        },
        "timeouts": {
            "connect": format_duration(route.timeouts.connect),
            "first_byte": format_duration(route.timeouts.first_byte),
            "first_token": match route.timeouts.first_token {
                FirstToken::Auto => "auto".to_string(),
                FirstToken::Fixed(limit) => format_duration(limit),
            },
            "between_chunks": format_duration(route.timeouts.between_chunks),
            "total": format_duration(route.timeouts.total),
        },
        "stream": {
            "continue_after_commit": route.stream.continue_after_commit,
            "hold_until_content": route.stream.hold_until_content,
        },
        "hedge": route.hedge.map(hedge),
        "forward_headers": {
            "allow": route.forward_headers.allow,
            "deny": route.forward_headers.deny,
        },
    })
}

fn hedge(hedge: HedgePolicy) -> Value {
    json!({
        "after": match hedge.after {
            HedgeAfter::P95 => "p95".to_string(),
            HedgeAfter::Fixed(after) => format_duration(after),
        },
        "max_extra": hedge.max_extra,
        "budget_ratio": hedge.budget_ratio,
        "budget_min_per_sec": hedge.budget_min_per_sec,
    })
}

fn target(target: &Target, providers: &[Provider]) -> Value {
    json!({
        "provider": providers.get(target.provider).map(|p| p.name.as_str()),
        "model": target.model,
        "priority": target.priority,
        "weight": target.weight,
        "prefill": target.prefill.as_str(),
        "retry": target.retry.as_ref().map(retry),
    })
}

fn retry(retry: &RetryPolicy) -> Value {
    json!({
        "attempts": retry.attempts,
        "backoff": format_duration(retry.backoff),
        "max_backoff": format_duration(retry.max_backoff),
        "on_status": retry.on_status,
        "budget_ratio": retry.budget_ratio,
        "budget_min_per_sec": retry.budget_min_per_sec,
        "max_retry_after": format_duration(retry.max_retry_after),
        "wait_retry_after_up_to": format_duration(retry.wait_retry_after_up_to),
    })
}

fn health(h: &HealthConfig) -> Value {
    json!({
        "window": format_duration(h.window),
        "min_requests": h.min_requests,
        "failure_rate": h.failure_rate,
        "consecutive_failures": h.consecutive_failures,
        "cooldown": format_duration(h.cooldown),
        "max_cooldown": format_duration(h.max_cooldown),
        "half_open_probes": h.half_open_probes,
    })
}

fn limits(l: &Limits) -> Value {
    json!({
        "max_header_bytes": l.max_header_bytes,
        "max_body_bytes": l.max_body_bytes,
        "max_response_bytes": l.max_response_bytes,
        "max_connections": l.max_connections,
        "idle_timeout": format_duration(l.idle_timeout),
        "request_timeout": format_duration(l.request_timeout),
        "client_write_timeout": format_duration(l.client_write_timeout),
        "max_stream_buffer_bytes": l.max_stream_buffer_bytes,
    })
}
