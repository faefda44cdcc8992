//! The control-plane Redis link against a real redis-server: calls, the lease
//! script's exact cap across concurrent links and its expiry, and what the link
//! does when Redis is killed, hung (SIGSTOP), back, or asks for a password.
//! Bounds on time are generous (machines are noisy); what is asserted exactly is
//! counts and error kinds.

#[allow(dead_code)]
#[path = "common/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis_server::RedisServer;
use switchyard::cluster::link::{LinkConfig, LinkError, RedisLink};

/// Far above every deadline below, far below a hang.
const BOUND: Duration = Duration::from_secs(5);

fn config() -> LinkConfig {
    LinkConfig {
        connect_timeout: Duration::from_millis(300),
        io_timeout: Duration::from_millis(200),
        trip_after: 3,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    }
}

fn link(url: &str) -> RedisLink {
    RedisLink::new(url, config()).expect("the URL parses")
}

fn unix_ms_in(after: Duration) -> u64 {
    let at = SystemTime::now() + after;
    at.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Calls `ping` until it succeeds, for at most `BOUND` (and 1000 tries);
/// returns whether it did.
fn ping_until_ok(link: &mut RedisLink) -> bool {
    let deadline = Instant::now() + BOUND;
    for _ in 0..1000 {
        if link.ping().is_ok() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn calls_and_typed_helpers_work() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut link = link(&server.url());
    link.ping().expect("PING");
    link.call(redis::cmd("SET").arg("k").arg(41)).expect("SET");
    link.call(redis::cmd("INCR").arg("k")).expect("INCR");
    assert_eq!(link.get_u64("k"), Ok(Some(42)));
    assert_eq!(link.get_u64("absent"), Ok(None));
    // A Redis error reply is the caller's, and leaves the link connected.
    link.call(redis::cmd("LPUSH").arg("list").arg("x"))
        .expect("LPUSH");
    let wrong = link.call(redis::cmd("INCR").arg("list"));
    assert!(matches!(wrong, Err(LinkError::Protocol(_))), "{wrong:?}");
    assert_eq!(link.get_u64("k"), Ok(Some(42)));
    let state = link.state();
    assert!(state.up && state.connected && state.last_ok.is_some());
    assert_eq!((state.connect_attempts, state.reconnects), (1, 0));
    assert_eq!(state.consecutive_failures, 0);
}

#[test]
fn lease_grants_exactly_the_limit_across_concurrent_links() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (limit, batch) = (100u64, 7u64);
    let end = unix_ms_in(Duration::from_secs(60));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let url = server.url();
            std::thread::spawn(move || {
                let mut link = link(&url);
                let (mut granted, mut asks) = (0u64, 0u32);
                // Bounded: the limit is spent within limit / 1 asks at worst.
                while asks < 1000 {
                    asks += 1;
                    match link.eval_lease("fleet:rpm:key1:w7", batch, limit, end) {
                        Ok(0) => break,
                        Ok(units) => {
                            assert!(units <= batch, "granted {units} of {batch}");
                            granted += units;
                        }
                        Err(err) => panic!("lease: {err}"),
                    }
                }
                granted
            })
        })
        .collect();
    let grants: Vec<u64> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    assert_eq!(grants.iter().sum::<u64>(), limit, "grants {grants:?}");
    let mut link = link(&server.url());
    assert_eq!(link.get_u64("fleet:rpm:key1:w7"), Ok(Some(limit)));
    // Forced usage is counted past the limit, and then nothing more is granted.
    assert_eq!(link.force("fleet:rpm:key1:w7", 5, end), Ok(limit + 5));
    assert_eq!(link.eval_lease("fleet:rpm:key1:w7", 1, limit, end), Ok(0));
    // The key expires at the window's end: its PTTL is within the window.
    let pttl = link.call(redis::cmd("PTTL").arg("fleet:rpm:key1:w7"));
    let pttl: i64 = redis::from_redis_value(&pttl.expect("PTTL")).expect("a number");
    assert!(pttl > 0 && pttl <= 60_000, "pttl {pttl}");
}

#[test]
fn lease_key_expires_at_the_window_end() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut link = link(&server.url());
    let end = unix_ms_in(Duration::from_millis(300));
    assert_eq!(link.eval_lease("fleet:w", 10, 10, end), Ok(10));
    assert_eq!(link.eval_lease("fleet:w", 10, 10, end), Ok(0));
    // Bounded wait for the window to end; then the key is gone and a new window
    // grants again.
    let deadline = Instant::now() + BOUND;
    while link.get_u64("fleet:w") != Ok(None) {
        assert!(Instant::now() < deadline, "the key outlived its window");
        std::thread::sleep(Duration::from_millis(25));
    }
    let next = unix_ms_in(Duration::from_secs(60));
    assert_eq!(link.eval_lease("fleet:w", 4, 10, next), Ok(4));
    // A limit of 0 grants nothing and creates no key.
    assert_eq!(link.eval_lease("fleet:zero", 4, 0, next), Ok(0));
    assert_eq!(link.get_u64("fleet:zero"), Ok(None));
}

#[test]
fn redis_killed_fails_within_bounds_then_fast_and_reconnects_after_restart() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let mut link = link(&server.url());
    link.eval_lease("fleet:k", 1, 10, unix_ms_in(Duration::from_secs(60)))
        .expect("a lease while up");
    server.kill();
    let started = Instant::now();
    let first = link.ping();
    assert!(matches!(first, Err(LinkError::Io(_))), "{first:?}");
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    // Failures pile up (one connect per backoff interval) until the breaker opens.
    let deadline = Instant::now() + BOUND;
    while link.state().up {
        assert!(Instant::now() < deadline, "the breaker never opened");
        let _ = link.ping();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(link.state().consecutive_failures >= 3);
    assert!(link.state().last_error.is_some());
    // Open: a burst of calls fails fast with Down, with at most one connect (the
    // burst may cross the end of one backoff interval).
    let attempts = link.state().connect_attempts;
    let mut down = 0;
    for _ in 0..200 {
        if let Err(LinkError::Down { .. }) = link.ping() {
            down += 1;
        }
    }
    assert!(down >= 190, "only {down} of 200 failed fast");
    assert!(link.state().connect_attempts <= attempts + 1);
    // Back on the same port, empty: the link reconnects by itself and the lease
    // script, forgotten by the new server, is reloaded (NOSCRIPT).
    server.restart();
    assert!(ping_until_ok(&mut link), "no reconnect: {:?}", link.state());
    let end = unix_ms_in(Duration::from_secs(60));
    assert_eq!(link.eval_lease("fleet:k", 3, 10, end), Ok(3));
    let state = link.state();
    assert!(state.up && state.connected);
    assert_eq!(state.consecutive_failures, 0);
    assert_eq!(state.reconnects, 1);
}

#[test]
fn redis_hung_times_out_never_hangs_and_recovers_on_resume() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut link = link(&server.url());
    link.ping().expect("PING while up");
    server.pause();
    let started = Instant::now();
    let hung = link.ping();
    let took = started.elapsed();
    server_resume_guard(&server, || {
        assert!(matches!(hung, Err(LinkError::Timeout(_))), "{hung:?}");
        assert!(took < BOUND, "took {took:?}");
        assert!(!link.state().connected);
        // Reconnecting to the stopped process (the kernel still accepts) times
        // out too, within connect_timeout + slack, and never hangs.
        let deadline = Instant::now() + BOUND;
        let mut attempts = 0;
        while link.state().up {
            assert!(Instant::now() < deadline, "the breaker never opened");
            let started = Instant::now();
            let again = link.ping();
            assert!(
                started.elapsed() < BOUND,
                "a call took {:?}",
                started.elapsed()
            );
            if !matches!(again, Err(LinkError::Down { .. })) {
                attempts += 1;
                assert!(matches!(again, Err(LinkError::Timeout(_))), "{again:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(attempts >= 2, "{attempts} attempts");
    });
    assert!(ping_until_ok(&mut link), "no recovery: {:?}", link.state());
    assert!(link.state().up);
    assert!(link.state().reconnects >= 1);
}

/// Runs `body`, resuming the paused server even when an assertion fails, so the
/// process is never left stopped behind a failed test.
fn server_resume_guard(server: &RedisServer, body: impl FnOnce()) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    server.resume();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn auth_with_password_works_and_a_wrong_one_is_auth() {
    let Some(server) = RedisServer::start_with(&["--requirepass", "s3cret"]) else {
        return;
    };
    let port = server.port();
    let mut good = link(&format!("redis://:s3cret@127.0.0.1:{port}/2"));
    good.call(redis::cmd("SET").arg("in-db-2").arg(1))
        .expect("SET with the password");
    assert_eq!(good.get_u64("in-db-2"), Ok(Some(1)));
    // SELECT 2 applied: db 0 does not have the key.
    let mut db0 = link(&format!("redis://default:s3cret@127.0.0.1:{port}/0"));
    assert_eq!(db0.get_u64("in-db-2"), Ok(None));

    let mut wrong = link(&format!("redis://:nope@127.0.0.1:{port}/0"));
    let refused = wrong.ping();
    assert!(matches!(refused, Err(LinkError::Auth(_))), "{refused:?}");
    let shown = format!("{:?} {:?}", wrong, wrong.state());
    assert!(!shown.contains("nope"), "the password shows: {shown}");
    let mut none = link(&server.url());
    let refused = none.ping();
    assert!(matches!(refused, Err(LinkError::Auth(_))), "{refused:?}");
}

#[test]
fn rediss_to_a_plain_server_is_an_error_not_a_hang_or_panic() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut link = link(&format!("rediss://127.0.0.1:{}/0", server.port()));
    let started = Instant::now();
    let refused = link.ping();
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    assert!(
        matches!(
            refused,
            Err(LinkError::Io(_) | LinkError::Timeout(_) | LinkError::Protocol(_))
        ),
        "{refused:?}"
    );
    assert!(!link.state().connected);
}

#[test]
fn rediss_with_a_private_ca_works_and_without_it_is_refused() {
    let dir = std::env::temp_dir().join(format!("switchyard-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (ca_pem, cert, key) = tls_files(&dir);
    let Some(server) = RedisServer::start_tls(&cert, &key) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}/1", server.port());
    let mut trusted = link(&url);
    trusted.set_ca_pem(ca_pem);
    trusted
        .call(redis::cmd("SET").arg("over-tls").arg(7))
        .expect("SET over TLS");
    assert_eq!(trusted.get_u64("over-tls"), Ok(Some(7)));
    let end = unix_ms_in(Duration::from_secs(60));
    assert_eq!(trusted.eval_lease("fleet:tls", 5, 8, end), Ok(5));
    // The webpki roots do not know the test CA: the handshake fails.
    let mut untrusted = link(&url);
    let refused = untrusted.ping();
    assert!(
        matches!(refused, Err(LinkError::Io(_) | LinkError::Protocol(_))),
        "{refused:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A test CA (returned as PEM) and a certificate it signed for 127.0.0.1 and
/// localhost, written with its key under `dir`.
fn tls_files(dir: &std::path::Path) -> (Vec<u8>, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "switchyard redis test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let server_params = rcgen::CertificateParams::new(names).expect("server params");
    let server_cert = server_params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    let (cert, key) = (dir.join("redis.crt"), dir.join("redis.key"));
    std::fs::write(&cert, server_cert.pem()).expect("write cert");
    std::fs::write(&key, server_key.serialize_pem()).expect("write key");
    (ca.pem().into_bytes(), cert, key)
}
