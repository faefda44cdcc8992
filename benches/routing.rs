//! Micro-benchmarks of the routing decision: match the request's model against 10
//! routes (the last one matches: worst case), then read the candidates' health and
//! order the targets, once per strategy.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use std::cell::RefCell;

use switchyard::health::TargetHealth;
use switchyard::outcome::Outcome;
use switchyard::route::select::{candidates, order, Balancer};
use switchyard::route::table::Table;
use switchyard::shard::state::TargetCell;

const STRATEGIES: [&str; 4] = ["priority", "weighted", "latency", "least-busy"];

/// Ten routes of three targets each over three providers, all with `strategy`.
fn config_yaml(strategy: &str) -> String {
    let mut yaml = String::from(
        "listen: 127.0.0.1:0\nproviders:\n\
         \x20 a: { kind: openai-compatible, base_url: http://127.0.0.1:9001/v1 }\n\
         \x20 b: { kind: openai-compatible, base_url: http://127.0.0.1:9002/v1 }\n\
         \x20 c: { kind: openai-compatible, base_url: http://127.0.0.1:9003/v1 }\nroutes:\n",
    );
    for i in 0..10 {
        yaml.push_str(&format!(
            "  - name: r{i}\n    match: {{ model: [m{i}, alias-{i}] }}\n    strategy: {strategy}\n    targets:\n\
             \x20     - {{ provider: a, model: x{i}, priority: 0, weight: 3 }}\n\
             \x20     - {{ provider: b, model: y{i}, priority: 0, weight: 1 }}\n\
             \x20     - {{ provider: c, model: z{i}, priority: 1, weight: 1 }}\n"
        ));
    }
    yaml
}

fn table(strategy: &str) -> Table {
    let config = switchyard::config::load_str(&config_yaml(strategy), "bench.yaml", &|_| None)
        .unwrap_or_else(|e| panic!("bench config invalid: {e}"));
    let local = |_: &str, port: u16| vec![SocketAddr::from(([127, 0, 0, 1], port))];
    Table::build(Arc::new(config), 1, &local)
}

/// A cell for every slot, with some recorded traffic so EWMAs are non-zero.
fn health(table: &Table) -> Vec<TargetCell> {
    let cfg = &table.config.health;
    let now = Instant::now();
    (0..table.slots.len())
        .map(|i| {
            let mut h = TargetHealth::new(cfg, table.breakers[i].clone(), 1, 0);
            for n in 0..50u64 {
                h.record(
                    now,
                    Outcome::Success,
                    Some(Duration::from_micros(200 + 37 * (i as u64) + n)),
                    10,
                    false,
                );
            }
            TargetCell {
                health: RefCell::new(h),
                counters: RefCell::default(),
            }
        })
        .collect()
}

fn bench_routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing_decision");
    for strategy in STRATEGIES {
        let table = table(strategy);
        let health = health(&table);
        let route = table.match_route("m9", None, |_| None).expect("m9 matches");
        let mut balancer = Balancer::new(table.config.routes[route].targets.len());
        let mut rng = fastrand::Rng::with_seed(7);
        let now = Instant::now();
        g.bench_function(format!("match10_and_order_{strategy}"), |b| {
            b.iter(|| {
                let route = table
                    .match_route(black_box("m9"), None, |_| None)
                    .unwrap_or(0);
                let targets = &table.routes[route].targets;
                let cands = candidates(targets.iter().map(|t| health[t.slot].health.borrow()), now);
                order(&table.config.routes[route], &cands, &mut balancer, &mut rng)
            })
        });
    }
    let table = table("priority");
    g.bench_function("match10_only", |b| {
        b.iter(|| table.match_route(black_box("m9"), None, |_| None))
    });
    g.finish();
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
