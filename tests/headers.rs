//! The header policy end to end on 127.0.0.1: which client headers reach an
//! OpenAI-compatible and an Anthropic-kind provider (the mock records what it
//! read), and which provider headers come back renamed, on a whole answer, a
//! stream head and a returned 429 (a raw-TCP upstream sends them), with
//! `x-switchyard-overhead-ms` on every proxied answer.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use loadtest::client::{chat_body, Client, HttpResponse};
use loadtest::mock::RecordedRequest;

/// What a client sends besides its body: headers the policy forwards, denies,
/// or never forwards.
const CLIENT_HEADERS: &[(&str, &str)] = &[
    ("authorization", "Bearer client-secret"),
    ("x-api-key", "client-key"),
    ("anthropic-beta", "tools-2024-04-04"),
    ("anthropic-version", "2023-01-01"),
    ("openai-beta", "assistants=v2"),
    (
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ),
    ("tracestate", "acme=1"),
    ("x-acme-team", "blue"),
    ("x-acme-secret", "do-not-send"),
    ("x-other", "not-allowed"),
    ("cookie", "session=1"),
    ("user-agent", "acme-sdk/1.0"),
];

const FORWARD: &str = "forward_headers: { allow: [x-acme-*], deny: [x-acme-secret] }";

/// One request with [`CLIENT_HEADERS`]; what the mock read.
fn forwarded(yaml: &str, mock: &loadtest::mock::MockHandle) -> RecordedRequest {
    let gw = gateway(yaml);
    let mut client = client(&gw);
    let response = client
        .chat(&chat_body("chat", false), CLIENT_HEADERS)
        .expect("response");
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    mock.last_request().expect("the mock read a request")
}

fn assert_common(seen: &RecordedRequest) {
    assert_eq!(
        seen.header("traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(seen.header("tracestate"), Some("acme=1"));
    assert_eq!(seen.header("x-acme-team"), Some("blue"));
    assert_eq!(seen.header("x-acme-secret"), None, "denied");
    assert_eq!(seen.header("x-other"), None, "not allowed");
    assert_eq!(seen.header("cookie"), None, "never forwarded");
    let ua = seen.header("user-agent").expect("a user-agent");
    assert!(ua.starts_with("switchyard/"), "{ua}");
    assert!(ua.ends_with(" acme-sdk/1.0"), "{ua}");
    // The gateway's own request id, not anything the client sent.
    assert!(seen.header("x-request-id").is_some());
}

#[test]
fn openai_compatible_target_gets_its_defaults_and_the_allowed_headers() {
    let mock = mock("compat");
    let settings = format!(
        "{{ kind: openai-compatible, base_url: \"{}\", api_key: sk-provider }}",
        mock.base_url()
    );
    let seen = forwarded(
        &translated_route_yaml("compat", &settings, "m", None, FORWARD),
        &mock,
    );
    assert_common(&seen);
    assert_eq!(seen.header("openai-beta"), Some("assistants=v2"));
    assert_eq!(seen.header("anthropic-beta"), None, "not this kind's");
    assert_eq!(seen.header("authorization"), Some("Bearer sk-provider"));
    assert_eq!(seen.header("x-api-key"), None);
    let auths = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "authorization")
        .count();
    assert_eq!(auths, 1);
}

#[test]
fn anthropic_target_gets_its_beta_and_version_and_its_own_key() {
    let mock = mock("anthropic");
    let settings = format!(
        "{{ kind: anthropic, base_url: \"{}\", api_key: sk-ant-test }}",
        mock.base_url()
    );
    let yaml = translated_route_yaml("anthropic", &settings, "claude-sonnet-4-5", None, FORWARD);
    let seen = forwarded(&yaml, &mock);
    assert_common(&seen);
    assert_eq!(seen.header("anthropic-beta"), Some("tools-2024-04-04"));
    // The client's version replaces the adapter's default, once.
    let versions: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "anthropic-version")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(versions, ["2023-01-01"]);
    assert_eq!(seen.header("openai-beta"), None, "not this kind's");
    assert_eq!(seen.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(seen.header("authorization"), None);
}

/// A provider-configured header wins over the client's of the same name.
#[test]
fn configured_headers_win_over_forwarded_ones() {
    let mock = mock("compat");
    let settings = format!(
        "{{ kind: openai-compatible, base_url: \"{}\", headers: {{ x-acme-team: ops }} }}",
        mock.base_url()
    );
    let seen = forwarded(
        &translated_route_yaml("compat", &settings, "m", None, FORWARD),
        &mock,
    );
    let teams: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "x-acme-team")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(teams, ["ops"]);
}

/// An upstream on 127.0.0.1 that answers up to `count` connections with `response`
/// (each read up to its body first), for at most 20 s.
fn raw_upstream(response: String, count: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < count && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    served += 1;
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                    read_request(&mut conn);
                    let _ = conn.write_all(response.as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    format!("http://{addr}")
}

/// Reads one request head and its content-length body (bounded to 1 MiB).
fn read_request(conn: &mut std::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 1 << 20 {
        let Ok(n) = conn.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return;
        }
    }
}

const RATE_HEADERS: &str = "x-ratelimit-limit-requests: 500\r\n\
x-ratelimit-remaining-tokens: 12345\r\n\
x-request-id: req_upstream_42\r\n";

fn canned(status: &str, extra: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{RATE_HEADERS}{extra}content-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn one_route(url: String, route_extra: &str) -> String {
    chain_yaml_at(&[("raw", url)], route_extra, "")
}

fn assert_overhead(response: &HttpResponse) {
    let overhead = response
        .header("x-switchyard-overhead-ms")
        .expect("x-switchyard-overhead-ms");
    let ms: f64 = overhead.parse().expect("a number");
    assert!(ms >= 0.0 && ms.is_finite(), "{overhead}");
    let decimals = overhead.split('.').nth(1).map(str::len);
    assert_eq!(decimals, Some(3), "{overhead}");
}

fn assert_returned(response: &HttpResponse) {
    assert_eq!(
        response.header("x-switchyard-upstream-ratelimit-limit-requests"),
        Some("500")
    );
    assert_eq!(
        response.header("x-switchyard-upstream-ratelimit-remaining-tokens"),
        Some("12345")
    );
    assert_eq!(
        response.header("x-switchyard-upstream-request-id"),
        Some("req_upstream_42")
    );
    assert_ne!(response.header("x-request-id"), Some("req_upstream_42"));
    let own_name = response
        .headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-ratelimit-"))
        .count();
    assert_eq!(own_name, 0, "{:?}", response.headers);
    assert_overhead(response);
}

const COMPLETION: &str = r#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;

#[test]
fn whole_answer_returns_upstream_rate_limits_and_request_id() {
    let url = raw_upstream(canned("200 OK", "", "application/json", COMPLETION), 1);
    let gw = gateway(&one_route(url, ""));
    let response = chat(gw.addr());
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_returned(&response);
}

#[test]
fn stream_head_returns_upstream_rate_limits_and_request_id() {
    let events = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n";
    let url = raw_upstream(canned("200 OK", "", "text/event-stream", events), 1);
    let gw = gateway(&one_route(url, ""));
    let response = chat_stream(gw.addr());
    assert_eq!(response.status, 200);
    assert!(
        String::from_utf8_lossy(&response.body).contains("hi"),
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_returned(&response);
}

#[test]
fn returned_429_keeps_retry_after_and_returns_upstream_headers() {
    let body =
        r#"{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limited"}}"#;
    let response = canned(
        "429 Too Many Requests",
        "retry-after: 7\r\n",
        "application/json",
        body,
    );
    let url = raw_upstream(response, 4);
    let gw = gateway(&one_route(url, "retry: { attempts: 1 }"));
    let response = chat(gw.addr());
    assert_eq!(
        response.status,
        429,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("retry-after"), Some("7"));
    assert_returned(&response);
}

/// The gateway's own error after attempts carries its overhead, and no
/// provider's headers.
#[test]
fn gateway_error_has_overhead_and_no_upstream_headers() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let gw = gateway(&one_route(url, "retry: { attempts: 1 }"));
    let mut client = Client::connect(gw.addr()).expect("connect");
    let response = client
        .chat(&chat_body("chat", false), &[])
        .expect("response");
    assert!(response.status >= 500, "{}", response.status);
    assert_overhead(&response);
    let upstream = response
        .headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-switchyard-upstream-"))
        .count();
    assert_eq!(upstream, 0, "{:?}", response.headers);
}

/// Bedrock signs its requests: forwarded headers travel unsigned beside the
/// signed ones, and a client's `x-amz-*` never reaches it (one date, the
/// gateway's token, the same signed list).
#[test]
fn bedrock_forwarded_headers_leave_the_signature_alone() {
    let mock = mock("bedrock");
    let settings = format!(
        "{{ kind: bedrock, base_url: \"{}\", region: us-east-1, aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: secret, aws_session_token: tok }}",
        mock.base_url()
    );
    let yaml = translated_route_yaml(
        "bedrock",
        &settings,
        "anthropic.claude-3-haiku-20240307-v1:0",
        None,
        FORWARD,
    );
    let gw = gateway(&yaml);
    let mut client = client(&gw);
    let mut headers = CLIENT_HEADERS.to_vec();
    headers.push(("x-amz-date", "19700101T000000Z"));
    headers.push(("x-amz-security-token", "client-token"));
    let response = client
        .chat(&chat_body("chat", false), &headers)
        .expect("response");
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let seen = mock.last_request().expect("the mock read a request");
    assert_common(&seen);
    let auth = seen.header("authorization").expect("signed");
    assert!(
        auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "),
        "{auth}"
    );
    let dates: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "x-amz-date")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(dates.len(), 1);
    assert_ne!(dates[0], "19700101T000000Z");
    assert_eq!(seen.header("x-amz-security-token"), Some("tok"));
    assert_eq!(seen.header("openai-beta"), None);
    assert_eq!(seen.header("anthropic-beta"), None);
}
