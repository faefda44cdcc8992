//! Each provider's stream decoder (OpenAI/Azure SSE, Anthropic, Gemini, Bedrock's
//! AWS event-stream): realistic streams and plain noise, fed in arbitrary pieces.
//!
//! For every kind: no panic, and draining ends (each answer consumes input, so the
//! number of answers is bounded by the bytes pushed). For the decoders whose
//! output is deterministic: the same events whole or split. For all: every event
//! they emit is well-formed (`[DONE]`, an error event, or JSON when the input was
//! JSON) and no single emitted event is out of proportion to the input.

use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard::config::ProviderKind;
use switchyard::http::{SseError, SseEvent};
use switchyard::provider::anthropic::stream::MessageStream;
use switchyard::provider::bedrock::eventstream::{
    encode, Decoder, FrameError, HeaderValue, Message, MAX_MESSAGE_BYTES,
};
use switchyard::provider::bedrock::stream::ConverseEvents;
use switchyard::provider::{adapter, EventSource};

use crate::json::{apply, edits};
use crate::{cases, damage, pieces};

type Answers = Vec<Result<SseEvent, SseError>>;

/// Feeds `wire` in pieces and drains after each, up to the first error. Every
/// `next_event` that answers consumed input, and each input byte can yield only a
/// few events, so more than `4 * bytes + 8` answers per push means a stuck source.
fn run(source: &mut dyn EventSource, wire: &[u8], cuts: &[usize]) -> Answers {
    let mut got = Vec::new();
    for range in pieces(wire.len(), cuts) {
        let budget = 4 * range.len() + 8;
        source.push(&wire[range]);
        let mut answered = 0;
        while let Some(answer) = source.next_event() {
            answered += 1;
            assert!(answered <= budget, "source kept answering");
            let failed = answer.is_err();
            got.push(answer);
            if failed {
                return got;
            }
        }
    }
    got
}

/// The checks every decoder's output must pass, given the input it came from.
fn check_output(
    answers: &Answers,
    input_len: usize,
    input_was_json: bool,
) -> Result<(), TestCaseError> {
    for event in answers.iter().flatten() {
        // JSON escaping can grow a byte sixfold (`\u0000`); the rest is framing.
        prop_assert!(
            event.data.len() <= 6 * input_len + 1024,
            "event of {} bytes from {}",
            event.data.len(),
            input_len
        );
        let special = event.data == "[DONE]" || event.event.as_deref() == Some("error");
        if input_was_json && !special {
            prop_assert!(
                serde_json::from_str::<Value>(&event.data).is_ok(),
                "not JSON: {}",
                event.data
            );
        }
    }
    Ok(())
}

fn sse(events: &[(Option<String>, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in events {
        if let Some(name) = name {
            out.extend_from_slice(format!("event: {name}\n").as_bytes());
        }
        out.extend_from_slice(format!("data: {data}\n\n").as_bytes());
    }
    out
}

fn index() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..4, 1 => any::<u64>()]
}

fn tokens() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..5000, 1 => any::<u64>()]
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,10}"
}

/// Occasionally damages a well-formed event (type swaps, missing fields).
fn maybe_edited(event: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    (event, prop_oneof![3 => Just(Vec::new()), 1 => edits()]).prop_map(|(mut v, e)| {
        apply(&mut v, &e);
        v
    })
}

fn anthropic_event() -> impl Strategy<Value = (Option<String>, Value)> {
    let event = prop_oneof![
        (text(), text(), tokens(), tokens()).prop_map(|(id, model, i, c)| json!({
            "type": "message_start",
            "message": {"id": id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null,
                "usage": {"input_tokens": i, "output_tokens": 1, "cache_read_input_tokens": c}}
        })),
        (index(), 0u8..3, text()).prop_map(|(index, kind, s)| {
            let block = match kind {
                0 => json!({"type": "text", "text": s}),
                1 => json!({"type": "tool_use", "id": format!("toolu_{s}"), "name": s, "input": {}}),
                _ => json!({"type": "thinking", "thinking": s}),
            };
            json!({"type": "content_block_start", "index": index, "content_block": block})
        }),
        (index(), 0u8..3, text()).prop_map(|(index, kind, s)| {
            let delta = match kind {
                0 => json!({"type": "text_delta", "text": s}),
                1 => json!({"type": "input_json_delta", "partial_json": s}),
                _ => json!({"type": "thinking_delta", "thinking": s}),
            };
            json!({"type": "content_block_delta", "index": index, "delta": delta})
        }),
        index().prop_map(|index| json!({"type": "content_block_stop", "index": index})),
        (prop::sample::select(vec!["end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal", "odd"]), tokens())
            .prop_map(|(reason, out)| json!({
                "type": "message_delta", "delta": {"stop_reason": reason}, "usage": {"output_tokens": out}
            })),
        Just(json!({"type": "message_stop"})),
        Just(json!({"type": "ping"})),
        text().prop_map(|m| json!({"type": "error", "error": {"type": "overloaded_error", "message": m}})),
    ];
    (maybe_edited(event), any::<bool>()).prop_map(|(data, named)| {
        let name = data
            .get("type")
            .and_then(Value::as_str)
            .filter(|_| named)
            .map(str::to_owned);
        (name, data)
    })
}

fn gemini_event() -> impl Strategy<Value = Value> {
    let part = prop_oneof![
        text().prop_map(|t| json!({"text": t})),
        text().prop_map(|t| json!({"text": t, "thought": true})),
        (text(), prop::option::of(text())).prop_map(|(name, id)| json!({
            "functionCall": {"name": name, "args": {"q": 1}, "id": id}
        })),
    ];
    let candidate = (
        prop::option::of(0u32..3),
        prop::collection::vec(part, 0..3),
        prop::option::of(prop::sample::select(vec![
            "STOP",
            "MAX_TOKENS",
            "SAFETY",
            "OTHER",
        ])),
    )
        .prop_map(|(index, parts, finish)| {
            let mut c = json!({"content": {"role": "model", "parts": parts}});
            if let Some(i) = index {
                c["index"] = json!(i);
            }
            if let Some(f) = finish {
                c["finishReason"] = json!(f);
            }
            c
        });
    let answer = (
        prop::collection::vec(candidate, 0..3),
        prop::option::of((tokens(), tokens(), tokens(), tokens())),
        prop::option::of(text()),
        any::<bool>(),
    )
        .prop_map(|(candidates, usage, id, blocked)| {
            let mut a = json!({"candidates": candidates, "modelVersion": "gemini-x"});
            if let Some((p, c, t, total)) = usage {
                a["usageMetadata"] = json!({"promptTokenCount": p, "candidatesTokenCount": c,
                    "thoughtsTokenCount": t, "totalTokenCount": total % 2});
            }
            if let Some(id) = id {
                a["responseId"] = json!(id);
            }
            if blocked {
                a["promptFeedback"] = json!({"blockReason": "SAFETY"});
            }
            a
        });
    let event = prop_oneof![
        6 => answer,
        1 => text().prop_map(|m| json!({"error": {"code": 429, "message": m, "status": "RESOURCE_EXHAUSTED"}})),
    ];
    maybe_edited(event)
}

// ---- AWS event-stream frames, encoded here the way AWS sends them ----

fn encode_headers(headers: &[(String, HeaderValue)]) -> Vec<u8> {
    encode::headers(headers)
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        any::<bool>().prop_map(HeaderValue::Bool),
        any::<i8>().prop_map(HeaderValue::Byte),
        any::<i16>().prop_map(HeaderValue::Short),
        any::<i32>().prop_map(HeaderValue::Int),
        any::<i64>().prop_map(HeaderValue::Long),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(HeaderValue::Bytes),
        "\\PC{0,16}".prop_map(HeaderValue::String),
        any::<i64>().prop_map(HeaderValue::Timestamp),
        any::<[u8; 16]>().prop_map(HeaderValue::Uuid),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        prop::collection::vec(("[:a-z-]{0,12}", header_value()), 0..5),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(headers, payload)| Message { headers, payload })
}

/// A ConverseStream message: an event, an exception or an error, its payload JSON.
fn converse_message() -> impl Strategy<Value = Vec<u8>> {
    let event = prop_oneof![
        Just(("messageStart", json!({"role": "assistant"}))),
        (index(), text(), text()).prop_map(|(i, id, name)| (
            "contentBlockStart",
            json!({
                "contentBlockIndex": i, "start": {"toolUse": {"toolUseId": id, "name": name}}
            })
        )),
        (index(), text()).prop_map(|(i, t)| (
            "contentBlockDelta",
            json!({"contentBlockIndex": i, "delta": {"text": t}})
        )),
        (index(), text()).prop_map(|(i, t)| (
            "contentBlockDelta",
            json!({
                "contentBlockIndex": i, "delta": {"toolUse": {"input": t}}
            })
        )),
        index().prop_map(|i| ("contentBlockStop", json!({"contentBlockIndex": i}))),
        prop::sample::select(vec![
            "end_turn",
            "tool_use",
            "max_tokens",
            "guardrail_intervened"
        ])
        .prop_map(|r| ("messageStop", json!({"stopReason": r}))),
        (tokens(), tokens(), prop::option::of(tokens())).prop_map(|(i, o, t)| (
            "metadata",
            json!({
                "usage": {"inputTokens": i, "outputTokens": o, "totalTokens": t}
            })
        )),
    ];
    let edited = (event, prop_oneof![3 => Just(Vec::new()), 1 => edits()]).prop_map(
        |((kind, mut payload), e)| {
            apply(&mut payload, &e);
            (kind, payload)
        },
    );
    prop_oneof![
        6 => edited.prop_map(|(kind, payload)| {
            let headers = [
                (":event-type".to_owned(), HeaderValue::String(kind.to_owned())),
                (":content-type".to_owned(), HeaderValue::String("application/json".into())),
                (":message-type".to_owned(), HeaderValue::String("event".into())),
            ];
            encode::frame(&encode_headers(&headers), payload.to_string().as_bytes())
        }),
        1 => text().prop_map(|m| {
            let headers = [
                (":exception-type".to_owned(), HeaderValue::String("throttlingException".into())),
                (":message-type".to_owned(), HeaderValue::String("exception".into())),
            ];
            encode::frame(&encode_headers(&headers), json!({"message": m}).to_string().as_bytes())
        }),
        1 => text().prop_map(|m| {
            let headers = [
                (":message-type".to_owned(), HeaderValue::String("error".into())),
                (":error-code".to_owned(), HeaderValue::String("InternalFailure".into())),
                (":error-message".to_owned(), HeaderValue::String(m)),
            ];
            encode::frame(&encode_headers(&headers), b"")
        }),
    ]
}

/// Decodes `wire` in pieces, up to the first error, checking that draining ends
/// (a message is at least 16 bytes), that nothing decoded is larger than the
/// input, and that what the decoder holds after a drain is one incomplete
/// message at most, never more than it was given.
fn decode_frames(wire: &[u8], cuts: &[usize]) -> Vec<Result<Message, FrameError>> {
    let mut decoder = Decoder::new();
    let mut got = Vec::new();
    for range in pieces(wire.len(), cuts) {
        let pushed = range.end;
        decoder.push(&wire[range]);
        for _ in 0..=wire.len() / 16 + 1 {
            match decoder.next_message() {
                None => {
                    let held = decoder.buffered_len();
                    assert!(
                        held <= pushed && held < MAX_MESSAGE_BYTES,
                        "holds {held} of {pushed}"
                    );
                    break;
                }
                Some(Err(e)) => {
                    got.push(Err(e));
                    return got;
                }
                Some(Ok(m)) => {
                    assert!(m.payload.len() <= wire.len());
                    got.push(Ok(m));
                }
            }
        }
    }
    got
}

proptest! {
    #![proptest_config(cases(256))]

    /// Event-stream messages of every header type round-trip through the decoder
    /// whatever the segmentation.
    #[test]
    fn event_stream_messages_survive_any_segmentation(
        messages in prop::collection::vec(message(), 0..5),
        cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let wire: Vec<u8> = messages.iter().flat_map(|m| encode::frame(&encode_headers(&m.headers), &m.payload)).collect();
        let want: Vec<Result<Message, FrameError>> = messages.into_iter().map(Ok).collect();
        prop_assert_eq!(decode_frames(&wire, &cuts), want);
    }

    /// Damaged frames, frames whose header bytes are noise (behind valid CRCs, so
    /// the header decoder sees them) and plain noise: no panic, and the same
    /// messages and first error whole or split.
    #[test]
    fn event_stream_is_split_invariant_on_hostile_input(
        messages in prop::collection::vec(message(), 0..4),
        raw_headers in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 0..3),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        noise in prop::collection::vec(any::<u8>(), 0..96),
        mode in 0u8..3,
        cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let wire: Vec<u8> = match mode {
            0 => {
                let mut wire: Vec<u8> = messages.iter().flat_map(|m| encode::frame(&encode_headers(&m.headers), &m.payload)).collect();
                damage(&mut wire, &edits);
                wire
            }
            1 => raw_headers.iter().flat_map(|h| encode::frame(h, b"{}")).collect(),
            _ => noise,
        };
        let whole = decode_frames(&wire, &[]);
        prop_assert_eq!(decode_frames(&wire, &cuts), whole);
    }

    /// Anthropic streams: the same OpenAI chunks whole or split, all well-formed.
    #[test]
    fn anthropic_stream_is_split_invariant(
        events in prop::collection::vec(anthropic_event(), 0..10),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
    ) {
        let wire = sse(&events);
        let whole = run(&mut MessageStream::new("claude", 7), &wire, &[]);
        let split = run(&mut MessageStream::new("claude", 7), &wire, &cuts);
        prop_assert_eq!(&split, &whole);
        check_output(&whole, wire.len(), true)?;
    }

    /// Bedrock ConverseStream: the same OpenAI chunks whole or split, all well-formed.
    #[test]
    fn bedrock_stream_is_split_invariant(
        messages in prop::collection::vec(converse_message(), 0..10),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
    ) {
        let wire: Vec<u8> = messages.concat();
        let source = || ConverseEvents::new("claude", "chatcmpl-x".into(), 7);
        let whole = run(&mut source(), &wire, &[]);
        let split = run(&mut source(), &wire, &cuts);
        prop_assert_eq!(&split, &whole);
        check_output(&whole, wire.len(), true)?;
    }

    /// Gemini streams (its ids are random per stream, so only well-formedness and
    /// bounds here; split invariance is a unit test with a fixed stamp).
    #[test]
    fn gemini_stream_output_is_well_formed(
        events in prop::collection::vec(gemini_event(), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
    ) {
        let wire = sse(&events.into_iter().map(|e| (None, e)).collect::<Vec<_>>());
        let answers = run(adapter(ProviderKind::Gemini).event_source("gemini").as_mut(), &wire, &cuts);
        check_output(&answers, wire.len(), true)?;
    }

    /// Every kind's decoder on noise and on damaged realistic streams: no panic,
    /// draining ends, nothing emitted out of proportion to the input.
    #[test]
    fn every_decoder_survives_hostile_bytes(
        anthropic in prop::collection::vec(anthropic_event(), 0..6),
        bedrock in prop::collection::vec(converse_message(), 0..6),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        noise in prop::collection::vec(any::<u8>(), 0..128),
        use_noise in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        for kind in [
            ProviderKind::OpenAi,
            ProviderKind::OpenAiCompatible,
            ProviderKind::Azure,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
            ProviderKind::Bedrock,
        ] {
            let mut wire = match (use_noise, kind) {
                (true, _) => noise.clone(),
                (false, ProviderKind::Bedrock) => bedrock.concat(),
                (false, _) => sse(&anthropic),
            };
            damage(&mut wire, &edits);
            let answers = run(adapter(kind).event_source("m").as_mut(), &wire, &cuts);
            check_output(&answers, wire.len(), false)?;
        }
    }
}
