//! Micro-benchmarks of the limit check on the request path: charging a key with
//! an rpm and a tpm (leased from the gateway-wide ledgers, spent locally), with
//! its settlement by the real usage; and the same key without limits.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

use switchyard::limits::gate::{Limits, ShardLeases, Subject};

fn leases(limits: &str) -> ShardLeases {
    let yaml = format!(
        "rate_window: 60s\nkeys:\n  - {{ name: k, key: sk{limits} }}\nproviders:\n  p: {{ kind: openai-compatible, base_url: \"http://127.0.0.1:9/v1\" }}\nroutes:\n  - name: r\n    targets: [{{ provider: p, model: m }}]\n"
    );
    let config = switchyard::config::load_str(&yaml, "bench.yaml", &|_| None).expect("config");
    ShardLeases::new(Arc::new(Limits::build(&config, &[Default::default()])), 4)
}

fn bench_limits(c: &mut Criterion) {
    // Limits high enough that the bench never runs out within a window.
    let limited = leases(", rpm: 4000000000, tpm: 4000000000");
    let start = Instant::now();
    let mut i = 0u64;
    c.bench_function("limits/charge+settle rpm+tpm", |b| {
        b.iter(|| {
            i += 1;
            // Stay inside one window: the clock is read once per request in the
            // gateway too.
            let now = start + Duration::from_nanos(i % 1000);
            let charge = limited.charge(Subject::Key(0), black_box(300), now);
            if let Ok(Some(charge)) = charge {
                limited.settle(charge, black_box(280));
            }
        })
    });
    let open = leases("");
    c.bench_function("limits/charge unlimited key", |b| {
        b.iter(|| black_box(open.charge(Subject::Key(0), black_box(300), start)))
    });
}

criterion_group!(benches, bench_limits);
criterion_main!(benches);
