//! Streaming failover, end to end over real sockets: what a streaming client sees
//! when the upstream fails before the first content (nothing: the fallback answers
//! invisibly), after it (an OpenAI-shaped error event and one `[DONE]`, or with
//! `continue_after_commit` the rest of the answer from another target), and the
//! relay's handling of malformed events, missing `[DONE]` and usage chunks.

mod common;

use std::time::{Duration, Instant};

use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::{Continuation, Fault, MockConfig, MockHandle};
use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard::gateway::Gateway;
use switchyard::http::sse::{SseEvent, SseParser};
use switchyard::proxy::continuation::{echo_of, instruction};
use switchyard::proxy::stream::{inspect, EventKind};
use switchyard::wire::Usage;

const PRIMARY: &str = "primary/primary-model";
const FALLBACK: &str = "fallback/fallback-model";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A streaming chat body for model `chat`, optionally asking for the usage chunk.
fn stream_body(include_usage: bool) -> String {
    let mut body: Value = serde_json::from_str(&chat_body("chat", true)).unwrap();
    if include_usage {
        body["stream_options"] = json!({ "include_usage": true });
    }
    body.to_string()
}

/// Sends `body` on a fresh connection and reads the whole response. The read
/// timeout turns a stream that never terminates into a test failure, not a hang.
fn post(gw: &Gateway, body: &str) -> (HttpResponse, Duration, Client) {
    let started = Instant::now();
    let mut client = client(gw);
    client.set_read_timeout(Duration::from_secs(10)).unwrap();
    let response = client
        .chat(body, &[])
        .expect("a complete response (chunked body terminated)");
    (response, started.elapsed(), client)
}

fn post_stream(gw: &Gateway) -> (HttpResponse, Duration) {
    let (response, elapsed, _) = post(gw, &stream_body(false));
    (response, elapsed)
}

/// The full answer text of `mock`, asked directly (not through the gateway).
fn full_text(mock: &MockHandle) -> String {
    let mut client = Client::connect(mock.addr()).expect("connect to mock");
    let response = client
        .chat(&chat_body("direct", false), &[])
        .expect("mock answers");
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

/// What a client made of an event stream.
#[derive(Debug)]
struct Seen {
    /// Every `data:` payload, in order.
    data: Vec<String>,
    /// The JSON payloads other than `[DONE]`, in order.
    chunks: Vec<Value>,
    done: usize,
    /// Index in `data` of each `[DONE]`.
    done_at: Vec<usize>,
    /// Payloads with an `error` member.
    errors: Vec<Value>,
    /// Chunks carrying `delta.role`.
    roles: usize,
    text: String,
}

fn seen(response: &HttpResponse) -> Seen {
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream")),
        "{:?}",
        response.headers
    );
    let data = response.sse_data();
    let mut out = Seen {
        data: data.clone(),
        chunks: Vec::new(),
        done: 0,
        done_at: Vec::new(),
        errors: Vec::new(),
        roles: 0,
        text: response.stream_text(),
    };
    for (i, payload) in data.iter().enumerate() {
        if payload == "[DONE]" {
            out.done += 1;
            out.done_at.push(i);
            continue;
        }
        let value: Value = serde_json::from_str(payload)
            .unwrap_or_else(|e| panic!("client got a non-JSON event {payload:?}: {e}"));
        if value.get("error").is_some() {
            out.errors.push(value.clone());
        }
        if value["choices"][0]["delta"].get("role").is_some() {
            out.roles += 1;
        }
        out.chunks.push(value);
    }
    out
}

/// One clean stream: at most one role delta, exactly `text`, one final `[DONE]`, no error.
fn assert_clean(response: &HttpResponse, text: &str, target: &str) -> Seen {
    let s = seen(response);
    assert_eq!(
        response.header("x-switchyard-target"),
        Some(target),
        "{:?}",
        response.headers
    );
    assert!(s.errors.is_empty(), "error events: {:?}", s.errors);
    assert!(s.roles <= 1, "{} role deltas: {:?}", s.roles, s.data);
    assert_eq!(s.text, text, "{:?}", s.data);
    assert_eq!(s.done, 1, "{:?}", s.data);
    assert_eq!(s.done_at, vec![s.data.len() - 1], "[DONE] is last");
    s
}

/// A stream that broke after commit: `prefix` text, then one error event with the
/// gateway's code, then one `[DONE]`, nothing after. Returns the error message.
fn assert_broken(response: &HttpResponse, prefix: &str) -> String {
    let s = seen(response);
    assert_eq!(s.text, prefix, "{:?}", s.data);
    assert_eq!(s.errors.len(), 1, "{:?}", s.data);
    assert_eq!(s.done, 1, "{:?}", s.data);
    let n = s.data.len();
    assert!(n >= 2, "{:?}", s.data);
    assert_eq!(s.data[n - 1], "[DONE]");
    let error: Value = serde_json::from_str(&s.data[n - 2]).expect("error event is JSON");
    assert_eq!(
        error["error"]["code"], "upstream_stream_interrupted",
        "{error}"
    );
    assert_eq!(error["error"]["type"], "server_error", "{error}");
    error["error"]["message"].as_str().unwrap().to_string()
}

/// The prefix a client has after `after_chunks` events of `mock`'s stream (event 1
/// is the role delta, event `k + 2` carries word `k`), from its full answer text.
fn prefix_after(full: &str, after_chunks: usize) -> String {
    match after_chunks.saturating_sub(1) {
        0 => String::new(),
        words => {
            let next = full.find(&format!(" w{words} ")).expect("word in answer");
            full[..next + 1].to_string()
        }
    }
}

fn two(route_extra: &str) -> (MockHandle, MockHandle, String) {
    let primary = mock("primary");
    let fallback = mock("fallback");
    let yaml = chain_yaml(
        &[("primary", &primary), ("fallback", &fallback)],
        route_extra,
        "",
    );
    (primary, fallback, yaml)
}

fn stop(gw: Gateway, mocks: &[&MockHandle]) {
    gw.shutdown();
    for m in mocks {
        m.shutdown();
    }
}

/// Asserts the connection still carries a following request (the stream was framed
/// completely, so keep-alive survives it).
fn assert_reusable(client: &mut Client) {
    let again = client
        .chat(&chat_body("chat", false), &[])
        .expect("the connection carries a second request");
    assert_eq!(again.status, 200, "{}", again.text());
}

// ---------------------------------------------------------------------------
// 1-3: failures before the first content fall through invisibly
// ---------------------------------------------------------------------------

/// Runs one stream through a primary with `fault` and a healthy fallback and
/// checks the client saw exactly the fallback's clean stream. Returns the time taken.
fn falls_through(fault: Fault, route_extra: &str) -> Duration {
    let (primary, fallback, yaml) = two(route_extra);
    let expected = full_text(&fallback);
    primary.set_fault(fault.clone());
    let gw = gateway(&yaml);
    let (response, elapsed, mut conn) = post(&gw, &stream_body(false));
    let s = assert_clean(&response, &expected, FALLBACK);
    assert_eq!(response.header("x-switchyard-fallback"), Some("true"));
    assert!(
        s.chunks
            .iter()
            .all(|c| c["model"] == "fallback-model" || c.get("choices").is_none()),
        "{:?}",
        s.data
    );
    assert!(
        primary.stats().faults_injected >= 1,
        "{fault:?} not injected"
    );
    assert_reusable(&mut conn);
    stop(gw, &[&primary, &fallback]);
    elapsed
}

#[test]
fn status_503_before_the_stream_falls_through() {
    falls_through(fault_status(503), "retry: { attempts: 1 }");
}

#[test]
fn refused_connection_falls_through() {
    let (primary, fallback, yaml) = two("retry: { attempts: 1 }");
    let expected = full_text(&fallback);
    primary.set_fault(Fault::Refuse);
    let gw = gateway(&yaml);
    let (response, _) = post_stream(&gw);
    assert_clean(&response, &expected, FALLBACK);
    stop(gw, &[&primary, &fallback]);
}

#[test]
fn reset_on_request_falls_through() {
    falls_through(Fault::ResetOnRequest, "retry: { attempts: 1 }");
}

#[test]
fn sse_error_as_the_first_event_falls_through() {
    falls_through(
        Fault::SseErrorEvent { after_chunks: 0 },
        "retry: { attempts: 1 }",
    );
}

#[test]
fn sse_error_after_the_role_delta_falls_through() {
    // The role delta is held (it carries no content), so the error still comes
    // before commit: the client never sees the primary's role delta.
    falls_through(
        Fault::SseErrorEvent { after_chunks: 1 },
        "retry: { attempts: 1 }",
    );
}

#[test]
fn reset_after_the_role_delta_falls_through() {
    falls_through(
        Fault::ResetMidStream { after_chunks: 1 },
        "retry: { attempts: 1 }",
    );
}

#[test]
fn stall_before_the_first_chunk_falls_through_after_first_byte() {
    let first_byte = Duration::from_millis(400);
    let elapsed = falls_through(
        Fault::Stall { after_chunks: 0 },
        "retry: { attempts: 1 }\ntimeouts: { first_byte: 400ms, between_chunks: 5s, total: 20s }",
    );
    assert!(elapsed >= first_byte, "fell through after {elapsed:?}");
}

#[test]
fn stall_after_the_role_delta_falls_through_after_first_byte() {
    let first_byte = Duration::from_millis(400);
    let elapsed = falls_through(
        Fault::Stall { after_chunks: 1 },
        "retry: { attempts: 1 }\ntimeouts: { first_byte: 400ms, between_chunks: 5s, total: 20s }",
    );
    assert!(elapsed >= first_byte, "fell through after {elapsed:?}");
}

#[test]
fn latency_beyond_first_byte_falls_through() {
    let first_byte = Duration::from_millis(400);
    let elapsed = falls_through(
        Fault::Latency {
            base: Duration::from_millis(2500),
            jitter: Duration::ZERO,
        },
        "retry: { attempts: 1 }\ntimeouts: { first_byte: 400ms, between_chunks: 5s, total: 20s }",
    );
    assert!(elapsed >= first_byte, "fell through after {elapsed:?}");
}

// ---------------------------------------------------------------------------
// 4: failures after commit end the stream with an error event, default policy
// ---------------------------------------------------------------------------

/// Primary with `fault` after 3 events (role, w0 with the greeting, w1).
fn breaks_after_commit(fault: Fault, route_extra: &str) -> (String, Duration) {
    let route_extra = format!("{route_extra}\nstream: {{ continue_after_commit: false }}");
    let (primary, fallback, yaml) = two(&route_extra);
    let full = full_text(&primary);
    primary.set_fault(fault);
    let gw = gateway(&yaml);
    let (response, elapsed, mut conn) = post(&gw, &stream_body(false));
    assert_eq!(response.header("x-switchyard-target"), Some(PRIMARY));
    let prefix = prefix_after(&full, 3);
    assert_eq!(prefix, "Hello from primary: w0 w1 ");
    let message = assert_broken(&response, &prefix);
    // Exactly: role, w0, w1, error, [DONE].
    let s = seen(&response);
    assert_eq!(s.data.len(), 5, "{:?}", s.data);
    assert_eq!(s.roles, 1);
    assert_eq!(
        fallback.stats().requests,
        0,
        "no continuation when it is off"
    );
    assert_reusable(&mut conn);
    stop(gw, &[&primary, &fallback]);
    (message, elapsed)
}

#[test]
fn reset_mid_stream_ends_with_an_error_event_and_done() {
    let (message, _) = breaks_after_commit(
        Fault::ResetMidStream { after_chunks: 3 },
        "retry: { attempts: 1 }",
    );
    assert!(
        message.contains("closed the connection") || message.contains("reset"),
        "{message}"
    );
}

#[test]
fn stall_mid_stream_ends_with_an_error_event_after_between_chunks() {
    let (message, elapsed) = breaks_after_commit(
        Fault::Stall { after_chunks: 3 },
        "retry: { attempts: 1 }\ntimeouts: { first_byte: 5s, between_chunks: 300ms, total: 20s }",
    );
    assert!(message.contains("stalled"), "{message}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
}

/// A target's own `timeouts.between_chunks` holds after commit too (the route's is
/// far longer than the whole request may take).
#[test]
fn a_targets_between_chunks_applies_to_its_stream() {
    let (primary, fallback, yaml) =
        two("retry: { attempts: 1 }\ntimeouts: { first_byte: 5s, between_chunks: 20s, total: 6s }\nstream: { continue_after_commit: false }");
    let plain = "{ provider: primary, model: primary-model, priority: 0 }";
    assert!(yaml.contains(plain));
    let yaml = yaml.replace(
        plain,
        "{ provider: primary, model: primary-model, priority: 0, timeouts: { between_chunks: 300ms } }",
    );
    let full = full_text(&primary);
    primary.set_fault(Fault::Stall { after_chunks: 3 });
    let gw = gateway(&yaml);
    let (response, _, _conn) = post(&gw, &stream_body(false));
    let message = assert_broken(&response, &prefix_after(&full, 3));
    assert!(
        message.contains("stalled"),
        "the target's stall limit ended it: {message}"
    );
    stop(gw, &[&primary, &fallback]);
}

#[test]
fn error_event_mid_stream_ends_with_the_gateways_error_event() {
    let (message, _) = breaks_after_commit(
        Fault::SseErrorEvent { after_chunks: 3 },
        "retry: { attempts: 1 }",
    );
    assert!(message.contains("error event"), "{message}");
}

// ---------------------------------------------------------------------------
// 5-6: continue_after_commit
// ---------------------------------------------------------------------------

/// Breaks the primary after 3 events with `continue_after_commit` and checks the
/// spliced stream. `prefill` marks the fallback target `prefill: true`.
fn continues(prefill: bool) {
    let (primary, fallback, yaml) =
        two("retry: { attempts: 1 }\nstream: { continue_after_commit: true }");
    // Instruction style is spliced only after the echo it asks for.
    fallback.set_continuation(Continuation::EchoHonouring);
    let plain = "{ provider: fallback, model: fallback-model, priority: 1 }";
    assert!(yaml.contains(plain));
    let yaml = yaml.replace(
        plain,
        &format!(
            "{{ provider: fallback, model: fallback-model, priority: 1, prefill: {prefill} }}"
        ),
    );
    let full = full_text(&primary);
    primary.set_fault(Fault::ResetMidStream { after_chunks: 3 });
    let gw = gateway(&yaml);
    let (response, _, _) = post(&gw, &stream_body(true));
    let s = seen(&response);
    assert_eq!(response.header("x-switchyard-target"), Some(PRIMARY));
    assert!(s.errors.is_empty(), "{:?}", s.data);
    assert_eq!(s.text, full, "{:?}", s.data);
    assert_eq!(s.done, 1, "{:?}", s.data);
    assert_eq!(s.data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(s.roles, 1, "the continuation's role delta is not repeated");

    let id = s.chunks[0]["id"].as_str().expect("id").to_string();
    for chunk in &s.chunks {
        assert_eq!(chunk["id"], id.as_str(), "{chunk}");
        assert_eq!(chunk["model"], "primary-model", "{chunk}");
    }
    // role, w0, w1 from the primary; everything after from the fallback.
    let (before, after) = s.chunks.split_at(3);
    assert!(before.iter().all(|c| c.get("x_switchyard").is_none()));
    assert!(!after.is_empty());
    for chunk in after {
        assert_eq!(chunk["x_switchyard"]["continued"], true, "{chunk}");
        assert_eq!(chunk["x_switchyard"]["continued_by"], FALLBACK, "{chunk}");
        assert_eq!(chunk["x_switchyard"]["continued_from"], PRIMARY, "{chunk}");
    }

    let usages: Vec<&Value> = s
        .chunks
        .iter()
        .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
        .collect();
    assert_eq!(usages.len(), 1, "{:?}", s.data);
    let usage = &usages[0]["usage"];
    let continuation_words =
        full.matches(' ').count() - "Hello from primary: w0 w1 ".matches(' ').count();
    assert_eq!(continuation_words, 6);
    assert!(
        usage["completion_tokens"].as_u64().unwrap() >= continuation_words as u64,
        "{usage}"
    );
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );

    let recorded = fallback
        .last_request()
        .expect("fallback was asked to continue");
    let body: Value = serde_json::from_slice(&recorded.body).unwrap();
    assert_eq!(body["model"], "fallback-model");
    assert_eq!(body["stream"], true);
    let messages = body["messages"].as_array().unwrap();
    let partial = json!({ "role": "assistant", "content": "Hello from primary: w0 w1 " });
    if prefill {
        // Less its last two words, which the fallback writes again.
        let withheld = json!({ "role": "assistant", "content": "Hello from primary: " });
        assert_eq!(messages.len(), 3, "{body}");
        assert_eq!(messages[2], withheld);
    } else {
        assert_eq!(messages.len(), 4, "{body}");
        assert_eq!(messages[2], partial);
        assert_eq!(
            messages[3],
            json!({ "role": "user", "content": instruction(echo_of("Hello from primary: w0 w1 ")) })
        );
    }
    assert_eq!(messages[1]["content"], "Say hello.");
    stop(gw, &[&primary, &fallback]);
}

#[test]
fn continuation_with_prefill_splices_the_exact_answer() {
    continues(true);
}

#[test]
fn continuation_in_instruction_style_splices_the_exact_answer() {
    continues(false);
}

#[test]
fn failed_continuation_reports_the_original_failure() {
    let (primary, fallback, yaml) =
        two("retry: { attempts: 1 }\nstream: { continue_after_commit: true }");
    let full = full_text(&primary);
    primary.set_fault(Fault::ResetMidStream { after_chunks: 3 });
    fallback.set_fault(fault_status(400));
    let gw = gateway(&yaml);
    let (response, _, mut conn) = post(&gw, &stream_body(false));
    let message = assert_broken(&response, &prefix_after(&full, 3));
    assert!(
        message.contains("closed the connection") || message.contains("reset"),
        "{message}"
    );
    assert!(!message.contains("400"), "{message}");
    // The fallback really was asked to continue, and refused.
    assert!(fallback.stats().faults_injected >= 1);
    let recorded = fallback.last_request().unwrap();
    let body: Value = serde_json::from_slice(&recorded.body).unwrap();
    // A plain 400 (not a prefill refusal) is a failure, not a style verdict: the
    // prefill was the only attempt, sent less its last two words.
    assert_eq!(fallback.stats().requests, 1);
    assert_eq!(
        body["messages"][2]["content"], "Hello from primary: ",
        "{body}"
    );
    fallback.set_fault(Fault::None);
    assert_reusable(&mut conn);
    stop(gw, &[&primary, &fallback]);
}

// ---------------------------------------------------------------------------
// 7-9: malformed events, missing [DONE], holding the head
// ---------------------------------------------------------------------------

#[test]
fn malformed_events_are_dropped_and_the_stream_completes() {
    for after_chunks in [1, 3] {
        let primary = mock("primary");
        let full = full_text(&primary);
        primary.set_fault(Fault::MalformedEvent { after_chunks });
        let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
        let (response, _) = post_stream(&gw);
        let s = assert_clean(&response, &full, PRIMARY);
        assert!(
            s.data.iter().all(|d| !d.contains("not json")),
            "{:?}",
            s.data
        );
        assert_eq!(primary.stats().faults_injected, 1, "the fault fired");
        stop(gw, &[&primary]);
    }
}

#[test]
fn a_stream_without_done_is_finalised_at_once() {
    let primary = mock("primary");
    let full = full_text(&primary);
    primary.set_fault(Fault::NoDone);
    let gw = gateway(&chain_yaml(
        &[("primary", &primary)],
        "timeouts: { first_byte: 20s, between_chunks: 20s, total: 60s }",
        "",
    ));
    let (response, elapsed) = post_stream(&gw);
    assert_clean(&response, &full, PRIMARY);
    assert_eq!(primary.stats().faults_injected, 1, "the fault fired");
    // Not by waiting out between_chunks (20s).
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    stop(gw, &[&primary]);
}

fn slow_primary(delay: Duration) -> MockHandle {
    mock_with(MockConfig {
        name: "primary".into(),
        stream_chunks: 2,
        chunk_delay: delay,
        ..MockConfig::default()
    })
}

#[test]
fn the_head_waits_for_the_first_content() {
    let delay = Duration::from_millis(600);
    let primary = slow_primary(delay);
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let started = Instant::now();
    let mut conn = client(&gw);
    let mut first_piece: Option<Vec<u8>> = None;
    conn.send_raw(&loadtest::client::encode_request(
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        stream_body(false).as_bytes(),
    ))
    .unwrap();
    let response = conn
        .read_response(|piece| {
            first_piece.get_or_insert_with(|| piece.to_vec());
        })
        .expect("response");
    assert_clean(&response, "Hello from primary: w0 w1 ", PRIMARY);
    // The mock sends the role delta at once and w0 after `delay`: the gateway's
    // head and the role delta could only have waited for w0.
    let first_at = response.piece_times[0] - started;
    assert!(first_at >= delay, "first piece after {first_at:?}");
    let first = String::from_utf8(first_piece.unwrap()).unwrap();
    assert!(first.contains("\"role\""), "{first}");
    // The role delta and the content it was held for went out together.
    assert!(response.piece_times[1] - started >= delay);
    stop(gw, &[&primary]);
}

#[test]
fn without_hold_until_content_the_role_delta_goes_out_at_once() {
    // The control for the test above: the same slow primary, not held.
    let delay = Duration::from_millis(600);
    let primary = slow_primary(delay);
    let gw = gateway(&chain_yaml(
        &[("primary", &primary)],
        "stream: { hold_until_content: false }",
        "",
    ));
    let (response, _) = post_stream(&gw);
    assert_clean(&response, "Hello from primary: w0 w1 ", PRIMARY);
    // Role delta, then w0 a chunk delay later: they were relayed separately.
    let gap = response.piece_times[1] - response.piece_times[0];
    assert!(gap >= delay / 2, "role delta and w0 {gap:?} apart");
    stop(gw, &[&primary]);
}

// ---------------------------------------------------------------------------
// 11: usage chunks
// ---------------------------------------------------------------------------

fn usage_chunks(s: &Seen) -> Vec<&Value> {
    s.chunks
        .iter()
        .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
        .collect()
}

#[test]
fn usage_chunk_only_when_the_client_asked() {
    let primary = mock("primary");
    let full = full_text(&primary);
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));

    let (asked, _, _) = post(&gw, &stream_body(true));
    let s = assert_clean(&asked, &full, PRIMARY);
    let usage = usage_chunks(&s);
    assert_eq!(usage.len(), 1, "{:?}", s.data);
    assert_eq!(usage[0]["choices"], json!([]));
    assert_eq!(usage[0]["usage"]["completion_tokens"], 8);
    let recorded: Value = serde_json::from_slice(&primary.last_request().unwrap().body).unwrap();
    assert_eq!(recorded["stream_options"]["include_usage"], true);

    let (not_asked, _, _) = post(&gw, &stream_body(false));
    let s = assert_clean(&not_asked, &full, PRIMARY);
    assert!(usage_chunks(&s).is_empty(), "{:?}", s.data);
    assert!(s.chunks.iter().all(|c| c["choices"] != json!([])));
    let recorded: Value = serde_json::from_slice(&primary.last_request().unwrap().body).unwrap();
    assert_eq!(
        recorded["stream_options"]["include_usage"], true,
        "the gateway asks for usage itself: {recorded}"
    );
    stop(gw, &[&primary]);
}

// ---------------------------------------------------------------------------
// 10: SSE framing as the relay sees it
// ---------------------------------------------------------------------------

/// A realistic provider stream: role delta, content (multi-byte text, a JSON
/// payload split over two `data:` lines), a comment, an `id:`, a malformed event,
/// the finish chunk, usage and `[DONE]`. `crlf` picks the line ending.
fn provider_stream(pieces: &[String], crlf: bool) -> (Vec<u8>, Vec<EventKind<'static>>) {
    let nl = if crlf { "\r\n" } else { "\n" };
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
        })
        .to_string()
    };
    let mut out = String::new();
    let mut kinds = Vec::new();
    out.push_str(&format!(": keep-alive{nl}{nl}"));
    out.push_str(&format!(
        "data: {}{nl}{nl}",
        chunk(json!({"role": "assistant", "content": ""}), Value::Null)
    ));
    kinds.push(EventKind::Empty { usage: None });
    for (i, piece) in pieces.iter().enumerate() {
        let data = chunk(json!({ "content": piece }), Value::Null);
        if i % 3 == 1 {
            // The same JSON over two data lines (joined with "\n", JSON whitespace).
            let cut = data.find("\"choices\"").unwrap();
            out.push_str(&format!(
                "id: {i}{nl}data: {}{nl}data: {}{nl}{nl}",
                &data[..cut],
                &data[cut..]
            ));
        } else {
            out.push_str(&format!("data:{data}{nl}{nl}"));
        }
        kinds.push(EventKind::Content {
            text: piece.clone().into(),
            finished: false,
        });
        if i == 0 {
            out.push_str(&format!("data: {{not json{nl}{nl}"));
            kinds.push(EventKind::Malformed);
        }
    }
    out.push_str(&format!(
        "data: {}{nl}{nl}",
        chunk(json!({}), json!("stop"))
    ));
    kinds.push(EventKind::Content {
        text: "".into(),
        finished: true,
    });
    out.push_str(&format!(
        "data: {}{nl}{nl}",
        json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": pieces.len(), "total_tokens": 3 + pieces.len()}})
    ));
    kinds.push(EventKind::UsageOnly(Usage {
        prompt_tokens: 3,
        completion_tokens: pieces.len() as u64,
    }));
    out.push_str(&format!("data: [DONE]{nl}{nl}"));
    kinds.push(EventKind::Done);
    (out.into_bytes(), kinds)
}

/// Feeds `bytes` cut at `cuts` (sorted, deduplicated inside) and returns the
/// events' kinds and the text accumulated from them, as the relay does.
fn relay_view(bytes: &[u8], cuts: &[usize]) -> (Vec<EventKind<'static>>, String) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut parser = SseParser::new();
    let mut kinds = Vec::new();
    let mut text = String::new();
    let mut collect = |parser: &mut SseParser| {
        while let Some(event) = parser.next_event() {
            let event: SseEvent = event.expect("valid stream");
            let kind = inspect(&event).into_owned();
            if let EventKind::Content { text: t, .. } = &kind {
                text.push_str(t);
            }
            kinds.push(kind);
        }
    };
    for pair in cuts.windows(2) {
        parser.push(&bytes[pair[0]..pair[1]]);
        collect(&mut parser);
    }
    (kinds, text)
}

#[test]
fn relay_view_is_the_same_at_every_split_point() {
    let pieces: Vec<String> = ["Hello ", "wörld ", "🚀 naïve ", "\"quoted\"\n", "end"]
        .map(String::from)
        .to_vec();
    for crlf in [false, true] {
        let (bytes, kinds) = provider_stream(&pieces, crlf);
        let whole = relay_view(&bytes, &[]);
        assert_eq!(whole.0, kinds);
        assert_eq!(whole.1, pieces.concat());
        for cut in 0..=bytes.len() {
            assert_eq!(relay_view(&bytes, &[cut]), whole, "cut at {cut}");
        }
        let every: Vec<usize> = (0..=bytes.len()).collect();
        assert_eq!(relay_view(&bytes, &every), whole, "byte by byte");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn relay_view_survives_random_splits(
        pieces in proptest::collection::vec("\\PC{1,12}", 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        crlf in any::<bool>(),
    ) {
        let (bytes, kinds) = provider_stream(&pieces, crlf);
        let (got, text) = relay_view(&bytes, &cuts);
        prop_assert_eq!(got, kinds);
        prop_assert_eq!(text, pieces.concat());
    }
}

// ---------------------------------------------------------------------------
// Continuation v2: on by default, verified before a byte is spliced
// ---------------------------------------------------------------------------

/// The fallback's learned prefill in /admin/targets.
fn learned_prefill(gw: &Gateway) -> String {
    let addr = gw.admin_addr().expect("admin listener");
    let mut admin = Client::connect(addr).expect("connect to admin");
    let targets = admin
        .request("GET", "/admin/targets", &[], b"")
        .expect("admin answers")
        .json();
    targets["targets"]
        .as_array()
        .and_then(|l| l.iter().find(|t| t["target"] == FALLBACK))
        .map(|t| t["prefill"].as_str().unwrap_or("-").to_string())
        .expect("fallback listed")
}

/// Primary cut after 3 events, default stream settings (continuation `auto`,
/// prefill `auto`), the admin API on.
fn cut_by_default() -> (MockHandle, MockHandle, Gateway, String) {
    let (primary, fallback, yaml) = two("retry: { attempts: 1 }");
    let full = full_text(&primary);
    primary.set_fault(Fault::ResetMidStream { after_chunks: 3 });
    let gw = gateway(&format!("{yaml}admin: {{ listen: 127.0.0.1:0 }}\n"));
    (primary, fallback, gw, full)
}

#[test]
fn by_default_a_cut_stream_is_continued_by_verified_prefill() {
    let (primary, fallback, gw, full) = cut_by_default();
    assert_eq!(learned_prefill(&gw), "unknown");
    let (response, _, _) = post(&gw, &stream_body(false));
    let s = seen(&response);
    assert!(s.errors.is_empty(), "{:?}", s.data);
    assert_eq!(s.text, full, "the complete answer, nothing repeated");
    assert_eq!(s.done, 1);
    let body: Value =
        serde_json::from_slice(&fallback.last_request().expect("asked").body).unwrap();
    let last = body["messages"].as_array().and_then(|m| m.last()).cloned();
    assert_eq!(
        last.map(|m| m["role"].clone()),
        Some(json!("assistant")),
        "prefill first"
    );
    assert_eq!(learned_prefill(&gw), "capable", "verified, so remembered");
    stop(gw, &[&primary, &fallback]);
}

#[test]
fn a_prefill_refusal_is_learned_and_never_reaches_the_client() {
    let (primary, fallback, gw, full) = cut_by_default();
    let refusal = r#"{"error":{"message":"Assistant message prefill is not supported: the final message must be a user or tool message.","type":"invalid_request_error","param":"messages","code":"invalid_request_error"}}"#;
    fallback.set_fault(Fault::Status {
        status: 400,
        rate: 1.0,
        retry_after: None,
        body: Some(refusal.into()),
        times: Some(1),
    });
    let (response, _, _) = post(&gw, &stream_body(false));
    // Then instruction style; this fallback continues without the echo it was
    // asked for, which cannot be shown to follow the partial: the clean error
    // naming the original failure, never the 400, never a guess.
    let message = assert_broken(&response, &prefix_after(&full, 3));
    assert!(
        message.contains("closed the connection") || message.contains("reset"),
        "{message}"
    );
    assert_eq!(
        fallback.stats().requests,
        2,
        "prefill, then instruction style"
    );
    assert_eq!(learned_prefill(&gw), "unsupported");
    // Learned: the next continuation goes to instruction style at once.
    let (again, _, _) = post(&gw, &stream_body(false));
    assert_broken(&again, &prefix_after(&full, 3));
    assert_eq!(fallback.stats().requests, 3);
    let body: Value =
        serde_json::from_slice(&fallback.last_request().expect("asked").body).unwrap();
    let last = body["messages"].as_array().and_then(|m| m.last()).cloned();
    assert_eq!(last.map(|m| m["role"].clone()), Some(json!("user")));
    stop(gw, &[&primary, &fallback]);
}

#[test]
fn what_a_continuation_cannot_reproduce_ends_cleanly() {
    for extra in [
        json!({"n": 2}),
        json!({"logprobs": true}),
        json!({"response_format": {"type": "json_object"}}),
    ] {
        let (primary, fallback, gw, full) = cut_by_default();
        let mut body: Value = serde_json::from_str(&stream_body(false)).unwrap();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (response, _, _) = post(&gw, &body.to_string());
        assert_broken(&response, &prefix_after(&full, 3));
        assert_eq!(fallback.stats().requests, 0, "{extra}: not attempted");
        stop(gw, &[&primary, &fallback]);
    }
}

/// How a fallback answers a continuation, and what the client must get: each
/// mode with the fallback's `prefill` setting → (complete answer?, fallback calls).
#[test]
fn every_fallback_behaviour_gets_the_complete_answer_or_the_clean_error() {
    use Continuation::*;
    type Case = (Continuation, &'static str, bool, u64);
    let cases: &[Case] = &[
        (Honest, "auto", true, 1),
        (PrefillOnly, "auto", true, 1),
        (PrefillOnly, "false", true, 1), // a verbatim restart, stripped
        (EchoHonouring, "false", true, 1),
        (RepeatLastSentence, "auto", true, 1),
        (RejectPrefill, "auto", true, 2), // the 400 is learned, then an echo
        (RestartReworded, "auto", false, 2), // prefill, then instruction: both reworded
        (RestartReworded, "false", false, 1),
    ];
    for &(mode, prefill, complete, calls) in cases {
        let (primary, fallback, yaml) = two("retry: { attempts: 1 }");
        let plain = "{ provider: fallback, model: fallback-model, priority: 1 }";
        let yaml = yaml.replace(
            plain,
            &format!(
                "{{ provider: fallback, model: fallback-model, priority: 1, prefill: {prefill} }}"
            ),
        );
        let full = full_text(&primary);
        primary.set_fault(Fault::ResetMidStream { after_chunks: 3 });
        fallback.set_continuation(mode);
        let gw = gateway(&yaml);
        let (response, _, _) = post(&gw, &stream_body(false));
        let case = format!("{mode:?} prefill {prefill}");
        if complete {
            let s = seen(&response);
            assert!(s.errors.is_empty(), "{case}: {:?}", s.data);
            assert_eq!(s.text, full, "{case}: the complete answer, no span twice");
            assert_eq!(s.done, 1, "{case}");
        } else {
            assert_broken(&response, &prefix_after(&full, 3));
        }
        assert_eq!(fallback.stats().requests, calls, "{case}");
        stop(gw, &[&primary, &fallback]);
    }
}

/// The tool call a client assembled from its stream: (name, arguments).
fn tool_call_of(response: &HttpResponse) -> (String, String) {
    let (mut name, mut arguments) = (String::new(), String::new());
    for data in response.sse_data() {
        let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
            continue;
        };
        let call = &chunk["choices"][0]["delta"]["tool_calls"][0]["function"];
        name.push_str(call["name"].as_str().unwrap_or(""));
        arguments.push_str(call["arguments"].as_str().unwrap_or(""));
    }
    (name, arguments)
}

#[test]
fn a_stream_cut_inside_a_tool_call_is_served_whole_by_the_next_target() {
    let (primary, fallback, yaml) = two("retry: { attempts: 1 }");
    let gw = gateway(&yaml);
    let mut body: Value = serde_json::from_str(&stream_body(false)).unwrap();
    body["tool_choice"] = json!("required");
    body["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let (whole, _, _) = post(&gw, &body.to_string());
    assert_eq!(whole.header("x-switchyard-target"), Some(PRIMARY));
    let expected = tool_call_of(&whole);
    assert_eq!(expected.0, "lookup");
    primary.set_fault(Fault::ToolCallCut { after_chunks: 2 });
    let (response, _, _) = post(&gw, &body.to_string());
    assert_eq!(
        response.header("x-switchyard-target"),
        Some(FALLBACK),
        "held until complete, so the cut fell through"
    );
    let got = tool_call_of(&response);
    assert_eq!(got.0, expected.0);
    let args: Value = serde_json::from_str(&got.1).expect("complete JSON arguments");
    assert!(
        args["text"].as_str().is_some_and(|t| t.starts_with("w0 ")),
        "{args}"
    );
    assert!(seen(&response).errors.is_empty());
    stop(gw, &[&primary, &fallback]);
}
