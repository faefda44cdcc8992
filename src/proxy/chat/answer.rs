//! Responding: the one place the chat path writes to its client — whole answers
//! (a provider's, or the gateway's own error naming every failed attempt, or the
//! fail-fast 503) in the client's dialect, through [`Reply`].

use super::*;
use crate::route::plan::Ending;

/// Bodies up to this size ride in the same write as the head (one syscall, a
/// small copy); larger ones are written from their own buffer instead of being
/// copied behind the head, so an answer is held once, however slowly the client
/// reads. Small enough that the connection's reused `out` buffer stays small.
const INLINE_BODY: usize = 16 * 1024;

impl Reply<'_> {
    /// Writes what `out` holds to the client.
    pub(super) async fn flush(&mut self) -> std::io::Result<()> {
        let (res, buf) = self.client.write_all(std::mem::take(self.out)).await;
        *self.out = buf;
        self.out.clear();
        res
    }

    /// Sends a whole proxied answer (status, content type, body) in the client's
    /// dialect (`native`: the body already is); returns the status the client got.
    pub(super) async fn send_whole(
        &mut self,
        (status, content_type, body): (u16, Vec<u8>, Vec<u8>),
        native: bool,
        extra: &[(&str, &[u8])],
    ) -> std::io::Result<u16> {
        let (status, content_type, body) = match native {
            true => (status, content_type, body),
            false => self.meta.shape_answer(status, content_type, body),
        };
        self.meta
            .write_full_head(self.out, status, &content_type, body.len(), extra);
        if body.len() <= INLINE_BODY {
            self.out.extend_from_slice(&body);
            crate::bufpool::give(body);
            self.flush().await?;
            return Ok(status);
        }
        self.flush().await?;
        let (written, body) = self.client.write_all(body).await;
        crate::bufpool::give(body);
        written.map(|()| status)
    }

    /// Answers a chain that ended without a committed answer, as the plan's
    /// `ending` says; returns the status the client got.
    pub(super) async fn end(
        &mut self,
        req: &Request<'_>,
        route: usize,
        ending: Ending,
        trail: &mut Trail,
    ) -> std::io::Result<u16> {
        let route_name = req.route(route).name.as_str();
        let (status, code, message) = match ending {
            Ending::ProviderAnswer => match trail.kept.take() {
                Some((answer, target)) => return self.provider_answer(answer, target).await,
                None => (502, "upstream_failed", failed_message(route_name, trail)),
            },
            Ending::FailFast { until } => {
                req.routing.routes[route].counters.borrow_mut().fail_fast += 1;
                return self.fail_fast(route_name, until).await;
            }
            Ending::TimedOut => (504, "upstream_timeout", failed_message(route_name, trail)),
            Ending::Failed => (502, "upstream_failed", failed_message(route_name, trail)),
        };
        let body = error_with_attempts(&message, code, &trail.attempts);
        // The gateway's own answer: no provider's headers describe it.
        self.meta.upstream_headers = Default::default();
        self.meta
            .write_answer(self.out, status, b"application/json", &body, &[]);
        self.flush().await?;
        Ok(status)
    }

    /// A provider's own answer, returned as it is (with its `Retry-After`).
    async fn provider_answer(
        &mut self,
        answer: attempt::ProviderAnswer,
        target: Arc<str>,
    ) -> std::io::Result<u16> {
        self.meta.target = Some(target);
        let attempt::ProviderAnswer {
            status,
            content_type,
            body,
            retry_after,
            upstream,
        } = answer;
        self.meta.upstream_headers = upstream;
        let mut extra: Vec<(&str, &[u8])> = Vec::new();
        if let Some(retry_after) = &retry_after {
            extra.push(("retry-after", retry_after));
        }
        self.send_whole((status, content_type, body), false, &extra)
            .await
    }

    /// 503 at once: every target's breaker refused, nothing was sent.
    async fn fail_fast(&mut self, route_name: &str, until: Instant) -> std::io::Result<u16> {
        let wait = until.saturating_duration_since(Instant::now());
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0 || wait.is_zero());
        let message = format!("route `{route_name}`: every target is unavailable (circuit open); retry in {retry_after}s");
        let body = error_with_attempts(&message, "all_targets_unavailable", &[]);
        let retry_after = retry_after.to_string();
        self.meta.upstream_headers = Default::default();
        self.meta.write_answer(
            self.out,
            503,
            b"application/json",
            &body,
            &[("retry-after", retry_after.as_bytes())],
        );
        self.flush().await?;
        Ok(503)
    }
}

fn failed_message(route_name: &str, trail: &Trail) -> String {
    if trail.attempts.is_empty() {
        format!(
            "route `{route_name}`: the request deadline passed before any target could be tried"
        )
    } else {
        format!(
            "route `{route_name}`: all {} attempts failed",
            trail.attempts.len()
        )
    }
}

fn error_with_attempts(message: &str, code: &str, attempts: &[AttemptLog]) -> Vec<u8> {
    let attempts: Vec<serde_json::Value> = attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "target": a.target,
                "class": a.class.as_str(),
                "status": a.status,
                "detail": a.detail,
                "elapsed_ms": (a.elapsed.as_secs_f64() * 1e4).round() / 10.0,
            })
        })
        .collect();
    serde_json::json!({
        "error": {
            "message": message,
            "type": "upstream_error",
            "param": null,
            "code": code,
            "attempts": attempts,
        }
    })
    .to_string()
    .into_bytes()
}
