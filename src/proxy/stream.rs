//! Streaming responses: hold the client's head until the first real content, then
//! relay event by event, and end cleanly whatever the upstream does.
//!
//! Before commit, every upstream problem is an ordinary attempt failure (the client
//! has seen nothing, so the next target answers invisibly). After commit, a failure
//! ends the client's stream with an OpenAI-shaped error event followed by
//! `data: [DONE]`: the official SDKs raise the error event as an `APIError`.
//! Malformed events are dropped and counted; a stream that ends without `[DONE]`
//! after its finish chunk is finalised at once; one cut before it is an error.
//! Events reach the client through its [`Output`]: as they are for OpenAI clients,
//! translated for other dialects.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::downstream::ClientStream;
use crate::http::chunked::{encode_chunk, LAST_CHUNK};
use crate::http::sse::{is_done_marker, write_event_chunk, SseEvent};
use crate::outcome::FailureClass;
use crate::provider::EventSource;
use crate::proxy::anthropic::EventTranslator;
use crate::proxy::continuation::{Aligned, Aligner};
use crate::proxy::respond::Dialect;
use crate::proxy::responses;
use crate::upstream::{BodyError, Response};
use crate::wire::Usage;

/// A string borrowed from the event where it has no escapes (the usual delta),
/// so inspecting an event allocates nothing. (A bare `Cow` field
/// inside an `Option` would always be copied.)
#[derive(Deserialize, Default)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[derive(Deserialize, Default)]
struct ChunkFields<'a> {
    /// Set on Responses API events (`response.output_text.delta`, ...), never on
    /// chat chunks.
    #[serde(default, rename = "type", borrow)]
    event_type: Option<&'a str>,
    #[serde(default, borrow)]
    choices: Choices<'a>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct ChoiceFields<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaFields<'a>>,
    /// Legacy completions carry their text here.
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct DeltaFields<'a> {
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
    #[serde(default, borrow)]
    refusal: Option<Text<'a>>,
    /// Reasoning deltas (DeepSeek, vLLM, OpenRouter): content for commit purposes,
    /// or a long think would pile up in the pre-content hold.
    #[serde(default, borrow)]
    reasoning_content: Option<Text<'a>>,
    #[serde(default, borrow)]
    reasoning: Option<Text<'a>>,
}

/// A chunk's `choices`, folded as they are read: what the relay needs of them,
/// with no list built (one choice's text stays borrowed from the event).
#[derive(Default)]
struct Choices<'a> {
    count: usize,
    text: Cow<'a, str>,
    tool_call: bool,
    reasoning: bool,
    finished: bool,
}

impl<'a> Choices<'a> {
    fn add(&mut self, choice: ChoiceFields<'a>) {
        self.count += 1;
        self.finished |= choice.finish_reason.is_some();
        self.push_text(choice.text);
        let Some(delta) = choice.delta else { return };
        let non_empty = |s: &Option<Text>| s.as_deref().is_some_and(|s| !s.is_empty());
        self.tool_call |= delta.tool_calls.is_some();
        self.reasoning |= non_empty(&delta.refusal)
            || non_empty(&delta.reasoning_content)
            || non_empty(&delta.reasoning);
        self.push_text(delta.content);
    }

    fn push_text(&mut self, text: Option<Text<'a>>) {
        let Some(Text(text)) = text else { return };
        if self.text.is_empty() {
            self.text = text;
        } else {
            self.text.to_mut().push_str(&text);
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Choices<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fold<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de> serde::de::Visitor<'de> for Fold<'de> {
            type Value = Choices<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut choices = Choices::default();
                while let Some(choice) = seq.next_element::<ChoiceFields<'de>>()? {
                    choices.add(choice);
                }
                Ok(choices)
            }
        }
        deserializer.deserialize_seq(Fold(std::marker::PhantomData))
    }
}

/// What one upstream event means for the relay. Text is borrowed from the event
/// where it can be ([`EventKind::into_owned`] for one that outlives it).
#[derive(Debug, PartialEq)]
pub enum EventKind<'a> {
    Done,
    Error,
    Malformed,
    /// Carries text content, or finishes a choice.
    Content {
        text: Cow<'a, str>,
        finished: bool,
    },
    /// Carries a piece of a tool call (and no text). Held before commit until the
    /// calls are complete; never continued as prose after commit.
    ToolCall {
        finished: bool,
    },
    /// Carries reasoning or a refusal (and no text): content the client sees, which
    /// a continuation could not reproduce.
    Reasoning,
    /// A chunk with only usage (the `include_usage` chunk).
    UsageOnly(Usage),
    /// A complete tool call in a stream that ends with its own event (the
    /// Responses API's `response.output_item.done` for a function call): commits,
    /// but does not end the stream.
    ToolCallDone,
    /// The stream's own last event (the Responses API's `response.completed` or
    /// `response.incomplete`), with the usage it reports: relayed, and the stream
    /// may end after it.
    Finished {
        usage: Option<Usage>,
    },
    /// Anything else: a role-only delta, an empty chunk.
    Empty {
        usage: Option<Usage>,
    },
}

impl EventKind<'_> {
    /// The same meaning, owning its text.
    pub fn into_owned(self) -> EventKind<'static> {
        match self {
            EventKind::Content { text, finished } => EventKind::Content {
                text: Cow::Owned(text.into_owned()),
                finished,
            },
            EventKind::Done => EventKind::Done,
            EventKind::Error => EventKind::Error,
            EventKind::Malformed => EventKind::Malformed,
            EventKind::ToolCall { finished } => EventKind::ToolCall { finished },
            EventKind::Reasoning => EventKind::Reasoning,
            EventKind::UsageOnly(usage) => EventKind::UsageOnly(usage),
            EventKind::ToolCallDone => EventKind::ToolCallDone,
            EventKind::Finished { usage } => EventKind::Finished { usage },
            EventKind::Empty { usage } => EventKind::Empty { usage },
        }
    }
}

pub fn inspect(event: &SseEvent) -> EventKind<'_> {
    if is_done_marker(&event.data) {
        return EventKind::Done;
    }
    if event.event.as_deref() == Some("error") {
        return EventKind::Error;
    }
    let Ok(fields) = serde_json::from_str::<ChunkFields>(&event.data) else {
        return EventKind::Malformed;
    };
    if let Some(event_type) = fields
        .event_type
        .filter(|t| t.starts_with("response.") || *t == "error")
    {
        return inspect_responses_event(event_type, &event.data);
    }
    if fields.error.is_some() {
        return EventKind::Error;
    }
    let choices = fields.choices;
    if !choices.text.is_empty() {
        return EventKind::Content {
            text: choices.text,
            finished: choices.finished,
        };
    }
    if choices.tool_call {
        return EventKind::ToolCall {
            finished: choices.finished,
        };
    }
    if choices.reasoning {
        return EventKind::Reasoning;
    }
    if choices.finished {
        return EventKind::Content {
            text: Cow::Borrowed(""),
            finished: true,
        };
    }
    match (choices.count == 0, fields.usage) {
        (true, Some(usage)) => EventKind::UsageOnly(usage),
        (_, usage) => EventKind::Empty { usage },
    }
}

/// What a Responses API event (passed through natively) means for the relay.
fn inspect_responses_event<'a>(event_type: &str, data: &'a str) -> EventKind<'a> {
    #[derive(Deserialize, Default)]
    struct Fields<'a> {
        #[serde(default, borrow)]
        delta: Option<Text<'a>>,
        #[serde(default)]
        item: Option<Item>,
        #[serde(default)]
        response: Option<ResponseFields>,
    }
    #[derive(Deserialize, Default)]
    struct Item {
        #[serde(default, rename = "type")]
        kind: String,
    }
    #[derive(Deserialize, Default)]
    struct ResponseFields {
        #[serde(default)]
        usage: Option<crate::wire::usage::ReportedUsage>,
    }
    let Ok(fields) = serde_json::from_str::<Fields<'a>>(data) else {
        return EventKind::Malformed;
    };
    let is_call = |item: &Option<Item>| item.as_ref().is_some_and(|i| i.kind != "message");
    match event_type {
        "error" | "response.failed" => EventKind::Error,
        "response.output_text.delta" => EventKind::Content {
            text: fields.delta.unwrap_or_default().0,
            finished: false,
        },
        "response.completed" | "response.incomplete" => EventKind::Finished {
            usage: fields.response.and_then(|r| r.usage).map(Usage::from),
        },
        "response.output_item.done" if is_call(&fields.item) => EventKind::ToolCallDone,
        "response.output_item.added" if is_call(&fields.item) => {
            EventKind::ToolCall { finished: false }
        }
        t if t.ends_with("arguments.delta") => EventKind::ToolCall { finished: false },
        t if t.starts_with("response.reasoning") || t.starts_with("response.refusal") => {
            EventKind::Reasoning
        }
        _ => EventKind::Empty { usage: None },
    }
}

/// An upstream stream that produced its first content and waits to be committed.
pub struct Held {
    pub response: Response,
    parser: Box<dyn EventSource>,
    /// Events received before commit, in order, already inspected.
    pending: Vec<(SseEvent, EventKind<'static>)>,
    scratch: Vec<u8>,
}

/// Why a stream could not be committed (before any client byte).
#[derive(Debug)]
pub struct HoldFailure {
    pub class: FailureClass,
    pub reason: String,
    /// The error event's data when the provider sent one.
    pub error_data: Option<String>,
    /// The events held before content passed the stream buffer cap.
    pub overflowed: bool,
}

/// How a stream is held before commit.
#[derive(Debug, Clone, Copy)]
pub struct HoldPolicy {
    /// Bounds time to first token.
    pub first_content_deadline: Instant,
    /// Once a tool call is arriving (held until complete), each read waits at
    /// most this long, never past `deadline` (the request's).
    pub between_chunks: Duration,
    pub deadline: Instant,
    /// Commit on the first content event (else on the first event of any kind).
    pub until_content: bool,
    /// Most bytes of events held before the first content.
    pub max_held_bytes: usize,
}

/// Reads until the first content event (or, without `until_content`, the first
/// event). Tool calls do not commit until they are complete (the choice
/// finishes), so a stream cut inside a call fails before the client saw it and the
/// next target serves the request. Events held on the way are capped: a provider
/// that floods empty events fails the attempt instead of filling the shard's
/// memory.
pub async fn hold(
    mut response: Response,
    mut parser: Box<dyn EventSource>,
    policy: HoldPolicy,
) -> Result<Held, HoldFailure> {
    let mut pending = Vec::new();
    let mut held_bytes = 0usize;
    let mut scratch = crate::bufpool::take(crate::bufio::READ_CHUNK);
    let mut calling = false;
    loop {
        scratch.clear();
        let read_by = if calling {
            (Instant::now() + policy.between_chunks).min(policy.deadline)
        } else {
            policy.first_content_deadline
        };
        let more = match response.read_chunk(&mut scratch, read_by).await {
            Ok(more) => more,
            Err(BodyError::Stalled) if calling => {
                return Err(hold_failure(
                    FailureClass::Stall,
                    "stalled inside a tool call, before it was complete",
                ))
            }
            Err(BodyError::Stalled) => {
                return Err(hold_failure(
                    FailureClass::FirstByteTimeout,
                    "no content before the first-byte deadline",
                ))
            }
            Err(e) => return Err(hold_failure(FailureClass::Server, &e.to_string())),
        };
        parser.push(&scratch);
        while let Some(event) = parser.next_event() {
            let event = event.map_err(|e| hold_failure(FailureClass::Server, &e.to_string()))?;
            let Some((event, kind, commit)) = screen(event, &policy, &mut held_bytes)? else {
                continue;
            };
            calling |= matches!(kind, EventKind::ToolCall { .. });
            pending.push((event, kind));
            if commit {
                return Ok(Held {
                    response,
                    parser,
                    pending,
                    scratch,
                });
            }
        }
        if !more {
            return Err(hold_failure(
                FailureClass::Server,
                "stream ended before any content",
            ));
        }
    }
}

/// One event seen before commit: the attempt's failure, `None` to skip it, or the
/// event to hold and whether it commits the stream. Held events count against the
/// policy's cap.
fn screen(
    event: SseEvent,
    policy: &HoldPolicy,
    held_bytes: &mut usize,
) -> Result<Option<(SseEvent, EventKind<'static>, bool)>, HoldFailure> {
    // Held events outlive the read they came in: their meaning owns its text.
    let kind = inspect(&event).into_owned();
    match kind {
        EventKind::Error => {
            return Err(HoldFailure {
                error_data: Some(event.data),
                ..hold_failure(FailureClass::Server, "error event before any content")
            })
        }
        EventKind::Malformed => return Ok(None),
        EventKind::Done => {
            return Err(hold_failure(
                FailureClass::Server,
                "stream finished without any content",
            ))
        }
        _ => {}
    }
    *held_bytes += event.data.len() + event.event.as_ref().map_or(0, String::len);
    if *held_bytes > policy.max_held_bytes {
        return Err(HoldFailure {
            overflowed: true,
            ..hold_failure(
                FailureClass::Server,
                "events before the first content passed limits.max_stream_buffer_bytes",
            )
        });
    }
    let commit = match kind {
        EventKind::Content { .. }
        | EventKind::Reasoning
        | EventKind::ToolCallDone
        | EventKind::Finished { .. } => true,
        EventKind::ToolCall { finished } => finished,
        _ => false,
    } || !policy.until_content;
    Ok(Some((event, kind, commit)))
}

fn hold_failure(class: FailureClass, reason: &str) -> HoldFailure {
    HoldFailure {
        class,
        reason: reason.to_string(),
        error_data: None,
        overflowed: false,
    }
}

/// How a committed stream ended.
#[derive(Debug, PartialEq)]
pub enum StreamEnd {
    /// `[DONE]` (ours or the provider's) was sent.
    Completed,
    /// The upstream failed after commit; the client got an error event.
    Failed { class: FailureClass, reason: String },
    /// A continuation did not follow the partial answer: nothing of it was sent.
    Misaligned,
    /// Writing to the client failed: it went away.
    ClientGone,
}

/// What a relay learned on the way, for accounting and continuation.
#[derive(Debug, Default)]
pub struct StreamStats {
    pub usage: Option<Usage>,
    pub dropped_events: u64,
    /// Content text relayed so far, kept only for continuation and only up to
    /// [`RelayPolicy::keep_text`] bytes.
    pub text: String,
    /// The text passed its cap and was dropped: this stream cannot be continued.
    pub text_overflowed: bool,
    /// A tool call, reasoning or a refusal reached the client: no continuation
    /// could pick it up faithfully.
    pub unrepeatable: bool,
    /// `id` and `model` of the first chunk the client saw.
    pub id: Option<String>,
    pub model: Option<String>,
    /// How events are written for this client (with any translation state).
    pub output: Output,
}

/// How relayed events are written to the client: OpenAI chunks as they are, or
/// translated into another dialect's events by a translator that lives as long as
/// the client's stream (continuations included).
#[derive(Debug, Default)]
pub enum Output {
    #[default]
    OpenAi,
    Anthropic(Box<EventTranslator>),
    Responses(Box<responses::EventTranslator>),
    /// Events already in the client's dialect (a Responses stream passed through):
    /// relayed as they are, names included, with no end marker of ours.
    Native,
}

impl Output {
    /// The output for a new client stream in `dialect` (`echo`: what a
    /// Responses stream's response object repeats of the request).
    pub fn for_dialect(dialect: Dialect, echo: Option<&responses::Echo>) -> Output {
        match dialect {
            Dialect::OpenAi => Output::OpenAi,
            Dialect::Anthropic => Output::Anthropic(Box::default()),
            Dialect::Responses => Output::Responses(Box::new(responses::EventTranslator::new(
                echo.cloned().unwrap_or_default(),
            ))),
        }
    }

    /// Sends one relayed chunk event on (`data` already rewritten if need be).
    fn event(&mut self, out: &mut Vec<u8>, frame: &mut Vec<u8>, name: Option<&str>, data: &str) {
        match self {
            Output::OpenAi | Output::Native => write_event_chunk(out, frame, name, data),
            Output::Anthropic(translator) => {
                frame.clear();
                translator.chunk(data, frame);
                if !frame.is_empty() {
                    encode_chunk(frame, out);
                }
            }
            Output::Responses(translator) => {
                frame.clear();
                translator.chunk(data, frame);
                if !frame.is_empty() {
                    encode_chunk(frame, out);
                }
            }
        }
    }

    /// Ends a completed stream (`data: [DONE]` for OpenAI clients).
    fn done(&mut self, out: &mut Vec<u8>, frame: &mut Vec<u8>, usage: Option<Usage>) {
        match self {
            Output::OpenAi => write_event_chunk(out, frame, None, "[DONE]"),
            Output::Native => {}
            Output::Anthropic(translator) => {
                frame.clear();
                translator.done(usage, frame);
                if !frame.is_empty() {
                    encode_chunk(frame, out);
                }
            }
            Output::Responses(translator) => {
                frame.clear();
                translator.done(usage, frame);
                if !frame.is_empty() {
                    encode_chunk(frame, out);
                }
            }
        }
    }
}

/// Relay settings.
pub struct RelayPolicy<'a> {
    pub between_chunks: Duration,
    pub deadline: Instant,
    /// Forward the provider's usage-only chunk (the client asked for it).
    pub forward_usage: bool,
    /// Set when relaying a continuation into a stream the client already holds.
    pub rewrite: Option<Rewrite>,
    /// Keep the relayed text (for continuation) up to this many bytes; `None` when
    /// continuation is off, so nothing is kept.
    pub keep_text: Option<usize>,
    /// The shard's drain deadline once shutdown began: a stream still open then
    /// ends with a clean error event instead of being cut.
    pub draining: &'a std::cell::Cell<Option<Instant>>,
}

impl RelayPolicy<'_> {
    /// How long the next upstream read may wait.
    fn read_deadline(&self) -> Instant {
        let mut deadline = self.deadline.min(Instant::now() + self.between_chunks);
        if let Some(drain) = self.draining.get() {
            deadline = deadline.min(drain);
        }
        deadline
    }

    /// Why a read that ran into its deadline ended the stream.
    fn read_failure(&self, error: BodyError) -> StreamEnd {
        let now = Instant::now();
        let shutting_down = self.draining.get().is_some_and(|drain| now >= drain);
        match error {
            BodyError::Stalled if shutting_down => StreamEnd::Failed {
                class: FailureClass::Local,
                reason: "the gateway is shutting down".into(),
            },
            e => read_failure(e, self.deadline),
        }
    }
}

/// How a continuation's chunks are made to look like the stream they continue:
/// the original `id` and `model`, usage summed, and a marker saying who continued.
pub struct Rewrite {
    pub id: String,
    pub model: String,
    pub marker: serde_json::Value,
    /// Usage of the stream being continued, added to the continuation's.
    pub base_usage: Option<Usage>,
}

impl Rewrite {
    fn apply(&self, data: &str, usage: Option<Usage>, text: Option<&str>) -> String {
        let Ok(serde_json::Value::Object(mut chunk)) =
            serde_json::from_str::<serde_json::Value>(data)
        else {
            return data.to_string();
        };
        if let Some(text) = text {
            let delta = chunk
                .get_mut("choices")
                .and_then(|c| c.get_mut(0))
                .and_then(|c| c.get_mut("delta"))
                .and_then(serde_json::Value::as_object_mut);
            if let Some(delta) = delta {
                delta.insert("content".into(), text.into());
            }
        }
        chunk.insert("id".into(), self.id.clone().into());
        chunk.insert("model".into(), self.model.clone().into());
        chunk.insert("x_switchyard".into(), self.marker.clone());
        if let Some(total) = usage {
            chunk.insert(
                "usage".into(),
                serde_json::json!({
                    "prompt_tokens": total.prompt_tokens,
                    "completion_tokens": total.completion_tokens,
                    "total_tokens": total.prompt_tokens.saturating_add(total.completion_tokens),
                }),
            );
        }
        serde_json::Value::Object(chunk).to_string()
    }

    /// Counts come from providers: sums saturate rather than overflow.
    fn sum(&self, usage: Usage) -> Usage {
        let base = self.base_usage.unwrap_or_default();
        Usage {
            prompt_tokens: base.prompt_tokens.saturating_add(usage.prompt_tokens),
            completion_tokens: base
                .completion_tokens
                .saturating_add(usage.completion_tokens),
        }
    }
}

#[derive(Deserialize)]
struct Identity {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

/// Relays a committed stream to `client`. `out` already holds the response head.
/// A continuation's text goes through `aligner` before any of it is sent.
pub async fn relay(
    held: Held,
    client: &mut ClientStream,
    out: Vec<u8>,
    policy: &RelayPolicy<'_>,
    stats: &mut StreamStats,
    aligner: Option<Aligner>,
) -> (StreamEnd, Vec<u8>) {
    let Held {
        response,
        parser,
        pending,
        scratch,
    } = held;
    let mut upstream = Upstream {
        response,
        parser,
        scratch,
    };
    let mut relaying = Relaying {
        out,
        // Only events of more than one line are assembled here first.
        frame: Vec::new(),
        finished: false,
        aligner,
        template: None,
    };
    let mut end = pending.into_iter().find_map(|(event, kind)| {
        let end = apply(&event, kind, &mut relaying, policy, stats);
        upstream.parser.recycle(event);
        end
    });
    // Events that arrived in the same read as the first content are still in the
    // parser: relay them now, not after the next read (which may never come).
    if end.is_none() {
        end = drain(upstream.parser.as_mut(), &mut relaying, policy, stats);
    }
    if end.is_none() {
        // `None` still: the client went away.
        end = pump(&mut upstream, client, &mut relaying, policy, stats).await;
    }
    let Upstream {
        response, scratch, ..
    } = upstream;
    crate::bufpool::give(scratch);
    match end {
        Some(end) => finish(end, client, relaying.out, response).await,
        None => (StreamEnd::ClientGone, relaying.out),
    }
}

/// The provider's side of one relay: its response, the event parser over it, and
/// the buffer each read lands in.
struct Upstream {
    response: Response,
    parser: Box<dyn EventSource>,
    scratch: Vec<u8>,
}

/// The client's side of one relay: the bytes to write next, a scratch frame, and
/// whether the provider's final chunk has been seen.
struct Relaying {
    out: Vec<u8>,
    frame: Vec<u8>,
    finished: bool,
    /// A continuation's alignment check (see [`crate::proxy::continuation`]).
    aligner: Option<Aligner>,
    /// The last text event held by the aligner, the shape of what it releases
    /// when the stream ends.
    template: Option<SseEvent>,
}

/// Writes what is pending, reads the next upstream chunk, relays its events,
/// until one ends the stream; `None` when the client is gone.
async fn pump(
    upstream: &mut Upstream,
    client: &mut ClientStream,
    relaying: &mut Relaying,
    policy: &RelayPolicy<'_>,
    stats: &mut StreamStats,
) -> Option<StreamEnd> {
    loop {
        let (written, returned) = client.write_all(std::mem::take(&mut relaying.out)).await;
        relaying.out = returned;
        relaying.out.clear();
        written.ok()?;
        let Upstream {
            response,
            parser,
            scratch,
        } = upstream;
        scratch.clear();
        let more = match response.read_chunk(scratch, policy.read_deadline()).await {
            Ok(more) => more,
            Err(e) => return Some(policy.read_failure(e)),
        };
        parser.push(scratch);
        if let Some(end) = drain(parser.as_mut(), relaying, policy, stats) {
            return Some(end);
        }
        if more {
            continue;
        }
        if !relaying.finished {
            return Some(StreamEnd::Failed {
                class: FailureClass::MidStream,
                reason: "stream ended before its final chunk".into(),
            });
        }
        // Finished cleanly but without `[DONE]`: finalise for the client now.
        stats
            .output
            .done(&mut relaying.out, &mut relaying.frame, stats.usage);
        return Some(StreamEnd::Completed);
    }
}

/// Appends the client's copy of every complete event the parser holds; returns
/// how the stream ends when one of them ends it.
fn drain(
    parser: &mut dyn EventSource,
    relaying: &mut Relaying,
    policy: &RelayPolicy<'_>,
    stats: &mut StreamStats,
) -> Option<StreamEnd> {
    while let Some(event) = parser.next_event() {
        let Ok(event) = event else {
            return Some(StreamEnd::Failed {
                class: FailureClass::MidStream,
                reason: "unreadable event stream".into(),
            });
        };
        let kind = inspect(&event);
        if let Some(end) = apply(&event, kind, relaying, policy, stats) {
            return Some(end);
        }
        parser.recycle(event);
    }
    None
}

/// Appends the client's copy of one event to `out`; returns how the stream ends
/// when this event ends it.
fn apply(
    event: &SseEvent,
    kind: EventKind,
    relaying: &mut Relaying,
    policy: &RelayPolicy<'_>,
    stats: &mut StreamStats,
) -> Option<StreamEnd> {
    let aligning = relaying.aligner.as_ref().is_some_and(|a| !a.decided());
    match kind {
        EventKind::Done => {
            if aligning {
                if let Some(end) = release_held(relaying, policy, stats) {
                    return Some(end);
                }
            }
            let Relaying { out, frame, .. } = relaying;
            stats.output.done(out, frame, stats.usage);
            Some(StreamEnd::Completed)
        }
        EventKind::Error => Some(StreamEnd::Failed {
            class: FailureClass::MidStream,
            reason: format!(
                "provider sent an error event mid-stream: {}",
                truncate(&event.data, 300)
            ),
        }),
        EventKind::Malformed => {
            stats.dropped_events += 1;
            None
        }
        EventKind::UsageOnly(usage) => {
            usage_only(event, usage, aligning, relaying, policy, stats);
            None
        }
        EventKind::Content { text, finished } => {
            content(event, text, finished, relaying, policy, stats)
        }
        // Neither is text a continuation could pick up again after it.
        EventKind::ToolCall { .. } | EventKind::ToolCallDone | EventKind::Reasoning if aligning => {
            Some(StreamEnd::Misaligned)
        }
        EventKind::Finished { usage } => {
            stats.usage = usage.or(stats.usage);
            relaying.finished = true;
            forward(event, None, None, relaying, policy, stats);
            None
        }
        EventKind::ToolCall { .. } | EventKind::ToolCallDone | EventKind::Reasoning => {
            stats.unrepeatable = true;
            relaying.finished |= matches!(kind, EventKind::ToolCall { finished: true });
            forward(event, None, None, relaying, policy, stats);
            None
        }
        EventKind::Empty { usage } => {
            empty(event, usage, aligning, relaying, policy, stats);
            None
        }
    }
}

/// An event with no content (a role delta, an empty chunk, a Responses event
/// that only frames the answer): its usage counted, the event forwarded unless a
/// continuation would repeat it.
fn empty(
    event: &SseEvent,
    usage: Option<Usage>,
    aligning: bool,
    relaying: &mut Relaying,
    policy: &RelayPolicy<'_>,
    stats: &mut StreamStats,
) {
    if let Some(usage) = usage {
        stats.usage = Some(policy.rewrite.as_ref().map_or(usage, |r| r.sum(usage)));
    }
    // A continuation's opening role delta would repeat what the client has.
    if (policy.rewrite.is_none() || usage.is_some()) && !aligning {
        let usage = stats.usage.filter(|_| usage.is_some());
        forward(event, usage, None, relaying, policy, stats);
    }
}

/// The usage-only chunk: counted (summed over a continuation) and forwarded when
/// the client asked for it, unless a continuation is still being checked.
fn usage_only(
    event: &SseEvent,
    usage: Usage,
    aligning: bool,
    relaying: &mut Relaying,
    policy: &RelayPolicy<'_>,
    stats: &mut StreamStats,
) {
    let total = policy.rewrite.as_ref().map_or(usage, |r| r.sum(usage));
    stats.usage = Some(total);
    if policy.forward_usage && !aligning {
        forward(event, Some(total), None, relaying, policy, stats);
    }
}

/// A continuation ended while the aligner still held its text: what it decides
/// now is sent in the shape of the last held event (`Misaligned` ends it).
fn release_held(
    relaying: &mut Relaying,
    policy: &RelayPolicy<'_>,
    stats: &mut StreamStats,
) -> Option<StreamEnd> {
    let aligner = relaying.aligner.as_mut()?;
    let Aligned::Emit(text) = aligner.finish() else {
        return Some(StreamEnd::Misaligned);
    };
    if let (false, Some(template)) = (text.is_empty(), relaying.template.take()) {
        keep_text(stats, &text, policy.keep_text);
        forward(&template, None, Some(&text), relaying, policy, stats);
    }
    None
}

/// One text event. A continuation's text passes the aligner first: held while
/// it may still repeat the partial, then only what follows is sent (in this
/// event's shape), and a continuation that does not follow ends as misaligned.
fn content(
    event: &SseEvent,
    text: Cow<'_, str>,
    done: bool,
    relaying: &mut Relaying,
    policy: &RelayPolicy<'_>,
    stats: &mut StreamStats,
) -> Option<StreamEnd> {
    let text = match relaying.aligner.as_mut() {
        None => text,
        Some(aligner) => {
            let mut verdict = aligner.push(&text);
            if verdict == Aligned::Hold && done {
                verdict = aligner.finish();
            }
            match verdict {
                Aligned::Hold => {
                    relaying.template = Some(event.clone());
                    return None;
                }
                Aligned::Emit(text) => Cow::Owned(text),
                Aligned::Misaligned => return Some(StreamEnd::Misaligned),
            }
        }
    };
    keep_text(stats, &text, policy.keep_text);
    relaying.finished |= done;
    let rewritten = relaying.aligner.is_some().then_some(&*text);
    forward(event, None, rewritten, relaying, policy, stats);
    None
}

/// Adds relayed text to what continuation would need, within its cap; past the cap
/// the text is dropped for good (continuing from a partial copy would repeat or
/// lose part of the answer).
fn keep_text(stats: &mut StreamStats, text: &str, cap: Option<usize>) {
    let Some(cap) = cap else { return };
    if stats.text_overflowed {
        return;
    }
    let needed = stats.text.len() + text.len();
    if needed > cap {
        stats.text_overflowed = true;
        stats.text = String::new();
        return;
    }
    // Grow by doubling from a first KiB (a few words at a time would otherwise
    // reallocate often), but never past the cap: plain doubling would hold up to
    // twice the cap (and briefly three times, while reallocating).
    if needed > stats.text.capacity() {
        let target = needed.max(stats.text.capacity() * 2).max(1024).min(cap);
        stats.text.reserve_exact(target - stats.text.len());
    }
    stats.text.push_str(text);
}

/// Sends one event on to the client, rewritten when continuing a stream (with
/// its text replaced by `text` when the aligner cut it).
fn forward(
    event: &SseEvent,
    usage: Option<Usage>,
    text: Option<&str>,
    relaying: &mut Relaying,
    policy: &RelayPolicy<'_>,
    stats: &mut StreamStats,
) {
    if stats.id.is_none() {
        if let Ok(identity) = serde_json::from_str::<Identity>(&event.data) {
            stats.id = identity.id;
            stats.model = identity.model;
        }
    }
    let Relaying { out, frame, .. } = relaying;
    let name = event.event.as_deref();
    match &policy.rewrite {
        Some(rewrite) => {
            stats
                .output
                .event(out, frame, name, &rewrite.apply(&event.data, usage, text))
        }
        None => stats.output.event(out, frame, name, &event.data),
    }
}

/// How a committed stream ends when reading the upstream body fails. Running into
/// the request's own total deadline is not a provider stall: a slow client (or a
/// long answer) spent the budget.
fn read_failure(error: BodyError, total: Instant) -> StreamEnd {
    match error {
        BodyError::Stalled if Instant::now() >= total => StreamEnd::Failed {
            class: FailureClass::Local,
            reason: "the request's total deadline passed mid-stream".into(),
        },
        BodyError::Stalled => StreamEnd::Failed {
            class: FailureClass::Stall,
            reason: "upstream stalled mid-stream".into(),
        },
        e => StreamEnd::Failed {
            class: FailureClass::MidStream,
            reason: e.to_string(),
        },
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Ends a committed stream after an upstream failure: one error event the SDKs
/// raise (OpenAI: the error chunk then `data: [DONE]`; Anthropic: `event: error`;
/// Responses: `response.failed` then `error`, numbered on from the stream's
/// events), and the last chunk.
pub async fn end_with_error(
    client: &mut ClientStream,
    out: Vec<u8>,
    reason: &str,
    output: &mut Output,
) -> (std::io::Result<()>, Vec<u8>) {
    let mut out = out;
    let mut frame = Vec::with_capacity(256);
    match output {
        Output::OpenAi => {
            write_event_chunk(&mut out, &mut frame, None, &error_event_data(reason));
            write_event_chunk(&mut out, &mut frame, None, "[DONE]");
        }
        Output::Anthropic(_) => {
            crate::proxy::anthropic::stream::error_event(reason, &mut frame);
            encode_chunk(&frame, &mut out);
        }
        Output::Responses(translator) => {
            let message =
                format!("the upstream stream failed after the response started: {reason}");
            translator.error("upstream_stream_interrupted", &message, &mut frame);
            encode_chunk(&frame, &mut out);
        }
        // A stream passed through as it came (the Responses API's): its error
        // event, with the nested `error` the openai SDK raises on.
        Output::Native => {
            let message =
                format!("the upstream stream failed after the response started: {reason}");
            let data = serde_json::json!({
                "type": "error",
                "code": "upstream_stream_interrupted",
                "message": message,
                "param": null,
                "error": {"type": "server_error", "code": "upstream_stream_interrupted", "message": message},
            });
            write_event_chunk(&mut out, &mut frame, Some("error"), &data.to_string());
        }
    }
    out.extend_from_slice(LAST_CHUNK);
    let (written, mut out) = client.write_all(out).await;
    out.clear();
    (written, out)
}

/// The error event sent to the client when its stream fails after commit.
pub fn error_event_data(reason: &str) -> String {
    serde_json::json!({
        "error": {
            "message": format!("the upstream stream failed after the response started: {reason}"),
            "type": "server_error",
            "param": null,
            "code": "upstream_stream_interrupted",
        }
    })
    .to_string()
}

/// Flushes what is buffered. A completed stream is terminated here; a failed one is
/// left open for the caller to continue or to end with [`end_with_error`].
async fn finish(
    end: StreamEnd,
    client: &mut ClientStream,
    mut out: Vec<u8>,
    response: Response,
) -> (StreamEnd, Vec<u8>) {
    if matches!(end, StreamEnd::Completed) {
        out.extend_from_slice(LAST_CHUNK);
    }
    let (written, mut out) = client.write_all(out).await;
    out.clear();
    if matches!(end, StreamEnd::Completed) {
        response.finish();
    }
    match written {
        Err(_) => (StreamEnd::ClientGone, out),
        Ok(()) => (end, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
            id: None,
        }
    }

    /// Legacy completions carry text in `choices[].text`; Responses API events
    /// (passed through natively) are read by their `type`.
    #[test]
    fn inspects_completions_chunks_and_responses_events() {
        let text = r#"{"object":"text_completion","choices":[{"text":"hi","index":0,"finish_reason":null}]}"#;
        assert_eq!(
            inspect(&ev(text)),
            EventKind::Content {
                text: "hi".into(),
                finished: false
            }
        );
        let completed = r#"{"type":"response.completed","sequence_number":9,"response":{"id":"r","usage":{"input_tokens":7,"output_tokens":3,"total_tokens":10}}}"#;
        let usage = Usage {
            prompt_tokens: 7,
            completion_tokens: 3,
        };
        let table = [
            (
                r#"{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"Hel","sequence_number":4}"#,
                EventKind::Content {
                    text: "Hel".into(),
                    finished: false,
                },
            ),
            (
                r#"{"type":"response.created","sequence_number":0,"response":{"id":"r","output":[]}}"#,
                EventKind::Empty { usage: None },
            ),
            (
                r#"{"type":"response.output_item.added","item":{"type":"message","id":"m"}}"#,
                EventKind::Empty { usage: None },
            ),
            (
                r#"{"type":"response.output_item.added","item":{"type":"function_call","id":"f"}}"#,
                EventKind::ToolCall { finished: false },
            ),
            (
                r#"{"type":"response.function_call_arguments.delta","item_id":"f","delta":"{\"a\""}"#,
                EventKind::ToolCall { finished: false },
            ),
            (
                r#"{"type":"response.output_item.done","item":{"type":"function_call","id":"f"}}"#,
                EventKind::ToolCallDone,
            ),
            (
                r#"{"type":"response.output_item.done","item":{"type":"message","id":"m"}}"#,
                EventKind::Empty { usage: None },
            ),
            (
                r#"{"type":"response.reasoning_summary_text.delta","delta":"think"}"#,
                EventKind::Reasoning,
            ),
            (completed, EventKind::Finished { usage: Some(usage) }),
            (
                r#"{"type":"response.failed","response":{"error":{"code":"server_error"}}}"#,
                EventKind::Error,
            ),
            (
                r#"{"type":"error","code":"server_error","message":"boom"}"#,
                EventKind::Error,
            ),
        ];
        for (data, kind) in table {
            assert_eq!(inspect(&ev(data)), kind, "{data}");
        }
        // A chat chunk with a `type` of its own is still a chat chunk.
        let typed = r#"{"type":"chunk","choices":[{"delta":{"content":"x"}}]}"#;
        assert!(matches!(inspect(&ev(typed)), EventKind::Content { .. }));
    }

    #[test]
    fn inspects_openai_chunks() {
        assert_eq!(inspect(&ev("[DONE]")), EventKind::Done);
        assert_eq!(inspect(&ev("{not json")), EventKind::Malformed);
        assert_eq!(
            inspect(&ev(r#"{"error":{"message":"x"}}"#)),
            EventKind::Error
        );
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        assert_eq!(inspect(&ev(role)), EventKind::Empty { usage: None });
        let word = r#"{"choices":[{"index":0,"delta":{"content":"hi "}}]}"#;
        assert_eq!(
            inspect(&ev(word)),
            EventKind::Content {
                text: "hi ".into(),
                finished: false
            }
        );
        let stop = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert_eq!(
            inspect(&ev(stop)),
            EventKind::Content {
                text: "".into(),
                finished: true
            }
        );
        let usage =
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#;
        assert_eq!(
            inspect(&ev(usage)),
            EventKind::UsageOnly(Usage {
                prompt_tokens: 3,
                completion_tokens: 5
            })
        );
        let tools =
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}"#;
        assert_eq!(inspect(&ev(tools)), EventKind::ToolCall { finished: false });
        let thinking = r#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#;
        assert_eq!(inspect(&ev(thinking)), EventKind::Reasoning);
    }

    #[test]
    fn named_error_events_are_errors() {
        let e = SseEvent {
            event: Some("error".into()),
            data: "{}".into(),
            id: None,
        };
        assert_eq!(inspect(&e), EventKind::Error);
    }

    /// Found reviewing sums of provider-reported counts for the property tests:
    /// a continuation's usage added to the continued stream's overflowed on
    /// counts near `u64::MAX` (a panic in debug builds, a wrapped total in release).
    #[test]
    fn continuation_usage_saturates() {
        let huge = Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: u64::MAX,
        };
        let rewrite = Rewrite {
            id: "chatcmpl-1".into(),
            model: "m".into(),
            marker: serde_json::Value::Null,
            base_usage: Some(huge),
        };
        let total = rewrite.sum(Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
        });
        assert_eq!(total, huge);
        let chunk: serde_json::Value =
            serde_json::from_str(&rewrite.apply(r#"{"choices":[]}"#, Some(total), None)).unwrap();
        assert_eq!(chunk["usage"]["total_tokens"], u64::MAX);
    }

    #[test]
    fn error_event_is_openai_shaped() {
        let v: serde_json::Value = serde_json::from_str(&error_event_data("reset")).unwrap();
        assert_eq!(v["error"]["code"], "upstream_stream_interrupted");
        assert!(v["error"]["message"].as_str().unwrap().contains("reset"));
    }
}
