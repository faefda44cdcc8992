use super::*;
use std::sync::atomic::AtomicBool;

fn at(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Keys from a `keys:` YAML list (indented two spaces), as the loader builds them.
fn keys(list: &str) -> Vec<ClientKey> {
    let yaml = format!(
        "keys:\n{list}providers:\n  a: {{kind: openai-compatible, base_url: \"http://127.0.0.1:1\"}}\nroutes:\n  - {{name: r, targets: [{{provider: a, model: m}}]}}\n"
    );
    match crate::config::load_str(&yaml, "t.yaml", &|_| None) {
        Ok(config) => config.keys,
        Err(e) => panic!("{e}"),
    }
}

const DAY_KEY: &str = "  - { name: d, key: k1, budget: { usd: 10, period: 1d } }\n";

#[test]
fn periods_turn_over_exactly_at_their_utc_boundaries() {
    use BudgetPeriod::*;
    // (period, last second of a period, first second of the next)
    let table = [
        (Day, "2026-03-14T23:59:59Z", "2026-03-15T00:00:00Z"),
        (Day, "2024-02-28T23:59:59Z", "2024-02-29T00:00:00Z"),
        (Day, "1970-01-01T23:59:59Z", "1970-01-02T00:00:00Z"),
        // 2026-12-07 is a Monday; 1970-01-05 was the first Monday after the epoch.
        (Week, "2026-12-06T23:59:59Z", "2026-12-07T00:00:00Z"),
        (Week, "1970-01-04T23:59:59Z", "1970-01-05T00:00:00Z"),
        (Week, "2024-12-29T23:59:59Z", "2024-12-30T00:00:00Z"),
        (Month, "2024-02-29T23:59:59Z", "2024-03-01T00:00:00Z"),
        (Month, "2023-02-28T23:59:59Z", "2023-03-01T00:00:00Z"),
        (Month, "2100-02-28T23:59:59Z", "2100-03-01T00:00:00Z"),
        (Month, "2000-02-29T23:59:59Z", "2000-03-01T00:00:00Z"),
        (Month, "2026-04-30T23:59:59Z", "2026-05-01T00:00:00Z"),
        (Month, "2026-01-31T23:59:59Z", "2026-02-01T00:00:00Z"),
        (Month, "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"),
    ];
    for (period, before, after) in table {
        let (before, after) = (at(before), at(after));
        let (i, j) = (period_index(period, before), period_index(period, after));
        assert_eq!(j, i + 1, "{period:?} {before:?}");
        assert_eq!(period_start(period, j), Some(after), "{period:?} {after:?}");
        assert!(
            period_start(period, i).is_some_and(|s| s <= before),
            "{period:?}"
        );
        // Mid-period times belong to the same period.
        let inside = after + Duration::from_secs(DAY / 2);
        assert_eq!(period_index(period, inside), j, "{period:?}");
    }
    for moment in [
        "1970-01-01T00:00:00Z",
        "2026-06-01T12:00:00Z",
        "2999-12-31T23:59:59Z",
    ] {
        assert_eq!(period_index(Total, at(moment)), 0);
    }
    assert_eq!(period_start(Total, 0), None);
}

#[test]
fn the_week_starts_on_monday_and_the_month_on_the_first() {
    // Wednesday 2026-12-02 → Monday 2026-11-30; → December 1st.
    let now = at("2026-12-02T06:00:00Z");
    let week = period_index(BudgetPeriod::Week, now);
    assert_eq!(
        period_start(BudgetPeriod::Week, week),
        Some(at("2026-11-30T00:00:00Z"))
    );
    let month = period_index(BudgetPeriod::Month, now);
    assert_eq!(
        period_start(BudgetPeriod::Month, month),
        Some(at("2026-12-01T00:00:00Z"))
    );
    assert_eq!(
        period_start(BudgetPeriod::Month, month + 1),
        Some(at("2027-01-01T00:00:00Z"))
    );
}

#[test]
fn civil_dates_round_trip() {
    let mut day = -800_000i64;
    while day < 800_000 {
        let (y, m, d) = civil_from_days(day);
        assert!((1..=12).contains(&m) && (1..=31).contains(&d), "{day}");
        assert_eq!(days_from_civil(y, m, d), day, "{y}-{m}-{d}");
        day += 97;
    }
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(
        days_from_civil(2024, 2, 29) + 1,
        days_from_civil(2024, 3, 1)
    );
    assert_eq!(
        days_from_civil(2100, 2, 28) + 1,
        days_from_civil(2100, 3, 1)
    );
}

#[test]
fn budget_exhausts_at_the_limit_and_resets_at_the_boundary() {
    let book = SpendBook::new(&keys(DAY_KEY), at("2026-03-14T10:00:00Z"));
    let before = at("2026-03-14T23:59:59Z");
    let after = at("2026-03-15T00:00:00Z");
    book.charge(0, 9_999_999, before);
    let status = book.status(0, before).unwrap();
    assert_eq!(status.spent_micros, 9_999_999);
    assert_eq!(status.limit_micros, Some(10_000_000));
    assert_eq!(status.resets_at, Some(after));
    assert!(!status.exhausted);
    book.charge(0, 1, before);
    assert!(book.status(0, before).unwrap().exhausted);
    // The next period reads 0 before any charge, and a charge starts it at 0.
    let next = book.status(0, after).unwrap();
    assert_eq!((next.spent_micros, next.exhausted), (0, false));
    assert_eq!(next.resets_at, Some(at("2026-03-16T00:00:00Z")));
    book.charge(0, 3, after);
    assert_eq!(book.status(0, after).unwrap().spent_micros, 3);
    // A clock that steps back never resets the newer period.
    assert_eq!(book.status(0, before).unwrap().spent_micros, 3);
    book.charge(0, 2, before);
    assert_eq!(book.status(0, after).unwrap().spent_micros, 5);
}

#[test]
fn refunds_never_go_below_zero_and_unknown_keys_are_ignored() {
    let now = at("2026-03-14T10:00:00Z");
    let book = SpendBook::new(&keys(DAY_KEY), now);
    book.charge(0, 100, now);
    book.refund(0, 30, now);
    assert_eq!(book.status(0, now).unwrap().spent_micros, 70);
    book.refund(0, 1_000, now);
    assert_eq!(book.status(0, now).unwrap().spent_micros, 0);
    book.charge(5, 100, now);
    assert_eq!(book.status(5, now), None);
    // Spend saturates instead of spilling into the period bits.
    book.charge(0, u64::MAX, now);
    book.charge(0, u64::MAX, now);
    let status = book.status(0, now).unwrap();
    assert_eq!(status.spent_micros, SPENT_MASK);
    assert_eq!(status.resets_at, Some(at("2026-03-15T00:00:00Z")));
}

#[test]
fn a_key_without_budget_counts_spend_month_to_date() {
    let now = at("2026-03-14T10:00:00Z");
    let book = SpendBook::new(&keys("  - { name: free, key: k1 }\n"), now);
    book.charge(0, 42, now);
    let end = book.status(0, at("2026-03-31T23:59:59Z")).unwrap();
    assert_eq!(
        (end.spent_micros, end.limit_micros, end.exhausted),
        (42, None, false)
    );
    assert_eq!(end.resets_at, Some(at("2026-04-01T00:00:00Z")));
    assert_eq!(
        book.status(0, at("2026-04-01T00:00:00Z"))
            .unwrap()
            .spent_micros,
        0
    );
    // Given a daily budget later, it keeps this month's spend until tomorrow.
    let mut budgeted = SpendBook::new(
        &keys(DAY_KEY.replace("name: d", "name: free").as_str()),
        now,
    );
    budgeted.carry(&book, now);
    assert_eq!(budgeted.status(0, now).unwrap().spent_micros, 42);
    assert_eq!(
        budgeted
            .status(0, at("2026-03-15T00:00:00Z"))
            .unwrap()
            .spent_micros,
        0
    );
}

#[test]
fn a_total_budget_never_resets() {
    let now = at("2026-03-14T10:00:00Z");
    let book = SpendBook::new(
        &keys("  - { name: t, key: k1, budget: { usd: 1, period: total } }\n"),
        now,
    );
    book.charge(0, 1_000_000, now);
    let later = book.status(0, at("2030-01-01T00:00:00Z")).unwrap();
    assert_eq!(
        (later.spent_micros, later.resets_at, later.exhausted),
        (1_000_000, None, true)
    );
}

#[test]
fn concurrent_charges_sum_exactly() {
    let now = at("2026-03-14T10:00:00Z");
    let book = SpendBook::new(
        &keys("  - { name: a, key: k1, budget: { usd: 1000, period: 30d } }\n  - { name: b, key: k2 }\n"),
        now,
    );
    let go = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for thread in 0..8u64 {
            let (book, go) = (&book, &go);
            scope.spawn(move || {
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                for i in 0..20_000u64 {
                    book.charge((i % 2) as usize, thread + 1, now);
                }
            });
        }
        go.store(true, Ordering::Release);
    });
    // Each thread charged (thread + 1) 10 000 times on each key: 36 × 10 000.
    for key in 0..2 {
        assert_eq!(book.status(key, now).unwrap().spent_micros, 360_000);
    }
}

#[test]
fn concurrent_charges_across_a_boundary_lose_nothing_after_it() {
    let before = at("2026-03-14T23:59:59Z");
    let after = at("2026-03-15T00:00:01Z");
    let book = SpendBook::new(&keys(DAY_KEY), before);
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let book = &book;
            scope.spawn(move || {
                for i in 0..10_000 {
                    // Half the threads still live in the old day for a while.
                    let now = if thread % 2 == 0 || i >= 5_000 {
                        after
                    } else {
                        before
                    };
                    book.charge(0, 1, now);
                }
            });
        }
    });
    // Every charge made at `after` counts in the new day; old-day ones either
    // count in the new day too (they arrived after the turn) or were reset by it.
    let spent = book.status(0, after).unwrap().spent_micros;
    assert!((30_000..=40_000).contains(&spent), "{spent}");
}

#[test]
fn carry_keeps_spend_of_keys_that_remain_by_name() {
    let now = at("2026-03-14T10:00:00Z");
    let old = SpendBook::new(
        &keys(
            "  - { name: a, key: k1, budget: { usd: 10, period: 1d } }\n  - { name: b, key: k2, budget: { usd: 5, period: 7d } }\n  - { name: gone, key: k3 }\n",
        ),
        now,
    );
    for (key, micros) in [(0, 100), (1, 200), (2, 300)] {
        old.charge(key, micros, now);
    }
    // New order, b's limit raised, a's period changed, c new, `gone` removed.
    let mut new = SpendBook::new(
        &keys(
            "  - { name: c, key: k4 }\n  - { name: b, key: k2, budget: { usd: 50, period: 7d } }\n  - { name: a, key: k1, budget: { usd: 10, period: 30d } }\n",
        ),
        now,
    );
    new.carry(&old, now);
    let spent = |book: &SpendBook, name: &str, when| {
        book.status(book.index_of(name).unwrap(), when)
            .unwrap()
            .spent_micros
    };
    assert_eq!(spent(&new, "c", now), 0);
    assert_eq!(spent(&new, "b", now), 200);
    assert_eq!(new.status(1, now).unwrap().limit_micros, Some(50_000_000));
    assert_eq!(spent(&new, "a", now), 100);
    assert_eq!(new.index_of("gone"), None);
    // a now counts by month: the day boundary no longer resets it, April 1st does.
    let a = new.index_of("a").unwrap();
    assert_eq!(
        new.status(a, now).unwrap().resets_at,
        Some(at("2026-04-01T00:00:00Z"))
    );
    assert_eq!(spent(&new, "a", at("2026-03-20T00:00:00Z")), 100);
    assert_eq!(spent(&new, "a", at("2026-04-01T00:00:00Z")), 0);
    // A shard still on the old table charges the same counter.
    old.charge(1, 7, now);
    assert_eq!(spent(&new, "b", now), 207);
}

#[test]
fn carry_with_a_changed_period_drops_spend_of_an_ended_period() {
    let yesterday = at("2026-03-13T10:00:00Z");
    let now = at("2026-03-14T10:00:00Z");
    let old = SpendBook::new(&keys(DAY_KEY), yesterday);
    old.charge(0, 500, yesterday);
    let mut new = SpendBook::new(
        &keys("  - { name: d, key: k1, budget: { usd: 10, period: total } }\n"),
        now,
    );
    new.carry(&old, now);
    assert_eq!(new.status(0, now).unwrap().spent_micros, 0);
}

#[test]
fn entries_restore_spend_of_running_periods_only() {
    let now = at("2026-03-14T10:00:00Z");
    let list = "  - { name: d, key: k1, budget: { usd: 10, period: 1d } }\n  - { name: m, key: k2, budget: { usd: 10, period: 30d } }\n  - { name: t, key: k3, budget: { usd: 10, period: total } }\n";
    let book = SpendBook::new(&keys(list), now);
    for key in 0..3 {
        book.charge(key, 1_000 * (key as u64 + 1), now);
    }
    let saved = book.entries(now);
    assert_eq!(
        saved[0],
        SpendEntry {
            key: "d".into(),
            period: "1d".into(),
            period_start: unix_secs(at("2026-03-14T00:00:00Z")),
            spent_micros: 1_000,
        }
    );
    assert_eq!(saved[1].period_start, unix_secs(at("2026-03-01T00:00:00Z")));
    assert_eq!(
        (saved[2].period.as_str(), saved[2].period_start),
        ("total", 0)
    );
    // Same day: all three come back.
    let same_day = SpendBook::new(&keys(list), now);
    assert_eq!(same_day.restore(&saved, now + Duration::from_secs(3600)), 3);
    for key in 0..3 {
        assert_eq!(
            same_day.status(key, now).unwrap().spent_micros,
            1_000 * (key as u64 + 1)
        );
    }
    // Next day: the daily key starts at 0, the monthly and total ones keep theirs.
    let tomorrow = at("2026-03-15T08:00:00Z");
    let next_day = SpendBook::new(&keys(list), tomorrow);
    assert_eq!(next_day.restore(&saved, tomorrow), 2);
    let spent: Vec<u64> = (0..3)
        .map(|k| next_day.status(k, tomorrow).unwrap().spent_micros)
        .collect();
    assert_eq!(spent, [0, 2_000, 3_000]);
    // Unknown keys and unknown periods are dropped.
    let odd = vec![
        SpendEntry {
            key: "nobody".into(),
            ..saved[0].clone()
        },
        SpendEntry {
            period: "2w".into(),
            ..saved[1].clone()
        },
    ];
    assert_eq!(SpendBook::new(&keys(list), now).restore(&odd, now), 0);
}

#[test]
fn adjust_moves_spend_within_its_period_only() {
    let book = SpendBook::new(&keys(DAY_KEY), at("2026-03-14T10:00:00Z"));
    let noon = at("2026-03-14T12:00:00Z");
    book.charge(0, 500, noon);
    let reading = book.reading(0, noon).unwrap();
    assert_eq!(
        (reading.name, reading.spent, reading.budget),
        ("d", 500, true)
    );
    assert!(
        book.adjust(0, reading.index, 1_200, noon),
        "others' spend added"
    );
    assert_eq!(book.reading(0, noon).unwrap().spent, 1_700);
    assert!(book.adjust(0, reading.index, -2_000, noon));
    assert_eq!(book.reading(0, noon).unwrap().spent, 0, "never below 0");
    let tomorrow = at("2026-03-15T00:00:01Z");
    assert!(
        !book.adjust(0, reading.index, 99, tomorrow),
        "yesterday's total does not land in today"
    );
    assert_eq!(book.reading(0, tomorrow).unwrap().spent, 0);
}
