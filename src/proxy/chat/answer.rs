//! The gateway's own answers when no provider answer is committed: the provider's
//! error returned as is, the list of failed attempts, or the fail-fast 503.

use super::*;

/// Bodies up to this size ride in the same write as the head (one syscall, a
/// small copy); larger ones are written from their own buffer instead of being
/// copied behind the head, so an answer is held once, however slowly the client
/// reads. Small enough that the connection's reused `out` buffer stays small.
const INLINE_BODY: usize = 16 * 1024;

impl Call<'_> {
    pub(super) async fn answer_provider(
        &mut self,
        answer: ProviderAnswer,
        target: String,
        client: &mut ClientStream,
        out: &mut Vec<u8>,
    ) -> std::io::Result<u16> {
        self.meta.target = Some(target);
        let ProviderAnswer {
            status,
            content_type,
            body,
            retry_after,
        } = answer;
        let mut extra: Vec<(&str, &[u8])> = Vec::new();
        if let Some(retry_after) = &retry_after {
            extra.push(("retry-after", retry_after));
        }
        self.send_whole(client, out, (status, content_type, body), &extra)
            .await
    }

    /// Sends a whole proxied answer (status, content type, OpenAI-shaped body) in
    /// the client's dialect; returns the status the client got.
    pub(super) async fn send_whole(
        &self,
        client: &mut ClientStream,
        out: &mut Vec<u8>,
        (status, content_type, body): (u16, Vec<u8>, Vec<u8>),
        extra: &[(&str, &[u8])],
    ) -> std::io::Result<u16> {
        let (status, content_type, body) = self.meta.shape_answer(status, content_type, body);
        self.meta
            .write_full_head(out, status, &content_type, body.len(), extra);
        if body.len() <= INLINE_BODY {
            out.extend_from_slice(&body);
            write_out(client, out).await?;
            return Ok(status);
        }
        write_out(client, out).await?;
        let (written, _body) = client.write_all(body).await;
        written.map(|()| status)
    }

    pub(super) async fn answer_exhausted(
        &mut self,
        route: usize,
        rejected_until: Option<Instant>,
        client: &mut ClientStream,
        out: &mut Vec<u8>,
    ) -> std::io::Result<u16> {
        let route_name = self
            .table
            .config
            .routes
            .get(route)
            .map_or("", |r| r.name.as_str())
            .to_string();
        if self.attempts.is_empty() {
            if let Some(until) = rejected_until {
                return self
                    .answer_fail_fast(route, &route_name, until, client, out)
                    .await;
            }
        }
        let timed_out = Instant::now() >= self.deadline
            || self.attempts.last().is_some_and(|a| {
                matches!(
                    a.class,
                    FailureClass::FirstByteTimeout | FailureClass::Stall
                )
            });
        let (status, code) = if timed_out {
            (504, "upstream_timeout")
        } else {
            (502, "upstream_failed")
        };
        let message = if self.attempts.is_empty() {
            format!("route `{route_name}`: the request deadline passed before any target could be tried")
        } else {
            format!(
                "route `{route_name}`: all {} attempts failed",
                self.attempts.len()
            )
        };
        let body = error_with_attempts(&message, code, &self.attempts);
        self.meta
            .write_answer(out, status, b"application/json", &body, &[]);
        write_out(client, out).await?;
        Ok(status)
    }

    pub(super) async fn answer_fail_fast(
        &mut self,
        route: usize,
        route_name: &str,
        until: Instant,
        client: &mut ClientStream,
        out: &mut Vec<u8>,
    ) -> std::io::Result<u16> {
        if let Some(counters) = self.shard.metrics.borrow_mut().route(&self.table, route) {
            counters.fail_fast += 1;
        }
        let wait = until.saturating_duration_since(Instant::now());
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0 || wait.is_zero());
        let message = format!("route `{route_name}`: every target is unavailable (circuit open); retry in {retry_after}s");
        let body = error_with_attempts(&message, "all_targets_unavailable", &[]);
        let retry_after = retry_after.to_string();
        self.meta.write_answer(
            out,
            503,
            b"application/json",
            &body,
            &[("retry-after", retry_after.as_bytes())],
        );
        write_out(client, out).await?;
        Ok(503)
    }
}

pub(super) fn error_with_attempts(message: &str, code: &str, attempts: &[AttemptLog]) -> Vec<u8> {
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
