//! One try against one target: encode the request for the target's kind, send it,
//! and wait for an answer worth committing (a whole body, or a stream's first content).

use super::*;
use crate::upstream::{ConnectError, ExchangeDeadlines};

/// A provider's own error answer, kept to return it unchanged in meaning.
pub(super) struct ProviderAnswer {
    pub(super) status: u16,
    pub(super) content_type: Vec<u8>,
    pub(super) body: Vec<u8>,
    pub(super) retry_after: Option<Vec<u8>>,
}

pub(super) enum AttemptResult {
    Complete {
        content_type: Vec<u8>,
        body: Vec<u8>,
        ttfb: Duration,
    },
    Stream {
        held: Box<stream::Held>,
        ttfb: Duration,
    },
    Failed {
        failure: Failure,
        answer: Option<ProviderAnswer>,
        reason: String,
    },
    /// This target cannot express the request (no attempt was sent).
    Untranslatable(String),
}

impl Call<'_> {
    /// One attempt, unless the client hangs up first: then the attempt is dropped
    /// with its upstream socket (never pooled mid-exchange), nothing counts against
    /// the provider, and `None` says the client is gone.
    pub(super) async fn attempt_for_client(
        &mut self,
        client: &ClientStream,
        route: &Route,
        target_index: usize,
        slot: usize,
        started: Instant,
    ) -> Option<AttemptResult> {
        let outcome = monoio::select! {
            result = self.attempt(route, target_index, slot, started) => Some(result),
            _ = client.hung_up() => None,
        };
        if outcome.is_none() {
            let table = self.table.clone();
            self.shard.with_health(&table, slot, |h| {
                h.finish();
                h.abandon_probe();
            });
        }
        outcome
    }

    /// One try against one target: send, then wait for an answer worth committing.
    pub(super) async fn attempt(
        &mut self,
        route: &Route,
        target_index: usize,
        slot: usize,
        started: Instant,
    ) -> AttemptResult {
        let table = self.table.clone();
        let target = &route.targets[target_index];
        let (Some(pool), Some(entry), Some(provider)) = (
            self.shard.pool(&table, target.provider),
            table.providers.get(target.provider),
            table.config.providers.get(target.provider),
        ) else {
            return failed(
                FailureClass::Connect,
                None,
                "provider has no pool on this shard",
            );
        };
        let kind = provider.kind;
        let request = match self.encode_request(provider, &entry.prepared, target) {
            Ok(request) => request,
            Err(e) => return AttemptResult::Untranslatable(e.to_string()),
        };
        let timeouts = target.timeouts.unwrap_or(route.timeouts);
        let remaining = self.deadline.saturating_duration_since(started);
        let connect = timeouts.connect.min(remaining);
        let first_byte_deadline = (started + timeouts.first_byte).min(self.deadline);
        let deadlines = ExchangeDeadlines {
            connect,
            first_byte: timeouts.first_byte,
            first_byte_at: first_byte_deadline,
            total: self.deadline,
        };
        let (result, buf) = exchange(&pool, request, deadlines).await;
        self.request_buf = buf;
        let mut response = match result {
            Ok(response) => response,
            Err(e) => return exchange_failure(e),
        };
        let ttfb = started.elapsed();
        let status = response.status();
        let content_type = response
            .head
            .header("content-type")
            .unwrap_or(b"application/json")
            .to_vec();
        if (200..300).contains(&status) {
            if self.chat.stream && provider::is_event_stream(kind, &content_type) {
                let source = provider::event_source(kind, &target.model);
                let policy = stream::HoldPolicy {
                    first_content_deadline: first_byte_deadline,
                    until_content: route.stream.hold_until_content,
                    max_held_bytes: table.config.limits.max_stream_buffer_bytes,
                };
                return match stream::hold(response, source, policy).await {
                    Ok(held) => AttemptResult::Stream {
                        held: Box::new(held),
                        ttfb: started.elapsed(),
                    },
                    Err(failure) => {
                        if failure.overflowed {
                            self.count_stream_overflow(slot);
                        }
                        hold_failed(kind, failure)
                    }
                };
            }
            let body = match response
                .read_to_end(MAX_UPSTREAM_BODY, timeouts.between_chunks, self.deadline)
                .await
            {
                Ok(body) => body,
                Err(BodyError::Stalled) => {
                    return failed(FailureClass::Stall, None, "body stalled")
                }
                Err(e) => return failed(FailureClass::Server, None, &e.to_string()),
            };
            response.finish();
            return match provider::translate_response(kind, self.api, &target.model, body) {
                Ok(body) if provider::passes_through(kind) => AttemptResult::Complete {
                    content_type,
                    body,
                    ttfb,
                },
                Ok(body) => AttemptResult::Complete {
                    content_type: b"application/json".to_vec(),
                    body,
                    ttfb,
                },
                Err(e) => failed(FailureClass::Server, None, &e.to_string()),
            };
        }
        let retry_after_raw = response.head.header("retry-after").map(<[u8]>::to_vec);
        let body = match response
            .read_to_end(MAX_ERROR_BODY, timeouts.between_chunks, self.deadline)
            .await
        {
            Ok(body) => {
                response.finish();
                body
            }
            Err(_) => Vec::new(),
        };
        let class = provider::classify_status(kind, status, &body);
        let retry_after = retry_after_raw
            .as_deref()
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let (content_type, body) = if provider::passes_through(kind) {
            (content_type, body)
        } else {
            (
                b"application/json".to_vec(),
                provider::translate_error(kind, status, body),
            )
        };
        AttemptResult::Failed {
            failure: Failure {
                class,
                status: Some(status),
                retry_after,
            },
            answer: Some(ProviderAnswer {
                status,
                content_type,
                body,
                retry_after: retry_after_raw,
            }),
            reason: format!("HTTP {status}"),
        }
    }

    /// The bytes of one upstream request: pass-through kinds get the client's body
    /// with the model rewritten; other kinds get their own translated request.
    pub(super) fn encode_request(
        &mut self,
        provider: &crate::config::Provider,
        prepared: &provider::PreparedProvider,
        target: &crate::config::Target,
    ) -> Result<Vec<u8>, provider::TranslateError> {
        let (source, chat) = match &self.continuation {
            Some((body, chat)) => (body.as_slice(), chat),
            None => (self.body, &self.chat),
        };
        let outbound = if provider::passes_through(provider.kind) {
            let mut body = Vec::with_capacity(source.len() + 64);
            chat.rewrite(source, &target.model, &mut body);
            let path = match self.api {
                Api::ChatCompletions => &prepared.chat_path,
                Api::Embeddings => &prepared.embeddings_path,
            };
            (std::borrow::Cow::Borrowed(path.as_str()), None, body)
        } else {
            let parts = provider::RequestParts {
                provider,
                prepared,
                api: self.api,
                model: &target.model,
                body: source,
                chat,
                query: &target.query,
                now: SystemTime::now(),
            };
            let out = provider::translate_request(&parts)?;
            (
                std::borrow::Cow::Owned(out.path),
                Some(out.headers),
                out.body,
            )
        };
        let (mut path, own_headers, body) = outbound;
        if !target.query.is_empty() && !provider::signs_requests(provider.kind) {
            provider::append_query(path.to_mut(), &target.query);
        }
        let mut request = std::mem::take(&mut self.request_buf);
        request.clear();
        let own_headers = own_headers.as_deref().unwrap_or(&prepared.headers);
        let mut headers: Vec<(&str, &[u8])> =
            Vec::with_capacity(own_headers.len() + target.headers.len() + 3);
        headers.extend(own_headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
        headers.extend(
            target
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes())),
        );
        headers.push(("content-type", b"application/json"));
        headers.push(("x-request-id", self.meta.request_id.as_bytes()));
        if chat.stream {
            headers.push(("accept", b"text/event-stream"));
        }
        write_request_head(
            &mut request,
            "POST",
            &path,
            &prepared.host_header,
            &headers,
            body.len(),
        );
        request.extend_from_slice(&body);
        Ok(request)
    }
}

pub(super) fn failed(class: FailureClass, status: Option<u16>, reason: &str) -> AttemptResult {
    AttemptResult::Failed {
        failure: Failure {
            class,
            status,
            retry_after: None,
        },
        answer: None,
        reason: reason.to_string(),
    }
}

pub(super) fn exchange_failure(error: ExchangeError) -> AttemptResult {
    let class = match &error {
        // A full connection cap is the gateway's limit, not the provider's failure.
        ExchangeError::Connect(ConnectError::LimitReached) => FailureClass::Local,
        ExchangeError::Connect(_) => FailureClass::Connect,
        ExchangeError::FirstByteTimeout | ExchangeError::SendTimeout => {
            FailureClass::FirstByteTimeout
        }
        ExchangeError::ClosedBeforeResponse
        | ExchangeError::Send(_)
        | ExchangeError::Receive(_)
        | ExchangeError::Malformed(_) => FailureClass::Server,
    };
    failed(class, None, &error.to_string())
}

pub(super) fn hold_failed(
    kind: crate::config::ProviderKind,
    failure: HoldFailure,
) -> AttemptResult {
    let class = failure.error_data.as_deref().map_or(failure.class, |data| {
        provider::classify_stream_error(kind, data)
    });
    failed(class, None, &failure.reason)
}

pub(super) fn usage_of(body: &[u8]) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        #[serde(default)]
        usage: Option<Usage>,
    }
    serde_json::from_slice::<WithUsage>(body).ok()?.usage
}
