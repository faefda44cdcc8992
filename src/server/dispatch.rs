//! Which handler answers a request: path and method, client authentication, the
//! request id, and the gateway's own small endpoints (`/v1/models`, and the
//! unauthenticated `/healthz` and `/readyz` for load balancers). Anthropic's
//! `/v1/messages` is answered in Anthropic's shapes from the first error on;
//! OpenAI's `/v1/responses` in the Responses API's (its errors are OpenAI's).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::downstream::ClientStream;
use subtle::ConstantTimeEq;

use crate::http::request::{Method, RequestHead};
use crate::http::ApiError;
use crate::proxy::chat::{self, Api, Incoming};
use crate::proxy::respond::{Dialect, Meta};
use crate::proxy::{messages, responses_endpoint};
use crate::request_id::RequestId;
use crate::route::Table;
use crate::shard::Shard;

enum Endpoint {
    /// A request proxied to providers.
    Proxied(Proxied),
    Models,
    /// Liveness: this shard answers.
    Healthz,
    /// Readiness of this node only (config loaded, shard serving, not draining),
    /// never of its providers: an outage must not take every node out of its
    /// load balancer.
    Readyz,
}

/// The endpoints answered by providers, each a client API.
#[derive(Clone, Copy)]
enum Proxied {
    Chat,
    Embeddings,
    /// OpenAI's legacy completions (pass-through only).
    Completions,
    /// Anthropic's Messages API.
    Messages,
    /// Anthropic's token counting (pass-through to Anthropic-kind targets).
    CountTokens,
    /// OpenAI's Responses API (natively where a target serves it, else
    /// translated onto chat completions).
    Responses,
}

impl Proxied {
    /// The API the client's body is for.
    fn api(self) -> Api {
        match self {
            Proxied::Chat | Proxied::Messages => Api::ChatCompletions,
            Proxied::Embeddings => Api::Embeddings,
            Proxied::Completions => Api::Completions,
            Proxied::CountTokens => Api::CountTokens,
            // The body the chat path gets is its chat translation.
            Proxied::Responses => Api::ChatCompletions,
        }
    }
}

fn endpoint(path: &str) -> Option<Endpoint> {
    let proxied = match path {
        "/v1/chat/completions" | "/chat/completions" => Proxied::Chat,
        "/v1/embeddings" | "/embeddings" => Proxied::Embeddings,
        "/v1/completions" | "/completions" => Proxied::Completions,
        "/v1/messages" | "/messages" => Proxied::Messages,
        "/v1/messages/count_tokens" | "/messages/count_tokens" => Proxied::CountTokens,
        "/v1/responses" | "/responses" => Proxied::Responses,
        _ => return own_endpoint(path),
    };
    Some(Endpoint::Proxied(proxied))
}

/// The gateway's own endpoints.
fn own_endpoint(path: &str) -> Option<Endpoint> {
    match path {
        "/v1/models" | "/models" => Some(Endpoint::Models),
        "/healthz" => Some(Endpoint::Healthz),
        "/readyz" => Some(Endpoint::Readyz),
        _ => None,
    }
}

/// The error shape a client of `path` parses: Anthropic's on the Messages API and
/// every path below it (an Anthropic SDK calling a sub-path this gateway does not
/// serve still gets an error it can parse).
pub fn dialect_of(path: &str) -> Dialect {
    let anthropic = ["/v1/messages", "/messages"].iter().any(|base| {
        path.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if anthropic {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    }
}

/// A request whose head passed path, method and key checks: its body may be read.
pub struct Admitted {
    endpoint: Endpoint,
    table: Arc<Table>,
    /// Index of the client's key in the config (none on an open gateway).
    key: Option<usize>,
    meta: Meta,
}

/// A request refused on its head alone, before any of its body is read.
pub struct Rejected {
    pub error: ApiError,
    pub header: Option<(&'static str, &'static [u8])>,
    pub meta: Meta,
}

/// Decides on the head alone whether this request may go on: path, method and the
/// client's key. Nothing of the body is read (or `100 Continue` sent) before this.
pub fn admit(
    shard: &Shard,
    head: &RequestHead,
    keys: &mut KeyMemo,
) -> Result<Admitted, Box<Rejected>> {
    let meta = Meta {
        request_id: request_id(shard, head),
        dialect: dialect_of(head.path()),
        ..Meta::default()
    };
    let reject = |error, header, meta| {
        Err(Box::new(Rejected {
            error,
            header,
            meta,
        }))
    };
    let table = shard.table();
    let served = endpoint(head.path()).filter(|e| {
        table.config.health_endpoints || !matches!(e, Endpoint::Healthz | Endpoint::Readyz)
    });
    let Some(endpoint) = served else {
        let error = ApiError::not_found(format!(
            "Unknown path `{}`. switchyard serves /v1/chat/completions, /v1/responses, /v1/completions, /v1/embeddings, /v1/messages, /v1/messages/count_tokens and /v1/models.",
            head.path()
        ));
        return reject(error, None, meta);
    };
    let (allowed, allow_header): (Method, &'static [u8]) = match endpoint {
        Endpoint::Proxied(_) => (Method::Post, b"POST"),
        Endpoint::Models | Endpoint::Healthz | Endpoint::Readyz => (Method::Get, b"GET"),
    };
    if head.method != allowed {
        let error = ApiError::method_not_allowed(format!(
            "{} is not allowed on {}; use {}",
            head.method.as_str(),
            head.path(),
            allowed.as_str()
        ));
        return reject(error, Some(("allow", allow_header)), meta);
    }
    // Load balancers probe without a key.
    let key = if matches!(endpoint, Endpoint::Healthz | Endpoint::Readyz) {
        Ok(None)
    } else {
        authenticate(&table, head, meta.dialect == Dialect::Anthropic, keys)
    };
    match key {
        Ok(key) => Ok(Admitted {
            endpoint,
            table,
            key,
            meta,
        }),
        Err(error) => reject(error, Some(("www-authenticate", b"Bearer")), meta),
    }
}

/// The digest of the key a connection presented last: a keep-alive client
/// sends the same key with every request, and hashing it (SHA-256) was the
/// largest single cost of admission (~3k of its ~4.8k instructions, callgrind).
/// Per connection, so it holds only what this client itself sent.
#[derive(Default)]
pub struct KeyMemo {
    key: Vec<u8>,
    digest: [u8; 32],
}

impl KeyMemo {
    /// Longer keys are hashed every time rather than kept.
    const MAX_KEY: usize = 512;

    /// SHA-256 of `presented`, computed only when it differs from the last key.
    pub fn digest(&mut self, presented: &[u8]) -> [u8; 32] {
        // Constant-time, like every other comparison of key material.
        let same = !self.key.is_empty()
            && self.key.len() == presented.len()
            && bool::from(self.key.as_slice().ct_eq(presented));
        if same {
            return self.digest;
        }
        let digest = crate::config::keys::digest(presented);
        self.key.clear();
        if presented.len() <= Self::MAX_KEY {
            self.key.extend_from_slice(presented);
            self.digest = digest;
        }
        digest
    }
}

/// Answers a request refused on its head.
pub async fn answer_rejected(
    shard: &Shard,
    client: &mut ClientStream,
    out: &mut Vec<u8>,
    rejected: &Rejected,
) -> std::io::Result<()> {
    let extra: Vec<(&str, &[u8])> = rejected.header.into_iter().collect();
    answer_error(shard, client, out, &rejected.meta, &rejected.error, &extra).await
}

impl Rejected {
    pub fn set_keep_alive(&mut self, keep_alive: bool) {
        self.meta.keep_alive = keep_alive;
    }
}

/// Answers one admitted request on `client`. An `Err` means the connection is
/// unusable.
#[allow(clippy::too_many_arguments)]
pub async fn dispatch(
    shard: &Rc<Shard>,
    admitted: Admitted,
    head: &RequestHead,
    body: &[u8],
    keep_alive: bool,
    started: Instant,
    client: &mut ClientStream,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let Admitted {
        endpoint,
        table,
        key,
        mut meta,
    } = admitted;
    meta.keep_alive = keep_alive;
    let key = key.and_then(|index| {
        let key = table.config.keys.get(index)?;
        Some(chat::Caller { index, key })
    });
    match endpoint {
        Endpoint::Proxied(proxied) => {
            let incoming = Incoming {
                api: proxied.api(),
                head,
                body,
                request_id: meta.request_id,
                key,
                started,
                keep_alive,
                dialect: meta.dialect,
                native: None,
                echo: None,
            };
            match proxied {
                Proxied::Messages => messages::handle(shard, &incoming, client, out).await,
                Proxied::Responses => {
                    responses_endpoint::handle(shard, &incoming, client, out).await
                }
                _ => chat::handle(shard, &incoming, client, out).await,
            }
        }
        own => {
            let (status, body) = own_answer(shard, &own, &table, key);
            meta.write_full(out, status, b"application/json", &body, &[]);
            write_out(client, out).await
        }
    }
}

/// The status and JSON body of one of the gateway's own endpoints.
fn own_answer(
    shard: &Shard,
    endpoint: &Endpoint,
    table: &Table,
    key: Option<chat::Caller<'_>>,
) -> (u16, Vec<u8>) {
    match endpoint {
        Endpoint::Models => (200, models_body(table, key.map(|caller| caller.key))),
        Endpoint::Readyz if shard.draining.get().is_some() => {
            (503, br#"{"status":"draining"}"#.to_vec())
        }
        Endpoint::Readyz => (200, br#"{"status":"ready"}"#.to_vec()),
        Endpoint::Healthz | Endpoint::Proxied(_) => (200, br#"{"status":"ok"}"#.to_vec()),
    }
}

async fn answer_error(
    shard: &Shard,
    client: &mut ClientStream,
    out: &mut Vec<u8>,
    meta: &Meta,
    error: &ApiError,
    extra: &[(&str, &[u8])],
) -> std::io::Result<()> {
    shard.record_bad_request(error);
    meta.write_error(out, error, extra);
    write_out(client, out).await
}

async fn write_out(client: &mut ClientStream, out: &mut Vec<u8>) -> std::io::Result<()> {
    let (res, buf) = client.write_all(std::mem::take(out)).await;
    *out = buf;
    out.clear();
    res
}

/// The client's own `x-request-id` when it is short and printable, else a new one.
fn request_id(shard: &Shard, head: &RequestHead) -> RequestId {
    head.header("x-request-id")
        .and_then(RequestId::from_client)
        .unwrap_or_else(|| shard.next_request_id())
}

/// Checks `Authorization: Bearer <key>` (or, with `x_api_key`, Anthropic's
/// `x-api-key: <key>`) against the configured keys in constant time per key.
/// Returns the key's index; an open gateway (no keys) admits anyone.
fn authenticate(
    table: &Table,
    head: &RequestHead,
    x_api_key: bool,
    memo: &mut KeyMemo,
) -> Result<Option<usize>, ApiError> {
    let keys = &table.config.keys;
    if keys.is_empty() {
        return Ok(None);
    }
    let presented = head
        .header("authorization")
        .and_then(|v| {
            v.strip_prefix(b"Bearer ")
                .or_else(|| v.strip_prefix(b"bearer "))
        })
        .or_else(|| head.header("x-api-key").filter(|_| x_api_key))
        .ok_or_else(|| {
            ApiError::unauthorized(if x_api_key {
                "Missing API key: send `x-api-key: <key>` or `Authorization: Bearer <key>`."
            } else {
                "Missing API key: send `Authorization: Bearer <key>`."
            })
        })?;
    let presented = memo.digest(presented);
    let mut found = None;
    for (index, key) in keys.iter().enumerate() {
        // Every key is compared, so timing does not say which one matched.
        if bool::from(key.digest.ct_eq(&presented)) {
            found = Some(index);
        }
    }
    let index = found.ok_or_else(|| ApiError::unauthorized("Incorrect API key provided."))?;
    if let Some(expired) = keys[index].expires.filter(|at| *at <= SystemTime::now()) {
        let when = humantime::format_rfc3339_seconds(expired);
        return Err(ApiError::unauthorized(format!(
            "This API key expired at {when}."
        )));
    }
    Ok(Some(index))
}

/// `/v1/models`: only what the caller's key may use.
fn models_body(table: &Table, key: Option<&crate::config::ClientKey>) -> Vec<u8> {
    let data: Vec<serde_json::Value> = table
        .models_for(key)
        .into_iter()
        .map(|id| serde_json::json!({ "id": id, "object": "model", "created": 0, "owned_by": "switchyard" }))
        .collect();
    serde_json::json!({ "object": "list", "data": data })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_memo_hashes_each_new_key_and_remembers_only_the_last() {
        use crate::config::keys::digest;
        let mut memo = KeyMemo::default();
        let long = vec![b'k'; KeyMemo::MAX_KEY + 1];
        let cases: [&[u8]; 7] = [b"sk-a", b"sk-a", b"sk-b", b"sk-a", b"", &long, b"sk-a"];
        for presented in cases {
            assert_eq!(memo.digest(presented), digest(presented), "{presented:?}");
        }
        assert_eq!(memo.digest(&long), digest(&long));
        assert!(memo.key.is_empty(), "a key over the cap is not kept");
    }
}
