use super::*;

fn config(keys: &str, rate_window: &str) -> Config {
    let yaml = format!(
        "rate_window: {rate_window}\nkeys:\n{keys}providers:\n  p: {{ kind: openai-compatible, base_url: \"http://127.0.0.1:9/v1\", rpm: 5 }}\nroutes:\n  - name: r\n    targets: [{{ provider: p, model: m }}]\n"
    );
    crate::config::load_str(&yaml, "t.yaml", &|_| None).expect("config")
}

fn limits(keys: &str) -> Arc<Limits> {
    let config = config(keys, "60s");
    Arc::new(Limits::build(&config, &[Quota::default()]))
}

const KEY: Subject = Subject::Key(0);

#[test]
fn a_keys_rpm_admits_exactly_its_limit_across_shards_per_window() {
    let limits = limits("  - { name: a, key: ka, rpm: 60 }\n");
    let shards = [
        ShardLeases::new(limits.clone(), 2),
        ShardLeases::new(limits.clone(), 2),
    ];
    let now = Instant::now();
    let admitted = (0..200)
        .filter(|i| shards[i % 2].charge(KEY, 10, now).is_ok())
        .count();
    assert_eq!(admitted, 60);
    let refused = shards[0].charge(KEY, 10, now).unwrap_err();
    assert_eq!(refused.kind, LimitKind::Requests);
    assert_eq!(refused.limit, 60);
    assert!(refused.reset <= Duration::from_secs(60));
    // The next window admits again.
    let later = refused.until + Duration::from_millis(1);
    assert!(shards[1].charge(KEY, 10, later).unwrap().is_some());
}

#[test]
fn tokens_are_estimated_then_settled_by_real_usage() {
    let limits = limits("  - { name: a, key: ka, tpm: 1000 }\n");
    let shard = ShardLeases::new(limits.clone(), 1);
    let now = Instant::now();
    let charges: Vec<Charge> = (0..10)
        .map(|_| shard.charge(KEY, 100, now).unwrap().unwrap())
        .collect();
    let refused = shard.charge(KEY, 100, now).unwrap_err();
    assert_eq!(refused.kind, LimitKind::Tokens);
    // Each used half its estimate: 500 tokens come back for more requests.
    for charge in &charges {
        shard.settle(*charge, 50);
    }
    let more = (0..10)
        .filter(|_| shard.charge(KEY, 100, now).is_ok())
        .count();
    assert_eq!(more, 5);
    // Usage over the estimate is counted, never refused.
    let charge = shard
        .charge(KEY, 0, now + Duration::from_secs(60))
        .unwrap()
        .unwrap();
    shard.settle(charge, 5000);
    let standing = shard.standing(KEY, now + Duration::from_secs(60));
    assert_eq!(standing.tokens, Some((1000, 0)));
    assert!(shard.charge(KEY, 1, now + Duration::from_secs(60)).is_err());
}

#[test]
fn a_refused_token_charge_gives_its_request_back() {
    let limits = limits("  - { name: a, key: ka, rpm: 2, tpm: 100 }\n");
    let shard = ShardLeases::new(limits.clone(), 1);
    let now = Instant::now();
    assert!(shard.charge(KEY, 100, now).is_ok());
    assert_eq!(
        shard.charge(KEY, 100, now).unwrap_err().kind,
        LimitKind::Tokens
    );
    // The refused request did not use the second request of the window.
    let charge = shard.charge(KEY, 0, now);
    assert!(charge.is_err(), "no tokens left");
    let standing = shard.standing(KEY, now);
    assert_eq!(standing.requests.map(|(limit, _)| limit), Some(2));
    let refund = shard
        .charge(KEY, 1, now + Duration::from_secs(60))
        .unwrap()
        .unwrap();
    shard.refund(refund);
    let standing = shard.standing(KEY, now + Duration::from_secs(60));
    assert_eq!(standing.requests, Some((2, 1)), "leased, not spent");
}

#[test]
fn an_unlimited_subject_is_never_charged() {
    let limits = limits("  - { name: a, key: ka }\n");
    let shard = ShardLeases::new(limits, 1);
    assert_eq!(shard.charge(KEY, 1 << 40, Instant::now()), Ok(None));
    assert_eq!(shard.charge(Subject::Key(7), 1, Instant::now()), Ok(None));
    // The provider of the config has rpm 5.
    let provider = Subject::Provider(0);
    let now = Instant::now();
    assert_eq!(
        (0..9)
            .filter(|_| shard.charge(provider, 1, now).is_ok())
            .count(),
        5
    );
}

#[test]
fn concurrency_is_exact_and_released_on_drop() {
    let limits = limits("  - { name: a, key: ka, max_concurrency: 2 }\n");
    let key = &limits.keys[0];
    let first = enter(key).unwrap();
    let _second = enter(key).unwrap();
    assert_eq!(enter(key).unwrap_err(), 2);
    drop(first);
    assert!(enter(key).is_ok());
    assert_eq!(key.in_flight.load(Ordering::Acquire), 1);
}

#[test]
fn a_reload_keeps_the_counts_of_unchanged_subjects() {
    let old = limits("  - { name: a, key: ka, rpm: 3 }\n  - { name: b, key: kb, rpm: 3 }\n");
    let shard = ShardLeases::new(old.clone(), 1);
    let now = Instant::now();
    for _ in 0..3 {
        shard.charge(KEY, 1, now).unwrap();
        shard.charge(Subject::Key(1), 1, now).unwrap();
    }
    // `a` keeps its limit, `b` changes it.
    let config = config(
        "  - { name: b, key: kb, rpm: 4 }\n  - { name: a, key: ka, rpm: 3 }\n",
        "60s",
    );
    let mut new = Limits::build(&config, &[Quota::default()]);
    new.carry(
        &old,
        &Names {
            keys: (&["b", "a"], &["a", "b"]),
            providers: (&["p"], &["p"]),
            slots: (&["p/m"], &["p/m"]),
        },
    );
    let shard = ShardLeases::new(Arc::new(new), 1);
    assert!(
        shard.charge(Subject::Key(1), 1, now).is_err(),
        "a's window stays spent"
    );
    assert!(
        shard.charge(Subject::Key(0), 1, now).is_ok(),
        "b starts afresh"
    );
}
