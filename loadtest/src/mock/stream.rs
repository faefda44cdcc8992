//! Streamed chat answers: SSE events written and flushed one at a time, with the
//! stream faults (stall, reset, error event, malformed event, missing `[DONE]`)
//! applied at their event index.

use std::io;
use std::time::Duration;

use monoio::io::CancelableAsyncReadRent;

use super::conn::{Conn, Next};
use super::openai::{self, Answer, StreamEvent};
use super::state::Shared;
use super::wire::{self, Framing, Head};
use super::Fault;

impl Conn {
    /// Writes a streamed answer event by event, applying stream faults.
    pub(super) async fn stream_answer(
        &mut self,
        answer: &Answer,
        fault: &Fault,
        keep_alive: bool,
    ) -> Next {
        Shared::count(&self.shared().streams);
        let settings = self.local.shared.settings.clone();
        let head = Head {
            status: 200,
            content_type: "text/event-stream",
            framing: Framing::Chunked,
            keep_alive,
            provider: &settings.name,
            retry_after: None,
        };
        self.out.clear();
        wire::write_head(&mut self.out, &head);
        let mut malformed_sent = false;
        let mut n = 0;
        loop {
            if let Some(next) = self.stream_fault(fault, n, &mut malformed_sent).await {
                return next;
            }
            let Some(event) = answer.event(n) else { break };
            if event == StreamEvent::Done && *fault == Fault::NoDone {
                Shared::count(&self.shared().faults_injected);
                break;
            }
            if n > 0 && !settings.chunk_delay.is_zero() {
                monoio::time::sleep(settings.chunk_delay).await;
            }
            self.scratch.clear();
            answer.write_event(&mut self.scratch, event, &settings.name, settings.created);
            if self.send_chunk().await.is_err() {
                return Next::Close;
            }
            n += 1;
        }
        wire::write_last_chunk(&mut self.out);
        self.send_whole(Duration::ZERO, keep_alive).await
    }

    /// Frames `scratch` as one chunk and writes it (with anything already in `out`).
    async fn send_chunk(&mut self) -> io::Result<()> {
        wire::write_chunk(&mut self.out, &self.scratch);
        self.flush().await
    }

    /// Applies a stream fault due before event `n`; `Some` ends the answer.
    async fn stream_fault(
        &mut self,
        fault: &Fault,
        n: usize,
        malformed_sent: &mut bool,
    ) -> Option<Next> {
        let next = match *fault {
            Fault::Stall { after_chunks } if after_chunks == n => Next::Stall,
            Fault::ResetMidStream { after_chunks } if after_chunks == n => Next::Reset,
            Fault::SseErrorEvent { after_chunks } if after_chunks == n => {
                self.scratch.clear();
                openai::write_sse_error(&mut self.scratch, &self.local.shared.settings.name);
                wire::write_chunk(&mut self.out, &self.scratch);
                wire::write_last_chunk(&mut self.out);
                Next::KeepAlive
            }
            Fault::MalformedEvent { after_chunks } if after_chunks == n && !*malformed_sent => {
                *malformed_sent = true;
                Shared::count(&self.shared().faults_injected);
                self.scratch.clear();
                self.scratch.extend_from_slice(b"data: {not json\n\n");
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
