//! Spend across restarts and reloads, through the gateway's own spend book: kept
//! in `state_dir/spend.json` at shutdown and every `state_flush`, found again at
//! the next start, carried by key name when a reload (keys_file) changes the keys;
//! a corrupt file moved aside; an unusable configured state_dir refused.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use switchyard::gateway::{Gateway, Overrides};
use switchyard::limits::prices::TokenUsage;
use switchyard::limits::state::SPEND_FILE;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("switchyard-spend-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A one-route config with keys `keys` (a YAML list body) and the state in `state`.
fn yaml(mock: &loadtest::mock::MockHandle, keys: &str, top: &str) -> String {
    common::chain_yaml(&[("a", mock)], "", &format!("{keys}{top}"))
}

fn spent(gateway: &Gateway, key: &str) -> u64 {
    let book = gateway.spend();
    let index = book.index_of(key).unwrap_or_else(|| panic!("no key {key}"));
    book.status(index, SystemTime::now()).unwrap().spent_micros
}

fn charge(gateway: &Gateway, key: &str, micros: u64) {
    let book = gateway.spend();
    book.charge(book.index_of(key).unwrap(), micros, SystemTime::now());
}

fn saved(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(SPEND_FILE)).unwrap();
    serde_json::from_str(&text).unwrap()
}

const KEYS: &str = "keys:\n  - { name: team-a, key: ka, budget: { usd: 50, period: 30d } }\n  - { name: team-b, key: kb }\n";

#[test]
fn spend_survives_a_restart() {
    let temp = TempDir::new("restart");
    let mock = common::mock("a");
    let state = temp.0.join("state");
    let text = yaml(
        &mock,
        KEYS,
        &format!("state_dir: {}\nstate_flush: 1h\n", state.display()),
    );
    let first = common::gateway(&text);
    assert!(state.is_dir(), "state_dir is created at start");
    charge(&first, "team-a", 1_234_567);
    charge(&first, "team-b", 89);
    first.shutdown();
    let file = saved(&state);
    assert_eq!(file["version"], 1);
    let keys = file["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["key"], "team-a");
    assert_eq!(keys[0]["spent_micros"], 1_234_567);
    assert_eq!(keys[0]["period"], "30d");

    let second = common::gateway(&text);
    assert_eq!(spent(&second, "team-a"), 1_234_567);
    assert_eq!(spent(&second, "team-b"), 89);
    let book = second.spend();
    let status = book.status(0, SystemTime::now()).unwrap();
    assert_eq!(status.limit_micros, Some(50_000_000));
    assert!(!status.exhausted);
    charge(&second, "team-a", 1);
    second.shutdown();
    let third = common::gateway(&text);
    assert_eq!(spent(&third, "team-a"), 1_234_568);
    third.shutdown();
}

#[test]
fn spend_is_flushed_every_state_flush_without_a_shutdown() {
    let temp = TempDir::new("flush");
    let mock = common::mock("a");
    let text = yaml(
        &mock,
        KEYS,
        &format!("state_dir: {}\nstate_flush: 50ms\n", temp.0.display()),
    );
    let gateway = common::gateway(&text);
    charge(&gateway, "team-b", 4_242);
    let file = temp.0.join(SPEND_FILE);
    // What a kill -9 now would leave behind: the last flush.
    let flushed = common::wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["keys"][1]["spent_micros"] == 4_242)
    });
    assert!(flushed, "spend reached {} within 10 s", file.display());
    gateway.shutdown();
}

#[test]
fn a_reload_of_keys_file_keeps_spend_and_adds_and_revokes_keys() {
    let temp = TempDir::new("reload");
    let mock = common::mock("a");
    let keys_file = temp.0.join("keys.yaml");
    std::fs::write(&keys_file, "- { name: team-c, key: kc, budget: { usd: 1, period: 1d } }\n- { name: team-d, key: kd }\n").unwrap();
    let config_file = temp.0.join("switchyard.yaml");
    let text = yaml(
        &mock,
        KEYS,
        &format!(
            "keys_file: {}\nstate_dir: {}\nstate_flush: 1h\n",
            keys_file.display(),
            temp.0.join("state").display()
        ),
    );
    std::fs::write(&config_file, &text).unwrap();
    let config = common::config(&text);
    let gateway = Gateway::start(config, Some(config_file.clone()), &Overrides::default())
        .expect("gateway starts");
    charge(&gateway, "team-a", 10);
    charge(&gateway, "team-c", 20);
    charge(&gateway, "team-d", 30);
    // Rotate: team-d revoked, team-e added, team-c's budget raised.
    std::fs::write(&keys_file, "- { name: team-e, key: ke }\n- { name: team-c, key: kc2, budget: { usd: 5, period: 1d } }\n").unwrap();
    gateway.control.reload_file().expect("reload");
    let book = gateway.spend();
    assert_eq!(book.len(), 4);
    assert_eq!(book.index_of("team-d"), None);
    assert_eq!(spent(&gateway, "team-a"), 10);
    assert_eq!(spent(&gateway, "team-c"), 20);
    assert_eq!(spent(&gateway, "team-e"), 0);
    let c = book.index_of("team-c").unwrap();
    assert_eq!(
        book.status(c, SystemTime::now()).unwrap().limit_micros,
        Some(5_000_000)
    );
    // A broken keys file keeps the running keys and their spend.
    std::fs::write(&keys_file, "- { name: team-f }\n").unwrap();
    let error = gateway.control.reload_file().unwrap_err().to_string();
    assert!(error.contains("keys.yaml:1:"), "{error}");
    assert_eq!(gateway.spend().len(), 4);
    gateway.shutdown();
    let names: Vec<String> = saved(&temp.0.join("state"))["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["team-a", "team-b", "team-e", "team-c"]);
}

#[test]
fn a_reload_re_reads_prices_file() {
    let temp = TempDir::new("prices");
    let mock = common::mock("a");
    let prices = temp.0.join("prices.yaml");
    std::fs::write(&prices, "a/a-model: { input: 1, output: 2 }\n").unwrap();
    let config_file = temp.0.join("switchyard.yaml");
    let text = yaml(&mock, KEYS, &format!("prices_file: {}\n", prices.display()));
    std::fs::write(&config_file, &text).unwrap();
    let gateway = Gateway::start(
        common::config(&text),
        Some(config_file),
        &Overrides::default(),
    )
    .expect("gateway starts");
    let usage = TokenUsage {
        input: 1_000_000,
        output: 1_000_000,
        cached_input: 0,
    };
    let cost = |gateway: &Gateway| {
        let ledger = gateway.control.spend.ledger();
        let cost = ledger.charge(Some(1), 0, "a-model", &usage, SystemTime::now());
        cost.map(|c| c.micros)
    };
    assert_eq!(cost(&gateway), Some(3_000_000));
    std::fs::write(&prices, "a/*: { input: 0.5, output: 0.5 }\n").unwrap();
    gateway.control.reload_file().expect("reload");
    assert_eq!(cost(&gateway), Some(1_000_000));
    // Both charges landed on team-b, across the two generations.
    assert_eq!(spent(&gateway, "team-b"), 4_000_000);
    std::fs::write(&prices, "").unwrap();
    gateway.control.reload_file().expect("reload");
    assert_eq!(cost(&gateway), None);
    gateway.shutdown();
}

#[test]
fn a_corrupt_state_file_is_moved_aside_and_spend_starts_at_zero() {
    let temp = TempDir::new("corrupt");
    let mock = common::mock("a");
    std::fs::write(temp.0.join(SPEND_FILE), b"{\"version\": 1, \"keys\": [").unwrap();
    let text = yaml(&mock, KEYS, &format!("state_dir: {}\n", temp.0.display()));
    let gateway = common::gateway(&text);
    assert_eq!(spent(&gateway, "team-a"), 0);
    let aside: Vec<String> = std::fs::read_dir(&temp.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("spend.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept = std::fs::read(temp.0.join(&aside[0])).unwrap();
    assert_eq!(kept, b"{\"version\": 1, \"keys\": [");
    gateway.shutdown();
    // The next start reads the fresh file.
    assert_eq!(saved(&temp.0)["keys"][0]["spent_micros"], 0);
}

#[test]
fn an_unusable_configured_state_dir_stops_the_start() {
    let temp = TempDir::new("unusable");
    let mock = common::mock("a");
    let blocker = temp.0.join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let text = yaml(
        &mock,
        KEYS,
        &format!("state_dir: {}/state\n", blocker.display()),
    );
    let error = match Gateway::start(common::config(&text), None, &Overrides::default()) {
        Ok(_) => panic!("started with an unusable state_dir"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("not-a-dir/state"), "{error}");
    assert!(error.contains("cannot create it"), "{error}");
}
