//! Streamed answers in every dialect: events (SSE events, or AWS event-stream
//! frames for Bedrock) written and flushed one at a time, with the stream faults
//! applied at their event index, shaped as the dialect sends them:
//!
//! | fault | OpenAI / Azure | Anthropic | Gemini | Bedrock |
//! |---|---|---|---|---|
//! | `sse_error_event` | `event: error`, `overloaded_error` | `event: error`, `overloaded_error` | `data:` `{"error":{"code":503,..,"status":"UNAVAILABLE"}}` | exception frame, `throttlingException` |
//! | `malformed_event` | `data: {not json` | `event: content_block_delta` + `data: {not json` | `data: {not json` | `contentBlockDelta` frame with payload `{not json` |
//! | `no_done` | no `[DONE]` | no `message_stop` | no `finishReason`/usage on the last chunk | no `messageStop`/`metadata` |
//! | `slow_first_token` | waits before event 1 | waits before event 3 (first delta) | waits before chunk 0 | waits before frame 1 |
//! | `tool_call_cut` | reset before event `2 + after_chunks` | reset before event `3 + after_chunks` | untouched | untouched |
//!
//! Stall and reset strike after `after_chunks` events in every dialect; see
//! [`super::Dialect::after_words`] for where the words fall. `tool_call_cut` strikes
//! only a tool call stream, after `after_chunks` argument chunks.

use std::io;
use std::time::Duration;

use monoio::io::CancelableAsyncReadRent;

use super::anthropic;
use super::bedrock;
use super::completions;
use super::conn::{Conn, Next};
use super::gemini;
use super::openai::{self, Answer};
use super::responses;
use super::state::Shared;
use super::wire::{self, Framing, Head};
use super::Fault;

/// A streamed answer in its dialect.
pub(crate) enum StreamPlan {
    /// OpenAI chat chunks (also Azure OpenAI).
    OpenAi(Answer),
    Anthropic(anthropic::Reply),
    Gemini(gemini::Reply),
    Bedrock(Answer),
    /// The OpenAI Responses API's typed events.
    Responses(responses::Reply),
    /// Legacy text completion chunks.
    Completions(Answer),
}

impl StreamPlan {
    fn content_type(&self) -> &'static str {
        match self {
            StreamPlan::Gemini(reply) if !reply.sse => "application/json",
            StreamPlan::Bedrock(_) => "application/vnd.amazon.eventstream",
            _ => "text/event-stream",
        }
    }

    /// The event that carries the first content (`slow_first_token` waits before it).
    fn first_content_event(&self) -> usize {
        match self {
            StreamPlan::OpenAi(_) | StreamPlan::Bedrock(_) => 1,
            StreamPlan::Anthropic(_) => 3,
            StreamPlan::Gemini(_) | StreamPlan::Completions(_) => 0,
            StreamPlan::Responses(reply) => reply.first_content_event(),
        }
    }

    /// The event that carries argument chunk `k` of a streamed tool call.
    fn argument_event(&self, k: usize) -> Option<usize> {
        match self {
            StreamPlan::OpenAi(answer) => answer.argument_event(k),
            StreamPlan::Anthropic(reply) => reply.argument_event(k),
            StreamPlan::Responses(reply) => reply.argument_event(k),
            StreamPlan::Gemini(_) | StreamPlan::Bedrock(_) | StreamPlan::Completions(_) => None,
        }
    }

    /// Events in the stream; `no_done` leaves out the dialect's end marker.
    fn event_count(&self, no_done: bool) -> usize {
        match self {
            StreamPlan::OpenAi(answer) => answer.event_count(no_done),
            StreamPlan::Anthropic(reply) => reply.event_count(no_done),
            StreamPlan::Gemini(reply) => reply.event_count(),
            StreamPlan::Bedrock(answer) => bedrock::event_count(answer, no_done),
            StreamPlan::Responses(reply) => reply.event_count(no_done),
            StreamPlan::Completions(answer) => completions::event_count(answer, no_done),
        }
    }

    fn write_event(&self, out: &mut Vec<u8>, n: usize, name: &str, created: u64, no_done: bool) {
        match self {
            StreamPlan::OpenAi(answer) => {
                if let Some(event) = answer.event(n) {
                    answer.write_event(out, event, name, created);
                }
            }
            StreamPlan::Anthropic(reply) => reply.write_event(out, n, name),
            StreamPlan::Gemini(reply) => reply.write_event(out, n, name, no_done),
            StreamPlan::Bedrock(answer) => bedrock::write_event(out, answer, n, name),
            StreamPlan::Responses(reply) => reply.write_event(out, n, name, created),
            StreamPlan::Completions(answer) => {
                completions::write_event(out, answer, n, name, created);
            }
        }
    }

    fn write_error_event(&self, out: &mut Vec<u8>, n: usize, name: &str) {
        match self {
            StreamPlan::OpenAi(_) | StreamPlan::Completions(_) => {
                openai::write_sse_error(out, name);
            }
            StreamPlan::Responses(_) => responses::write_error_event(out, n, name),
            StreamPlan::Anthropic(_) => anthropic::write_error_event(out),
            StreamPlan::Gemini(reply) => reply.write_error_event(out, n),
            StreamPlan::Bedrock(_) => bedrock::write_error_event(out, name),
        }
    }

    fn write_malformed(&self, out: &mut Vec<u8>, n: usize) {
        match self {
            StreamPlan::OpenAi(_) | StreamPlan::Completions(_) => {
                out.extend_from_slice(b"data: {not json\n\n");
            }
            StreamPlan::Responses(_) => responses::write_malformed(out),
            StreamPlan::Anthropic(_) => anthropic::write_malformed(out),
            StreamPlan::Gemini(reply) => reply.write_malformed(out, n),
            StreamPlan::Bedrock(_) => bedrock::write_malformed(out),
        }
    }
}

impl Conn {
    /// Writes a streamed answer event by event, applying stream faults.
    pub(super) async fn stream_answer(
        &mut self,
        plan: &StreamPlan,
        fault: &Fault,
        keep_alive: bool,
    ) -> Next {
        Shared::count(&self.shared().streams);
        let settings = self.local.shared.settings.clone();
        let encoding = match fault {
            Fault::Encode { encoding } => {
                Shared::count(&self.shared().faults_injected);
                Some(encoding.as_str())
            }
            _ => None,
        };
        let head = Head {
            status: 200,
            content_type: plan.content_type(),
            framing: Framing::Chunked,
            keep_alive,
            provider: &settings.name,
            retry_after: None,
            extra: encoding.map(|e| ("content-encoding", e)),
            limits: self.limits,
        };
        self.out.clear();
        wire::write_head(&mut self.out, &head);
        let no_done = *fault == Fault::NoDone;
        if no_done {
            Shared::count(&self.shared().faults_injected);
        }
        let events = plan.event_count(no_done);
        let mut malformed_sent = false;
        for n in 0..=events {
            if let Some(next) = self.stream_fault(plan, fault, n, &mut malformed_sent).await {
                return next;
            }
            if n == events {
                break;
            }
            if n > 0 && !settings.chunk_delay.is_zero() {
                monoio::time::sleep(settings.chunk_delay).await;
            }
            if let Fault::SlowFirstToken { ms } = *fault {
                if n == plan.first_content_event() && self.first_token_wait(ms).await.is_err() {
                    return Next::Close;
                }
            }
            self.scratch.clear();
            plan.write_event(
                &mut self.scratch,
                n,
                &settings.name,
                settings.created,
                no_done,
            );
            if let Some(encoding) = encoding {
                super::encode::encode_in_place(encoding, &mut self.scratch);
            }
            if self.send_chunk().await.is_err() {
                return Next::Close;
            }
        }
        wire::write_last_chunk(&mut self.out);
        self.send_whole(Duration::ZERO, keep_alive).await
    }

    /// `slow_first_token`: sends what is pending (the head, for Gemini), then waits.
    async fn first_token_wait(&mut self, ms: u64) -> io::Result<()> {
        Shared::count(&self.shared().faults_injected);
        if !self.out.is_empty() {
            self.flush().await?;
        }
        monoio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }

    /// Frames `scratch` as one chunk and writes it (with anything already in `out`).
    async fn send_chunk(&mut self) -> io::Result<()> {
        wire::write_chunk(&mut self.out, &self.scratch);
        self.flush().await
    }

    /// Applies a stream fault due before event `n`; `Some` ends the answer.
    async fn stream_fault(
        &mut self,
        plan: &StreamPlan,
        fault: &Fault,
        n: usize,
        malformed_sent: &mut bool,
    ) -> Option<Next> {
        let next = match *fault {
            Fault::Stall { after_chunks } if after_chunks == n => Next::Stall,
            Fault::ResetMidStream { after_chunks } if after_chunks == n => Next::Reset,
            Fault::ToolCallCut { after_chunks } if plan.argument_event(after_chunks) == Some(n) => {
                Next::Reset
            }
            Fault::SseErrorEvent { after_chunks } if after_chunks == n => {
                self.scratch.clear();
                plan.write_error_event(&mut self.scratch, n, &self.local.shared.settings.name);
                wire::write_chunk(&mut self.out, &self.scratch);
                wire::write_last_chunk(&mut self.out);
                Next::KeepAlive
            }
            Fault::MalformedEvent { after_chunks } if after_chunks == n && !*malformed_sent => {
                *malformed_sent = true;
                Shared::count(&self.shared().faults_injected);
                self.scratch.clear();
                plan.write_malformed(&mut self.scratch, n);
                return self.send_chunk().await.err().map(|_| Next::Close);
            }
            _ => return None,
        };
        Shared::count(&self.shared().faults_injected);
        match self.flush().await {
            Ok(()) => Some(next),
            Err(_) => Some(Next::Close),
        }
    }

    /// Silence: discard whatever arrives until the peer closes or the mock stops.
    pub(super) async fn stall(&mut self) -> Next {
        let mut buf = std::mem::take(&mut self.rbuf);
        loop {
            buf.clear();
            let (res, back) = self
                .stream
                .cancelable_read(buf, self.local.handle(self.control))
                .await;
            buf = back;
            if !matches!(res, Ok(n) if n > 0) {
                return Next::Close;
            }
        }
    }
}
