//! One mock connection: read requests in order (keep-alive and pipelining safe),
//! answer each, and apply the current fault on the way out.

use std::io;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{CancelableAsyncReadRent, CancelableAsyncWriteRentExt};
use monoio::net::TcpStream;

use super::control;
use super::dialect::{self, Dialect, ErrorHeader};
use super::openai;
use super::plan::{self, Incoming, Plan};
use super::request::{self, BodyLen, RequestError, RequestHead, Route};
use super::server::Local;
use super::state::Shared;
use super::stream::StreamPlan;
use super::wire::{self, Framing, Head, Limits};
use super::Fault;

const READ_CHUNK: usize = 16 * 1024;

/// How a connection ends, or whether it goes on after an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    KeepAlive,
    Close,
    /// Close with RST (SO_LINGER 0).
    Reset,
    /// Stay silent with the socket open until the peer leaves.
    Stall,
}

/// Where the body of the current request lies.
enum BodyAt {
    Buf(Range<usize>),
    Decoded,
}

/// Why reading a request stopped.
enum ReadError {
    Closed,
    Bad(RequestError),
}

pub(crate) struct Conn {
    pub(super) stream: TcpStream,
    /// A duplicate descriptor of the socket, used only to set SO_LINGER.
    ctl: std::net::TcpStream,
    pub(super) local: Rc<Local>,
    /// Accepted on the control listener: only `/_mock/` routes, never faulted.
    pub(super) control: bool,
    pub(super) rbuf: Vec<u8>,
    pub(super) out: Vec<u8>,
    pub(super) scratch: Vec<u8>,
    decoded: Vec<u8>,
    /// The rate-limit headers of the answer being written.
    pub(super) limits: Limits,
}

/// Serves one connection to its end.
pub(crate) async fn serve(
    stream: TcpStream,
    ctl: std::net::TcpStream,
    local: Rc<Local>,
    control: bool,
) {
    local.live.set(local.live.get() + 1);
    let mut conn = Conn {
        stream,
        ctl,
        local: Rc::clone(&local),
        control,
        rbuf: Vec::with_capacity(READ_CHUNK),
        out: Vec::with_capacity(READ_CHUNK),
        scratch: Vec::new(),
        decoded: Vec::new(),
        limits: Limits::None,
    };
    let mut next = conn.run().await;
    if next == Next::Stall {
        next = conn.stall().await;
    }
    if next == Next::Reset {
        let _ = socket2::SockRef::from(&conn.ctl).set_linger(Some(Duration::ZERO));
    }
    drop(conn);
    local.live.set(local.live.get().saturating_sub(1));
}

impl Conn {
    pub(super) fn shared(&self) -> &Shared {
        &self.local.shared
    }

    async fn run(&mut self) -> Next {
        loop {
            let head = match self.read_head().await {
                Ok(Some(head)) => head,
                Ok(None) | Err(ReadError::Closed) => return Next::Close,
                Err(ReadError::Bad(e)) => return self.reject(&e).await,
            };
            let (at, consumed) = match self.read_body(&head).await {
                Ok(found) => found,
                Err(ReadError::Closed) => return Next::Close,
                Err(ReadError::Bad(e)) => return self.reject(&e).await,
            };
            let next = self.answer(&head, at).await;
            self.rbuf.drain(..consumed);
            if next != Next::KeepAlive || !head.keep_alive {
                return if next == Next::KeepAlive {
                    Next::Close
                } else {
                    next
                };
            }
        }
    }

    /// Reads more bytes into `rbuf`; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let (len, cap) = (self.rbuf.len(), self.rbuf.capacity());
        let buf = std::mem::take(&mut self.rbuf).slice_mut(len..cap);
        let (res, buf) = self
            .stream
            .cancelable_read(buf, self.local.handle(self.control))
            .await;
        self.rbuf = buf.into_inner();
        res
    }

    async fn fill_some(&mut self) -> Result<(), ReadError> {
        match self.fill().await {
            Ok(0) | Err(_) => Err(ReadError::Closed),
            Ok(_) => Ok(()),
        }
    }

    async fn read_head(&mut self) -> Result<Option<RequestHead>, ReadError> {
        loop {
            if !self.rbuf.is_empty() {
                if let Some(head) = request::parse_head(&self.rbuf).map_err(ReadError::Bad)? {
                    return Ok(Some(head));
                }
            }
            match self.fill().await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Reads until the whole body is buffered; returns where it is and how many
    /// bytes of `rbuf` the request used.
    async fn read_body(&mut self, head: &RequestHead) -> Result<(BodyAt, usize), ReadError> {
        let start = head.head_len;
        if head.expect_continue && self.rbuf.len() == start && head.body != BodyLen::Fixed(0) {
            self.out.clear();
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.flush().await.map_err(|_| ReadError::Closed)?;
        }
        match head.body {
            BodyLen::Fixed(len) => {
                self.rbuf
                    .reserve((start + len).saturating_sub(self.rbuf.len()));
                while self.rbuf.len() < start + len {
                    self.fill_some().await?;
                }
                Ok((BodyAt::Buf(start..start + len), start + len))
            }
            BodyLen::Chunked => loop {
                match request::decode_chunked(&self.rbuf[start..], &mut self.decoded) {
                    Ok(Some(used)) => return Ok((BodyAt::Decoded, start + used)),
                    Ok(None) => self.fill_some().await?,
                    Err(e) => return Err(ReadError::Bad(e)),
                }
            },
        }
    }

    /// Answers a request the mock cannot read, then closes.
    async fn reject(&mut self, error: &RequestError) -> Next {
        let status = error.status();
        self.limits = Limits::None;
        self.scratch.clear();
        openai::write_error(
            &mut self.scratch,
            &error.to_string(),
            openai::error_type(status),
        );
        self.whole(status, false, None, None);
        let _ = self.flush().await;
        Next::Close
    }

    /// Frames `scratch` as a whole JSON response into `out`.
    fn whole(
        &mut self,
        status: u16,
        keep_alive: bool,
        retry_after: Option<u64>,
        extra: ErrorHeader,
    ) {
        self.whole_with(status, keep_alive, retry_after, extra);
    }

    /// [`Self::whole`] with any one extra header (not only an error's).
    fn whole_with(
        &mut self,
        status: u16,
        keep_alive: bool,
        retry_after: Option<u64>,
        extra: Option<(&str, &str)>,
    ) {
        self.out.clear();
        let head = Head {
            status,
            content_type: "application/json",
            framing: Framing::Length(self.scratch.len()),
            keep_alive,
            provider: &self.local.shared.settings.name,
            retry_after,
            extra,
            limits: self.limits,
        };
        wire::write_head(&mut self.out, &head);
        self.out.extend_from_slice(&self.scratch);
    }

    pub(super) async fn flush(&mut self) -> io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let handle = self.local.handle(self.control);
        let (res, mut out) =
            CancelableAsyncWriteRentExt::write_all(&mut self.stream, out, handle).await;
        out.clear();
        self.out = out;
        res.map(|_| ())
    }

    async fn answer(&mut self, head: &RequestHead, at: BodyAt) -> Next {
        let body = match &at {
            BodyAt::Buf(range) => &self.rbuf[range.clone()],
            BodyAt::Decoded => &self.decoded[..],
        };
        if head.route.is_control() || self.control {
            self.limits = Limits::None;
            let route = if head.route.is_control() {
                head.route
            } else {
                Route::NotFound
            };
            let (status, apply) =
                control::control_reply(&self.local.shared, route, body, &mut self.scratch);
            return self.send_control(status, head.keep_alive, apply).await;
        }
        let fault = self.local.fault();
        if fault.refuses() {
            Shared::count(&self.shared().faults_injected);
            return Next::Reset;
        }
        let head_bytes = &self.rbuf[..head.head_len];
        let id = self.shared().record(head_bytes, body);
        self.limits = match head.route.dialect() {
            Some(Dialect::Anthropic) => Limits::Anthropic(id),
            _ => Limits::OpenAi(id),
        };
        if let Fault::EchoRequest { status } = *fault {
            Shared::count(&self.local.shared.faults_injected);
            self.scratch.clear();
            let dialect = head.route.dialect().unwrap_or(Dialect::OpenAi);
            let name = &self.local.shared.settings.name;
            let header =
                super::encode::write_echo(dialect, &mut self.scratch, status, head_bytes, name);
            self.whole(status, head.keep_alive, None, header);
            return self.send_whole(Duration::ZERO, head.keep_alive).await;
        }
        let incoming = Incoming {
            route: head.route,
            target: request::target(head_bytes),
            api_key: head.api_key,
            body,
            id,
            continuation: self.shared().continuation(),
            shared: Some(&self.local.shared),
        };
        let plan = match plan::plan(&self.local.shared.settings, &incoming, &mut self.scratch) {
            Plan::Stream(stream) => Some(stream),
            Plan::Whole { status, header } => {
                match &*fault {
                    Fault::Encode { encoding } if header.is_none() => {
                        Shared::count(&self.local.shared.faults_injected);
                        super::encode::encode_in_place(encoding, &mut self.scratch);
                        let label = Some(("content-encoding", encoding.as_str()));
                        self.whole_with(status, head.keep_alive, None, label);
                    }
                    _ => self.whole(status, head.keep_alive, None, header),
                }
                None
            }
        };
        let dialect = head.route.dialect().unwrap_or(Dialect::OpenAi);
        self.deliver(plan, &fault, dialect, head.keep_alive).await
    }

    /// Applies the fault to a planned answer and sends it.
    async fn deliver(
        &mut self,
        plan: Option<StreamPlan>,
        fault: &Fault,
        dialect: Dialect,
        keep_alive: bool,
    ) -> Next {
        let delay = self.delay(fault);
        match fault {
            Fault::ResetOnRequest => return self.injected(Next::Reset),
            Fault::Stall { .. } if plan.is_none() => return self.injected(Next::Stall),
            Fault::Status {
                status,
                rate,
                retry_after,
                body,
                times,
            } if fastrand::f64() < *rate && self.shared().take_status_hit(*times) => {
                Shared::count(&self.shared().faults_injected);
                self.fault_status(dialect, *status, *retry_after, body.as_deref(), keep_alive);
                return self.send_whole(delay, keep_alive).await;
            }
            _ => {}
        }
        match plan {
            Some(answer) => {
                if !delay.is_zero() {
                    monoio::time::sleep(delay).await;
                }
                self.stream_answer(&answer, fault, keep_alive).await
            }
            None => self.send_whole(delay, keep_alive).await,
        }
    }

    fn injected(&self, next: Next) -> Next {
        Shared::count(&self.shared().faults_injected);
        next
    }

    /// The wait before the response head: configured latency plus any brownout.
    fn delay(&self, fault: &Fault) -> Duration {
        let base = self.shared().settings.latency;
        match fault {
            Fault::Latency {
                base: extra,
                jitter,
            } => {
                Shared::count(&self.shared().faults_injected);
                let jitter = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
                base + *extra + Duration::from_nanos(fastrand::u64(0..=jitter))
            }
            _ => base,
        }
    }

    /// Writes an injected status answer in `dialect`'s error shape (or `body`).
    fn fault_status(
        &mut self,
        dialect: Dialect,
        status: u16,
        retry_after: Option<u64>,
        body: Option<&str>,
        keep_alive: bool,
    ) {
        self.scratch.clear();
        let header = dialect::write_error(
            dialect,
            &mut self.scratch,
            status,
            None,
            &self.local.shared.settings.name,
        );
        if let Some(body) = body {
            self.scratch.clear();
            self.scratch.extend_from_slice(body.as_bytes());
        }
        self.whole(status, keep_alive, retry_after, header);
    }

    pub(super) async fn send_whole(&mut self, delay: Duration, keep_alive: bool) -> Next {
        if !delay.is_zero() {
            monoio::time::sleep(delay).await;
        }
        match self.flush().await {
            Ok(()) if keep_alive => Next::KeepAlive,
            _ => Next::Close,
        }
    }

    /// Sends a control answer, then applies its fault (so `refuse` is answered first).
    async fn send_control(&mut self, status: u16, keep_alive: bool, apply: Option<Fault>) -> Next {
        self.whole(status, keep_alive, None, None);
        let next = self.send_whole(Duration::ZERO, keep_alive).await;
        if let Some(fault) = apply {
            self.local.shared.set_fault(fault);
        }
        next
    }
}
