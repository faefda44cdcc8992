//! The load generator against tiny std::net test servers on 127.0.0.1: fixed delays,
//! a one-off stall (coordinated omission), SSE streams, error statuses and timeouts.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use loadtest::loadgen::{self, LoadReport, LoadSpec};

/// Answers one request (the n-th the server has seen); returns whether to keep the
/// connection open.
type Handler = Arc<dyn Fn(&mut TcpStream, usize) -> io::Result<bool> + Send + Sync>;

const MAX_CONNECTIONS: usize = 256;
const MAX_REQUESTS_PER_CONNECTION: usize = 100_000;

fn serve(handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    thread::spawn(move || {
        for stream in listener.incoming().take(MAX_CONNECTIONS).flatten() {
            let (handler, seen) = (Arc::clone(&handler), Arc::clone(&seen));
            thread::spawn(move || serve_connection(stream, &handler, &seen));
        }
    });
    addr
}

fn serve_connection(mut stream: TcpStream, handler: &Handler, seen: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        if read_request(&mut stream, &mut buf).is_err() {
            return;
        }
        let n = seen.fetch_add(1, Ordering::SeqCst);
        if !matches!(handler(&mut stream, n), Ok(true)) {
            return;
        }
    }
}

/// Reads one request (head + content-length body) into nothing, keeping leftovers in `buf`.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(buf) {
            let length = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= head + length {
                buf.drain(..head + length);
                return Ok(());
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn ok_response(stream: &mut TcpStream) -> io::Result<bool> {
    let body = r#"{"choices":[{"message":{"role":"assistant","content":"ok"}}]}"#;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-switchyard-target: mock-a\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    Ok(true)
}

fn chunk(stream: &mut TcpStream, event: &str) -> io::Result<()> {
    write!(stream, "{:x}\r\n{event}\r\n", event.len())?;
    stream.flush()
}

/// A streamed chat completion: `tokens` content events, then `[DONE]` unless `cut`.
fn sse_response(stream: &mut TcpStream, tokens: usize, cut: bool) -> io::Result<bool> {
    stream.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    )?;
    for i in 0..tokens {
        let event = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}}}}]}}\n\n"
        );
        chunk(stream, &event)?;
        thread::sleep(Duration::from_millis(2));
    }
    if cut {
        return Ok(false);
    }
    chunk(stream, "data: [DONE]\n\n")?;
    stream.write_all(b"0\r\n\r\n")?;
    Ok(true)
}

fn spec(addr: SocketAddr, rate: Option<f64>, duration_ms: u64, connections: usize) -> LoadSpec {
    LoadSpec {
        rate,
        duration: Duration::from_millis(duration_ms),
        warmup: Duration::ZERO,
        connections,
        timeout: Duration::from_secs(5),
        ..LoadSpec::new(addr)
    }
}

fn run(spec: &LoadSpec) -> LoadReport {
    let report = loadgen::run(spec).expect("load run");
    eprintln!("{report}");
    report
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[test]
fn fixed_delay_shows_up_as_latency() {
    let addr = serve(Arc::new(|s, _| {
        thread::sleep(Duration::from_millis(20));
        ok_response(s)
    }));
    let spec = LoadSpec {
        warmup: Duration::from_millis(200),
        ..spec(addr, Some(50.0), 1000, 4)
    };
    let r = run(&spec);
    assert!(r.open_loop);
    assert!((49..=51).contains(&r.requests), "{r:?}");
    assert_eq!(r.ok, r.requests);
    assert_eq!(r.targets.get("mock-a"), Some(&r.requests));
    let (p50, p99) = (ms(r.latency_us.p50), ms(r.latency_us.p99));
    assert!((18.0..=40.0).contains(&p50), "p50 {p50} ms");
    assert!((18.0..=60.0).contains(&p99), "p99 {p99} ms");
    assert!(r.series.iter().map(|s| s.ok).sum::<u64>() == r.ok);
}

#[test]
fn a_stall_is_charged_to_every_request_it_delayed() {
    let addr = serve(Arc::new(|s, n| {
        if n == 20 {
            thread::sleep(Duration::from_millis(500));
        }
        ok_response(s)
    }));
    let r = run(&spec(addr, Some(100.0), 2000, 1));
    assert!((199..=201).contains(&r.requests), "{r:?}");
    assert_eq!(r.ok, r.requests);
    assert!(
        ms(r.latency_us.p99) >= 250.0,
        "p99 {} ms",
        ms(r.latency_us.p99)
    );
    assert!(
        ms(r.latency_us.p50) < 100.0,
        "p50 {} ms",
        ms(r.latency_us.p50)
    );
    assert!(r.late_starts >= 25, "late starts {}", r.late_starts);
}

#[test]
fn complete_streams_are_counted_with_ttft() {
    let addr = serve(Arc::new(|s, _| sse_response(s, 5, false)));
    let r = run(&LoadSpec {
        stream: true,
        ..spec(addr, Some(40.0), 500, 4)
    });
    let streams = r.streams.expect("stream counts");
    assert!(r.requests >= 19, "{r:?}");
    assert_eq!((streams.completed, streams.errored), (r.requests, 0));
    assert_eq!(r.ok, r.requests);
    let ttft = r.ttft_us.expect("ttft");
    assert!(
        ttft.p50 > 0 && ttft.p50 < r.latency_us.p50,
        "ttft {ttft:?} latency {:?}",
        r.latency_us
    );
}

#[test]
fn stream_texts_are_verified_against_the_expected_answers() {
    // Every stream carries "tok0 tok1 tok2 " and a continuation marker on one event.
    let addr = serve(Arc::new(|s, _| {
        s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        )?;
        for (i, marker) in [
            (0, ""),
            (1, ""),
            (2, ",\"x_switchyard\":{\"continued\":true}"),
        ] {
            let event = format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}}}}]{marker}}}\n\n"
            );
            chunk(s, &event)?;
        }
        chunk(s, "data: [DONE]\n\n")?;
        s.write_all(b"0\r\n\r\n")?;
        Ok(true)
    }));
    let streams = |expected: &[&str]| {
        let r = run(&LoadSpec {
            stream: true,
            expected_answers: expected.iter().map(|a| a.to_string()).collect(),
            ..spec(addr, Some(40.0), 300, 2)
        });
        assert!(r.requests >= 10, "{r:?}");
        let s = r.streams.expect("stream counts");
        assert_eq!((s.completed, s.continued), (r.requests, r.requests));
        (r.requests, s.continued_full, s.bad_success)
    };
    let (n, whole, bad) = streams(&["other", "tok0 tok1 tok2 "]);
    assert_eq!((whole, bad), (n, 0));
    // A duplicated word or a missing one is a bad success, never a whole one.
    let (n, whole, bad) = streams(&["tok0 tok1 tok1 tok2 ", "tok0 tok1 "]);
    assert_eq!((whole, bad), (0, n));
    // Without expected answers nothing is verified.
    let (_, whole, bad) = streams(&[]);
    assert_eq!((whole, bad), (0, 0));
}

#[test]
fn cut_streams_are_errors() {
    let addr = serve(Arc::new(|s, _| sse_response(s, 2, true)));
    let r = run(&LoadSpec {
        stream: true,
        ..spec(addr, Some(40.0), 500, 4)
    });
    let streams = r.streams.expect("stream counts");
    assert!(r.requests >= 19, "{r:?}");
    assert_eq!((streams.completed, streams.errored), (0, r.requests));
    assert_eq!((r.ok, r.errors), (0, r.requests));
    assert_eq!(r.statuses.get(&200), Some(&r.requests));
}

#[test]
fn continuation_markers_are_counted() {
    let addr = serve(Arc::new(|s, _| {
        s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
        )?;
        s.write_all(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")?;
        s.write_all(b"data: {\"x_switchyard\":{\"continued\":true}}\n\ndata: [DONE]\n\n")?;
        Ok(false)
    }));
    let r = run(&LoadSpec {
        stream: true,
        ..spec(addr, Some(40.0), 300, 2)
    });
    let streams = r.streams.expect("stream counts");
    assert!(r.requests >= 11, "{r:?}");
    assert_eq!(
        (streams.completed, streams.continued),
        (r.requests, r.requests)
    );
}

#[test]
fn error_statuses_are_counted() {
    let addr = serve(Arc::new(|s, _| {
        s.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n",
        )?;
        Ok(true)
    }));
    let r = run(&spec(addr, Some(50.0), 500, 2));
    assert!(r.requests >= 24, "{r:?}");
    assert_eq!((r.ok, r.errors), (0, r.requests));
    assert_eq!(r.statuses.get(&503), Some(&r.requests));
    assert_eq!(r.statuses.len(), 1);
}

#[test]
fn refused_connections_are_status_zero() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = run(&spec(addr, Some(50.0), 300, 2));
    assert!(r.requests >= 14, "{r:?}");
    assert_eq!(r.statuses.get(&0), Some(&r.requests));
    assert_eq!(r.ok, 0);
}

#[test]
fn timeouts_are_errors_measured_at_the_timeout() {
    let addr = serve(Arc::new(|_, _| {
        thread::sleep(Duration::from_millis(600));
        Ok(false)
    }));
    let spec = LoadSpec {
        timeout: Duration::from_millis(100),
        ..spec(addr, Some(20.0), 300, 2)
    };
    let r = run(&spec);
    assert!(r.requests >= 5, "{r:?}");
    assert_eq!(r.statuses.get(&0), Some(&r.requests));
    assert!(ms(r.latency_us.p50) >= 100.0, "{:?}", r.latency_us);
}

#[test]
fn closed_loop_over_two_threads_merges() {
    let addr = serve(Arc::new(|s, _| ok_response(s)));
    let spec = LoadSpec {
        threads: 2,
        ..spec(addr, None, 300, 4)
    };
    let r = run(&spec);
    assert!(!r.open_loop);
    assert!(r.requests > 20, "{r:?}");
    assert_eq!(r.ok, r.requests);
    assert_eq!(r.late_starts, 0);
    assert!(r.throughput > 0.0);
}

#[test]
fn report_round_trips_through_json() {
    let addr = serve(Arc::new(|s, _| ok_response(s)));
    let r = run(&spec(addr, Some(20.0), 200, 1));
    let text = serde_json::to_string(&r).unwrap();
    let mut back: LoadReport = serde_json::from_str(&text).unwrap();
    // Floats may differ in the last bit after a decimal round trip.
    assert!((back.throughput - r.throughput).abs() < 1e-6);
    assert!((back.latency_us.mean - r.latency_us.mean).abs() < 1e-6);
    (back.throughput, back.elapsed_s, back.latency_us.mean) =
        (r.throughput, r.elapsed_s, r.latency_us.mean);
    assert_eq!(back, r);
}
