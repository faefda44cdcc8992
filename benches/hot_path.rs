//! The pass-through hot path in one measurement: parse the client's request
//! head (the OpenAI SDK's 13 headers), match the route and order its targets,
//! write the upstream head. The same fixture's allocations are counted in
//! tests/hot_path_allocations.rs.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../tests/hot_path/fixture.rs"]
mod fixture;
use fixture::{HotPath, OPENAI_SDK_HEAD};

fn hot_path(c: &mut Criterion) {
    let mut path = HotPath::new();
    c.bench_function("parse + route + serialise (13 headers)", |b| {
        b.iter(|| path.pass(black_box(OPENAI_SDK_HEAD)))
    });
    c.bench_function("parse (13 headers)", |b| {
        b.iter(|| path.parse(black_box(OPENAI_SDK_HEAD)))
    });
    c.bench_function("route match + order", |b| {
        b.iter(|| path.route(black_box("chat")))
    });
    c.bench_function("upstream head", |b| {
        b.iter(|| path.serialise(black_box(187)))
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
