//! Micro-benchmark of the streaming hot path: parse a realistic 200-event
//! `chat.completion.chunk` stream with `SseParser` and classify every event with
//! `proxy::stream::inspect`, fed in network-sized pieces.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchyard::http::SseParser;
use switchyard::proxy::stream::{inspect, EventKind};

const WORDS: [&str; 8] = [
    " the", " parcel", " is", " on", " its", " way", ",", " thanks",
];

/// Role delta, 196 content chunks, a finish chunk, a usage chunk and `[DONE]`.
fn stream() -> Vec<u8> {
    let head = r#"{"id":"chatcmpl-9xYz","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_50cad350e4","#;
    let mut out = String::new();
    let mut event = |data: String| {
        out.push_str("data: ");
        out.push_str(&data);
        out.push_str("\n\n");
    };
    event(format!(
        r#"{head}"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}"#
    ));
    for i in 0..196 {
        event(format!(
            r#"{head}"choices":[{{"index":0,"delta":{{"content":"{}"}},"logprobs":null,"finish_reason":null}}]}}"#,
            WORDS[i % WORDS.len()]
        ));
    }
    event(format!(
        r#"{head}"choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}]}}"#
    ));
    event(format!(
        r#"{head}"choices":[],"usage":{{"prompt_tokens":112,"completion_tokens":197,"total_tokens":309}}}}"#
    ));
    event("[DONE]".to_string());
    out.into_bytes()
}

/// Parses and inspects the whole stream; returns (events, content bytes).
fn run(bytes: &[u8], piece: usize) -> (usize, usize) {
    let mut parser = SseParser::new();
    let (mut events, mut text) = (0, 0);
    for chunk in bytes.chunks(piece) {
        parser.push(chunk);
        while let Some(Ok(event)) = parser.next_event() {
            events += 1;
            if let EventKind::Content { text: t, .. } = inspect(&event) {
                text += t.len();
            }
        }
    }
    (events, text)
}

fn bench_sse(c: &mut Criterion) {
    let bytes = stream();
    assert_eq!(run(&bytes, 1460).0, 200, "the stream has 200 events");
    let mut g = c.benchmark_group("sse_stream_200_events");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("parse_and_inspect_1460B_pieces", |b| {
        b.iter(|| run(black_box(&bytes), 1460))
    });
    g.bench_function("parse_and_inspect_whole", |b| {
        b.iter(|| run(black_box(&bytes), bytes.len()))
    });
    g.finish();
}

criterion_group!(benches, bench_sse);
criterion_main!(benches);
