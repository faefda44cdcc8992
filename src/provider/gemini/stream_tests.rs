//! Stream translation: a realistic `alt=sse` answer, fed whole and split at every
//! byte boundary, must give the same OpenAI chunks.

use super::*;
use crate::proxy::stream::{inspect, EventKind};

/// What Gemini sends for a short answer ending in a tool call (CRLF framing, as
/// the API uses).
const ANSWER: &str = concat!(
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Let me \"}],\"role\": \"model\"},\"index\": 0}],",
    "\"usageMetadata\": {\"promptTokenCount\": 12,\"totalTokenCount\": 12},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"r1\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"check. \u{1F324}\"}],\"role\": \"model\"},\"index\": 0}],",
    "\"usageMetadata\": {\"promptTokenCount\": 12,\"totalTokenCount\": 12},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"r1\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"get_weather\",\"args\": {\"city\": \"Paris\"}}}],\"role\": \"model\"},",
    "\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 12,\"candidatesTokenCount\": 9,\"totalTokenCount\": 21},",
    "\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"r1\"}\r\n\r\n",
);

fn stamp() -> Stamp {
    Stamp {
        id: "chatcmpl-local".into(),
        created: 1_700_000_000,
    }
}

fn drain(source: &mut GeminiStream, out: &mut Vec<SseEvent>) {
    for _ in 0..1000 {
        match source.next_event() {
            Some(event) => out.push(event.unwrap()),
            None => return,
        }
    }
    panic!("event source did not run dry");
}

fn run(pieces: &[&[u8]]) -> Vec<SseEvent> {
    let mut source = GeminiStream::with_stamp("target-model", stamp());
    let mut events = Vec::new();
    for piece in pieces {
        source.push(piece);
        drain(&mut source, &mut events);
    }
    events
}

fn expected() -> Vec<Value> {
    let chunk = |choices: Value| {
        json!({"id": "chatcmpl-r1", "object": "chat.completion.chunk", "created": 1_700_000_000,
               "model": "gemini-2.0-flash", "choices": choices})
    };
    let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "finish_reason": finish}]);
    let mut usage = chunk(json!([]));
    usage["usage"] = json!({"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21,
        "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}});
    vec![
        chunk(choice(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )),
        chunk(choice(json!({"content": "Let me "}), Value::Null)),
        chunk(choice(json!({"content": "check. \u{1F324}"}), Value::Null)),
        chunk(choice(
            json!({"tool_calls": [{"index": 0, "id": "call_r1_0_0", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
            Value::Null,
        )),
        chunk(choice(json!({}), json!("tool_calls"))),
        usage,
    ]
}

#[test]
fn realistic_answer_translates() {
    let events = run(&[ANSWER.as_bytes()]);
    let (done, chunks) = events.split_last().unwrap();
    assert_eq!(done.data, "[DONE]");
    let chunks: Vec<Value> = chunks
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(chunks, expected());
    let kinds: Vec<EventKind> = events.iter().map(inspect).collect();
    assert_eq!(kinds[0], EventKind::Empty { usage: None });
    assert!(matches!(
        kinds[4],
        EventKind::Content { finished: true, .. }
    ));
    assert!(matches!(kinds[5], EventKind::UsageOnly(_)));
    assert_eq!(kinds[6], EventKind::Done);
}

#[test]
fn every_split_gives_the_same_events() {
    let whole = run(&[ANSWER.as_bytes()]);
    let bytes = ANSWER.as_bytes();
    for split in 0..=bytes.len() {
        let (a, b) = bytes.split_at(split);
        assert_eq!(run(&[a, b]), whole, "split at {split}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&singles), whole);
}

#[test]
fn error_event_is_marked() {
    let data = r#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#;
    let events = run(&[format!("data: {data}\r\n\r\n").as_bytes()]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.as_deref(), Some("error"));
    assert_eq!(inspect(&events[0]), EventKind::Error);
}

#[test]
fn blocked_prompt_finishes_with_content_filter() {
    let data = r#"{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}"#;
    let events = run(&[format!("data: {data}\n\n").as_bytes()]);
    let finish: Value = serde_json::from_str(&events[1].data).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(events.last().unwrap().data, "[DONE]");
    assert_eq!(events.len(), 4);
}

#[test]
fn text_stop_and_later_events_are_ignored() {
    let first = r#"{"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "MAX_TOKENS"}]}"#;
    let events = run(&[format!("data: {first}\n\ndata: {first}\n\n").as_bytes()]);
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data.len(), 4, "{data:?}");
    assert!(data[2].contains("\"finish_reason\":\"length\""));
    assert!(data[1].contains("\"model\":\"target-model\""));
    assert_eq!(data[3], "[DONE]");
}

#[test]
fn malformed_data_is_passed_on_for_the_relay_to_drop() {
    let events = run(&[b"data: {not json\n\n"]);
    assert_eq!(inspect(&events[0]), EventKind::Malformed);
}

/// Every result a source gives for `pieces`, up to and including the first error.
fn results(pieces: &[&[u8]]) -> Vec<Result<SseEvent, SseError>> {
    let mut source = GeminiStream::with_stamp("target-model", stamp());
    let mut out = Vec::new();
    for piece in pieces {
        source.push(piece);
        let budget = 4 * piece.len() + 8;
        for _ in 0..budget {
            match source.next_event() {
                Some(result) => {
                    let failed = result.is_err();
                    out.push(result);
                    if failed {
                        return out;
                    }
                }
                None => break,
            }
        }
    }
    out
}

/// Found by review while writing the property tests: each new candidate index
/// was remembered for good and every event scanned them all, so a stream of
/// distinct indices grew without bound and took quadratic time. Past
/// `MAX_CANDIDATES` the stream now ends with a typed error, after the events
/// already translated, and says nothing more.
#[test]
fn too_many_candidates_end_the_stream() {
    let mut stream = String::new();
    for index in 0..=MAX_CANDIDATES {
        stream.push_str(&format!(
            "data: {{\"candidates\": [{{\"index\": {index}, \"content\": {{\"parts\": [{{\"text\": \"x\"}}]}}}}]}}\n\n"
        ));
    }
    stream.push_str("data: {\"candidates\": [{\"index\": 0, \"finishReason\": \"STOP\"}]}\n\n");
    let out = results(&[stream.as_bytes()]);
    let (last, events) = out.split_last().unwrap();
    assert_eq!(
        last,
        &Err(SseError::TooMany {
            what: "candidates",
            limit: MAX_CANDIDATES
        })
    );
    // A role delta and a text delta for each candidate that fit.
    assert_eq!(events.len(), 2 * MAX_CANDIDATES);
    assert!(events.iter().all(Result::is_ok));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn event() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            "\\PC{0,6}".prop_map(|t| json!({ "text": t })),
            "[a-z]{0,4}".prop_map(|n| json!({"functionCall": {"name": n, "args": {"a": 1}}})),
        ];
        let candidate = (
            prop::option::of(0u32..3),
            prop::collection::vec(part, 0..3),
            prop::option::of(prop::sample::select(vec!["STOP", "MAX_TOKENS", "SAFETY"])),
        )
            .prop_map(|(index, parts, finish)| {
                json!({"index": index, "content": {"parts": parts}, "finishReason": finish})
            });
        prop_oneof![
            6 => (prop::collection::vec(candidate, 0..3), any::<bool>(), any::<bool>()).prop_map(
                |(candidates, usage, id)| {
                    let mut answer = json!({ "candidates": candidates });
                    if usage {
                        answer["usageMetadata"] = json!({"promptTokenCount": 3, "candidatesTokenCount": 4});
                    }
                    if id {
                        answer["responseId"] = json!("r1");
                    }
                    answer.to_string()
                }
            ),
            1 => Just(r#"{"error": {"code": 503, "message": "busy"}}"#.to_owned()),
            1 => Just(r#"{"promptFeedback": {"blockReason": "SAFETY"}}"#.to_owned()),
            1 => "\\PC{0,8}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// With a fixed stamp the translation is deterministic: split anywhere,
        /// the same results as fed whole.
        #[test]
        fn split_anywhere_gives_the_same_results(
            events in prop::collection::vec(event(), 0..8),
            cuts in prop::collection::vec(any::<usize>(), 0..24),
        ) {
            let wire: String = events.iter().map(|e| format!("data: {e}\r\n\r\n")).collect();
            let bytes = wire.as_bytes();
            let whole = results(&[bytes]);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.extend([0, bytes.len()]);
            points.sort_unstable();
            let pieces: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
            prop_assert_eq!(results(&pieces), whole);
        }
    }
}
