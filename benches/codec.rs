//! Micro-benchmarks of the HTTP/1.1 codec: request head parsing, chunked decoding,
//! SSE parsing and response head writing.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use switchyard::http::{
    encode_chunk, parse_request_head, write_response_head, BodyLen, ChunkedDecoder, SseParser,
    LAST_CHUNK,
};

#[path = "../tests/hot_path/fixture.rs"]
#[allow(dead_code)]
mod fixture;
use fixture::OPENAI_SDK_HEAD;

fn bench_request_head(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_head");
    g.throughput(Throughput::Bytes(OPENAI_SDK_HEAD.len() as u64));
    g.bench_function("openai_sdk_13_headers", |b| {
        b.iter(|| parse_request_head(black_box(OPENAI_SDK_HEAD), 16 * 1024))
    });
    g.finish();
}

fn bench_chunked(c: &mut Criterion) {
    let payload: Vec<u8> = (0..16 * 1024).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::new();
    for chunk in payload.chunks(1024) {
        encode_chunk(chunk, &mut wire);
    }
    wire.extend_from_slice(LAST_CHUNK);
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    let mut out = Vec::with_capacity(payload.len());
    g.bench_function("decode_16k_in_1k_chunks", |b| {
        b.iter(|| {
            out.clear();
            let mut d = ChunkedDecoder::new();
            d.decode(black_box(&wire), &mut out)
        })
    });
    g.bench_function("decode_16k_fed_in_4k_reads", |b| {
        b.iter(|| {
            out.clear();
            let mut d = ChunkedDecoder::new();
            // The decoder buffers split size lines itself, so each read is fully consumed.
            let mut consumed = 0;
            for read in wire.chunks(4096) {
                if let Ok(p) = d.decode(black_box(read), &mut out) {
                    consumed += p.consumed;
                }
            }
            consumed
        })
    });
    g.bench_function("encode_16k_in_1k_chunks", |b| {
        b.iter(|| {
            out.clear();
            for chunk in black_box(&payload).chunks(1024) {
                encode_chunk(chunk, &mut out);
            }
            out.len()
        })
    });
    g.finish();
}

fn chat_stream() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..59 {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-AbC123\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_45c6de4934\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" token{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        ));
    }
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

fn bench_sse(c: &mut Criterion) {
    let stream = chat_stream();
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("parse_60_chunk_events_whole", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            p.push(black_box(&stream));
            let mut n = 0;
            while let Some(Ok(ev)) = p.next_event() {
                n += ev.data.len();
            }
            n
        })
    });
    g.bench_function("parse_60_chunk_events_in_512b_reads", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut n = 0;
            for read in black_box(&stream).chunks(512) {
                p.push(read);
                while let Some(Ok(ev)) = p.next_event() {
                    n += ev.data.len();
                }
            }
            n
        })
    });
    g.finish();
}

fn bench_write_head(c: &mut Criterion) {
    let headers: [(&str, &[u8]); 4] = [
        ("content-type", b"text/event-stream"),
        ("x-request-id", b"01JBX7Q4K8ZCM2W3N5P6R7S8T9"),
        ("x-switchyard-target", b"openai/gpt-4o"),
        ("x-switchyard-attempts", b"1"),
    ];
    let mut out = Vec::with_capacity(512);
    c.bench_function("write_response_head_4_headers", |b| {
        b.iter(|| {
            out.clear();
            write_response_head(
                &mut out,
                black_box(200),
                black_box(&headers),
                BodyLen::Fixed(1834),
                true,
            );
            out.len()
        })
    });
}

criterion_group!(
    benches,
    bench_request_head,
    bench_chunked,
    bench_sse,
    bench_write_head
);
criterion_main!(benches);
