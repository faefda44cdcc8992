//! Trace export end to end: an OTLP/HTTP receiver in the test decodes the real
//! protobuf (prost messages mirroring opentelemetry-proto) and collects spans.
//! One test function runs the scenarios in turn: the span queue is one per
//! process, so two gateways at once would export each other's spans.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use loadtest::client::{chat_body, Client};
use prost::Message;

// --- opentelemetry-proto (collector/trace/v1, trace/v1, common/v1, resource/v1) ---

#[derive(Clone, PartialEq, Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct Resource {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    spans: Vec<Span>,
}

#[derive(Clone, PartialEq, Message)]
struct InstrumentationScope {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    version: String,
}

#[derive(Clone, PartialEq, Message)]
struct Span {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    trace_state: String,
    #[prost(bytes = "vec", tag = "4")]
    parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    name: String,
    #[prost(int32, tag = "6")]
    kind: i32,
    #[prost(fixed64, tag = "7")]
    start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    attributes: Vec<KeyValue>,
    #[prost(message, optional, tag = "15")]
    status: Option<Status>,
}

#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(string, tag = "2")]
    message: String,
    #[prost(int32, tag = "3")]
    code: i32,
}

#[derive(Clone, PartialEq, Message)]
struct KeyValue {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4")]
    value: Option<any_value::Value>,
}

mod any_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        String(String),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
        #[prost(double, tag = "4")]
        Double(f64),
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text_attr(attrs: &[KeyValue], key: &str) -> String {
    match attr(attrs, key) {
        Some(any_value::Value::String(s)) => s.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> i64 {
    match attr(attrs, key) {
        Some(any_value::Value::Int(i)) => *i,
        other => panic!("{key}: {other:?}"),
    }
}

// --- the receiver ---

#[derive(Clone, Copy, PartialEq)]
enum Collector {
    Answering,
    /// Reads the request, never answers.
    Hanging,
}

type Headers = Vec<(String, String)>;

struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(Headers, ExportTraceServiceRequest)>>>,
}

impl Receiver {
    fn start(mode: Collector) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sink = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(200) {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let Some((headers, body)) = read_request(&mut conn) else {
                    continue;
                };
                if mode == Collector::Hanging {
                    std::thread::sleep(Duration::from_secs(4));
                    continue;
                }
                let decoded = ExportTraceServiceRequest::decode(body.as_slice())
                    .expect("the export is valid OTLP protobuf");
                sink.lock().unwrap().push((headers, decoded));
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
        Receiver { addr, requests }
    }

    fn spans(&self) -> Vec<Span> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, r)| r.resource_spans.iter())
            .flat_map(|r| r.scope_spans.iter())
            .flat_map(|s| s.spans.iter().cloned())
            .collect()
    }
}

/// (headers, body) of one HTTP/1.1 request with a content-length (bounded).
fn read_request(conn: &mut std::net::TcpStream) -> Option<(Headers, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: Headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")?
        .1
        .parse()
        .ok()?;
    while buf.len() < head_end + length.min(16 << 20) {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((headers, buf[head_end..head_end + length].to_vec()))
}

fn telemetry_yaml(endpoint: &str, ratio: f64) -> String {
    format!(
        "telemetry:\n  otlp_endpoint: \"{endpoint}\"\n  sample_ratio: {ratio}\n  headers: {{ x-api-key: secret-key }}\n"
    )
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn traces_export_over_otlp_and_never_hold_requests() {
    let (primary, fallback) = primary_and_fallback();
    primary.set_fault(fault_status(503));

    // 1. A client traceparent: root continues it, two attempt children.
    let receiver = Receiver::start(Collector::Answering);
    let endpoint = format!("http://{}/v1/traces", receiver.addr);
    let gw = fallback_chain(
        &primary,
        &fallback,
        "retry: { attempts: 1 }",
        &telemetry_yaml(&endpoint, 1.0),
    );
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let mut client = Client::connect(gw.addr()).unwrap();
    let response = client
        .chat(&chat_body("chat", false), &[("traceparent", &traceparent)])
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    wait_until(Duration::from_secs(5), || receiver.spans().len() >= 3);
    gw.shutdown();
    let spans = receiver.spans();
    println!("{spans:#?}");
    assert_eq!(spans.len(), 3, "{spans:#?}");
    assert!(spans.iter().all(|s| hex(&s.trace_id) == TRACE));
    let root = spans.iter().find(|s| s.kind == 2).expect("a server span");
    assert_eq!(hex(&root.parent_span_id), PARENT);
    assert_eq!(root.name, "POST /v1/chat/completions");
    assert_eq!(int_attr(&root.attributes, "http.response.status_code"), 200);
    assert_eq!(text_attr(&root.attributes, "http.route"), "chat");
    assert_eq!(int_attr(&root.attributes, "switchyard.attempts"), 2);
    let mut attempts: Vec<&Span> = spans.iter().filter(|s| s.kind == 3).collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|s| s.parent_span_id == root.span_id));
    assert_eq!(
        text_attr(&attempts[0].attributes, "switchyard.target"),
        "primary/primary-model"
    );
    assert_eq!(
        int_attr(&attempts[0].attributes, "http.response.status_code"),
        503
    );
    assert_eq!(
        text_attr(&attempts[0].attributes, "switchyard.failure_class"),
        "server_error"
    );
    assert_eq!(
        text_attr(&attempts[0].attributes, "switchyard.decision"),
        "fallback"
    );
    assert_eq!(
        text_attr(&attempts[1].attributes, "switchyard.target"),
        "fallback/fallback-model"
    );
    assert_eq!(
        int_attr(&attempts[1].attributes, "http.response.status_code"),
        200
    );
    assert_eq!(attempts[0].status.as_ref().map(|s| s.code), Some(2));
    // The provider's traceparent names the gateway's request span, not the client's.
    let upstream = fallback.last_request().expect("the fallback was asked");
    assert_eq!(
        upstream.header("traceparent"),
        Some(format!("00-{TRACE}-{}-01", hex(&root.span_id)).as_str())
    );
    let requests = receiver.requests.lock().unwrap();
    let (headers, request) = &requests[0];
    assert!(headers
        .iter()
        .any(|(k, v)| k == "x-api-key" && v == "secret-key"));
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(
        text_attr(&resource.attributes, "service.name"),
        "switchyard"
    );
    drop(requests);

    // 2. sample_ratio 0 and no client flag: nothing exported.
    let receiver = Receiver::start(Collector::Answering);
    let endpoint = format!("http://{}/v1/traces", receiver.addr);
    let gw = fallback_chain(
        &primary,
        &fallback,
        "retry: { attempts: 1 }",
        &telemetry_yaml(&endpoint, 0.0),
    );
    let mut client = Client::connect(gw.addr()).unwrap();
    for _ in 0..5 {
        assert_eq!(
            client.chat(&chat_body("chat", false), &[]).unwrap().status,
            200
        );
    }
    gw.shutdown();
    assert_eq!(receiver.spans().len(), 0);

    // 3. A collector that is down, then one that hangs: requests unaffected.
    let (dropped_before, _, _) = switchyard::telemetry::queue::counts();
    let hanging = Receiver::start(Collector::Hanging);
    let down = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for addr in [down, hanging.addr] {
        let endpoint = format!("http://{addr}/v1/traces");
        let gw = fallback_chain(
            &primary,
            &fallback,
            "retry: { attempts: 1 }",
            &telemetry_yaml(&endpoint, 1.0),
        );
        let mut client = Client::connect(gw.addr()).unwrap();
        let started = std::time::Instant::now();
        let mut failures = 0;
        for _ in 0..20 {
            if client.chat(&chat_body("chat", false), &[]).unwrap().status != 200 {
                failures += 1;
            }
        }
        println!(
            "20 requests with the collector at {addr}: {:?}",
            started.elapsed()
        );
        assert_eq!(failures, 0);
        gw.shutdown();
    }
    let (dropped_after, _, failed) = switchyard::telemetry::queue::counts();
    println!("dropped {dropped_before} -> {dropped_after}, failed batches {failed}");
    assert!(
        dropped_after >= dropped_before + 60,
        "each request's 3 spans dropped"
    );
}
