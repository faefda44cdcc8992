//! Azure OpenAI and private-CA TLS, end to end on 127.0.0.1: a small HTTP server
//! (plain or TLS-terminating with an `rcgen` CA and a `localhost` certificate)
//! records what the gateway sends and answers in OpenAI's shapes. Also the
//! per-target overrides (`headers`, `query`, `timeouts`) against the mock provider.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loadtest::client::chat_body;
use loadtest::mock::{Fault, MockConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// How long a test server lives at most, whatever the test does.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);
/// Requests one upstream connection serves at most.
const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
/// Largest request head or body the test server reads.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Azure's prompt-filter rejection, as the service sends it.
const PROMPT_FILTERED: &str = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":true,"severity":"medium"}}}}}"#;

// ---------------------------------------------------------------------------
// A test CA and a `localhost` server certificate.

/// A throwaway CA (its PEM in a temp file) and a TLS server config for `localhost`.
struct Pki {
    dir: PathBuf,
    ca_file: PathBuf,
    server: Arc<ServerConfig>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pki() -> Pki {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "switchyard test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    let server_cert = server_params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");

    let dir = std::env::temp_dir().join(format!(
        "switchyard-azure-tls-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA PEM");

    let chain: Vec<CertificateDer<'static>> = vec![server_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server TLS config");
    Pki {
        dir,
        ca_file,
        server: Arc::new(server),
    }
}

// ---------------------------------------------------------------------------
// A recording upstream that answers in OpenAI's shapes, over TCP or TLS.

/// One request the upstream read.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    /// Names lower-cased, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The SNI name the client sent (TLS only).
    sni: Option<String>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What the upstream answers.
#[derive(Clone, Debug)]
enum Reply {
    /// A chat completion ("Hello over TLS"), whole or streamed as the body asks,
    /// ending with this `finish_reason`.
    Answer { finish_reason: &'static str },
    /// This status with this JSON body.
    Error { status: u16, body: String },
}

struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<Reply>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Upstream {
    fn start(tls: Option<Arc<ServerConfig>>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let upstream = Upstream {
            addr: listener.local_addr().expect("upstream addr"),
            seen: Arc::default(),
            reply: Arc::new(Mutex::new(Reply::Answer {
                finish_reason: "stop",
            })),
            stop: Arc::default(),
        };
        let (seen, reply, stop) = (
            upstream.seen.clone(),
            upstream.reply.clone(),
            upstream.stop.clone(),
        );
        std::thread::spawn(move || {
            let until = Instant::now() + SERVER_LIFETIME;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (tls, seen, reply) = (tls.clone(), seen.clone(), reply.clone());
                        std::thread::spawn(move || serve(tcp, tls, &seen, &reply));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        upstream
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn set_reply(&self, reply: Reply) {
        *self.reply.lock().expect("reply lock") = reply;
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    fn last(&self) -> Seen {
        self.requests().pop().expect("the upstream saw a request")
    }
}

/// A byte stream that may know the SNI name its client sent.
trait Conn: Read + Write {
    fn sni(&self) -> Option<String>;
}

impl Conn for TcpStream {
    fn sni(&self) -> Option<String> {
        None
    }
}

impl Conn for StreamOwned<ServerConnection, TcpStream> {
    fn sni(&self) -> Option<String> {
        self.conn.server_name().map(str::to_string)
    }
}

fn serve(
    tcp: TcpStream,
    tls: Option<Arc<ServerConfig>>,
    seen: &Mutex<Vec<Seen>>,
    reply: &Mutex<Reply>,
) {
    if tcp.set_nonblocking(false).is_err()
        || tcp.set_read_timeout(Some(Duration::from_secs(10))).is_err()
    {
        return;
    }
    match tls {
        Some(config) => {
            let Ok(conn) = ServerConnection::new(config) else {
                return;
            };
            serve_http(&mut StreamOwned::new(conn, tcp), seen, reply);
        }
        None => serve_http(&mut { tcp }, seen, reply),
    }
}

/// Serves keep-alive HTTP/1.1 requests until the peer closes or errs (a failed
/// TLS handshake ends here at the first read).
fn serve_http(conn: &mut dyn Conn, seen: &Mutex<Vec<Seen>>, reply: &Mutex<Reply>) {
    let mut buf: Vec<u8> = Vec::new();
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let Some(request) = read_request(conn, &mut buf) else {
            return;
        };
        let answer = reply.lock().map(|r| r.clone());
        let Ok(answer) = answer else { return };
        let stream = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|v| v["stream"].as_bool())
            .unwrap_or(false);
        let model = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|v| v["model"].as_str().map(str::to_string))
            .unwrap_or_default();
        if let Ok(mut seen) = seen.lock() {
            seen.push(Seen {
                sni: conn.sni(),
                ..request
            });
        }
        let bytes = match answer {
            Reply::Error { status, body } => http_response(status, "application/json", &body),
            Reply::Answer { finish_reason } if stream => sse_response(&model, finish_reason),
            Reply::Answer { finish_reason } => http_response(
                200,
                "application/json",
                &serde_json::json!({
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello over TLS"},
                        "finish_reason": finish_reason,
                    }],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                })
                .to_string(),
            ),
        };
        if conn.write_all(&bytes).and_then(|()| conn.flush()).is_err() {
            return;
        }
    }
}

/// Reads one request (head + Content-Length body); `None` on close or error.
fn read_request(conn: &mut dyn Conn, buf: &mut Vec<u8>) -> Option<Seen> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return None;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(&buf[..head_end]).ok()?;
    let path = parsed.path?.to_string();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    if length > MAX_REQUEST_BYTES {
        return None;
    }
    while buf.len() < head_end + length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Some(Seen {
        path,
        headers,
        body,
        sni: None,
    })
}

fn http_response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A chunked event stream in Azure's style: a `prompt_filter_results` chunk with no
/// choices, a role chunk, three content chunks, the finish chunk, `[DONE]`.
fn sse_response(model: &str, finish_reason: &str) -> Vec<u8> {
    let chunk = |choices: serde_json::Value| {
        serde_json::json!({
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": choices,
        })
        .to_string()
    };
    let mut events = vec![
        r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#.to_string(),
        chunk(serde_json::json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])),
    ];
    for word in ["Hello", " over", " TLS"] {
        events.push(chunk(
            serde_json::json!([{"index": 0, "delta": {"content": word}, "finish_reason": null}]),
        ));
    }
    events.push(chunk(
        serde_json::json!([{"index": 0, "delta": {}, "finish_reason": finish_reason}]),
    ));
    events.push("[DONE]".to_string());
    let mut out =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for event in events {
        let frame = format!("data: {event}\n\n");
        out.extend_from_slice(format!("{:x}\r\n{frame}\r\n", frame.len()).as_bytes());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// ---------------------------------------------------------------------------
// Helpers.

fn ask(
    gateway: &switchyard::gateway::Gateway,
    model: &str,
    stream: bool,
) -> loadtest::client::HttpResponse {
    common::client(gateway)
        .chat(&chat_body(model, stream), &[])
        .expect("gateway answers")
}

fn attempts_of(response: &loadtest::client::HttpResponse) -> Vec<serde_json::Value> {
    response.json()["error"]["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn yaml_path(path: &std::path::Path) -> String {
    serde_json::Value::from(path.display().to_string()).to_string()
}

// ---------------------------------------------------------------------------
// Private CA over TLS.

#[test]
fn https_provider_with_ca_file_serves_whole_and_streamed_answers() {
    let pki = pki();
    let upstream = Upstream::start(Some(pki.server.clone()));
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n  \
         private: {{ kind: openai-compatible, base_url: \"https://localhost:{port}/v1\", api_key: sk-private, ca_file: {ca} }}\n\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: private, model: llama-3-70b }}\n",
        port = upstream.port(),
        ca = yaml_path(&pki.ca_file),
    );
    let gateway = common::gateway(&yaml);

    let whole = ask(&gateway, "chat", false);
    assert_eq!(whole.status, 200, "{}", whole.text());
    assert_eq!(
        whole.json()["choices"][0]["message"]["content"],
        "Hello over TLS"
    );
    assert_eq!(
        whole.header("x-switchyard-target"),
        Some("private/llama-3-70b")
    );
    let seen = upstream.last();
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.header("authorization"), Some("Bearer sk-private"));
    assert_eq!(seen.json()["model"], "llama-3-70b");

    let streamed = ask(&gateway, "chat", true);
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    assert_eq!(streamed.stream_text(), "Hello over TLS");
    assert_eq!(
        streamed.sse_data().last().map(String::as_str),
        Some("[DONE]")
    );
    assert_eq!(upstream.last().sni.as_deref(), Some("localhost"));
    assert_eq!(upstream.requests().len(), 2);
    gateway.shutdown();
}

#[test]
fn https_provider_without_ca_file_is_a_connect_failure_and_falls_back() {
    let pki = pki();
    let upstream = Upstream::start(Some(pki.server.clone()));
    let plain = common::mock("plain");
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n  \
         untrusted: {{ kind: openai-compatible, base_url: \"https://localhost:{port}/v1\" }}\n  \
         plain: {{ kind: openai-compatible, base_url: \"{plain}\" }}\n\
         routes:\n  \
         - name: chat\n    match: {{ model: chat }}\n    strategy: priority\n    retry: {{ attempts: 1 }}\n    targets:\n      \
         - {{ provider: untrusted, model: llama, priority: 0 }}\n      \
         - {{ provider: plain, model: plain-model, priority: 1 }}\n  \
         - name: alone\n    match: {{ model: alone }}\n    retry: {{ attempts: 1 }}\n    targets:\n      \
         - {{ provider: untrusted, model: llama }}\n",
        port = upstream.port(),
        plain = plain.base_url(),
    );
    let gateway = common::gateway(&yaml);

    let served = ask(&gateway, "chat", false);
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(
        served.header("x-switchyard-target"),
        Some("plain/plain-model")
    );
    assert_eq!(served.header("x-switchyard-attempts"), Some("2"));
    assert!(served.text().contains("Hello from plain"));

    let failed = ask(&gateway, "alone", false);
    assert_eq!(failed.status, 502, "{}", failed.text());
    let attempts = attempts_of(&failed);
    assert_eq!(attempts.len(), 1, "{}", failed.text());
    assert_eq!(attempts[0]["class"], "connect");
    let detail = attempts[0]["detail"].as_str().unwrap_or("").to_string();
    assert!(
        detail.contains("TLS handshake") && detail.contains("UnknownIssuer"),
        "{detail}"
    );
    // The handshake never got as far as a request.
    assert!(upstream.requests().is_empty());
    gateway.shutdown();
}

#[test]
fn a_bad_ca_file_is_a_config_error_with_its_line() {
    let missing = "/nonexistent/switchyard-test/ca.pem";
    let yaml = format!(
        "listen: 127.0.0.1:0\nproviders:\n  \
         private:\n    kind: openai-compatible\n    base_url: https://localhost:8443/v1\n    ca_file: {missing}\n\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      - {{ provider: private, model: m }}\n"
    );
    let errors = switchyard::config::load_str(&yaml, "gw.yaml", &|_| None)
        .expect_err("a missing CA file is rejected")
        .to_string();
    assert!(errors.contains("gw.yaml:6"), "{errors}");
    assert!(
        errors.contains("ca_file") && errors.contains(missing),
        "{errors}"
    );

    let pki = pki();
    let not_pem = pki.dir.join("not.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").expect("write");
    let errors = switchyard::config::load_str(
        &yaml.replace(missing, &not_pem.display().to_string()),
        "gw.yaml",
        &|_| None,
    )
    .expect_err("a file without certificates is rejected")
    .to_string();
    assert!(
        errors.contains("gw.yaml:6") && errors.contains("CERTIFICATE"),
        "{errors}"
    );

    let on_http = yaml
        .replace("https://localhost:8443", "http://127.0.0.1:8080")
        .replace(missing, &pki.ca_file.display().to_string());
    let errors = switchyard::config::load_str(&on_http, "gw.yaml", &|_| None)
        .expect_err("a CA file on an http provider is rejected")
        .to_string();
    assert!(
        errors.contains("gw.yaml:6") && errors.contains("https"),
        "{errors}"
    );
}

// ---------------------------------------------------------------------------
// Azure OpenAI.

fn azure_yaml(port: u16, ca_file: Option<&std::path::Path>, fallback: Option<&str>) -> String {
    let scheme = if ca_file.is_some() { "https" } else { "http" };
    let host = if ca_file.is_some() {
        "localhost"
    } else {
        "127.0.0.1"
    };
    let ca = ca_file.map_or(String::new(), |p| format!(", ca_file: {}", yaml_path(p)));
    let mut yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n  \
         azure: {{ kind: azure, base_url: \"{scheme}://{host}:{port}\", api_key: az-secret, headers: {{ x-team: search }}{ca} }}\n"
    );
    if let Some(url) = fallback {
        yaml.push_str(&format!(
            "  plain: {{ kind: openai-compatible, base_url: \"{url}\" }}\n"
        ));
    }
    yaml.push_str(
        "routes:\n  - name: chat\n    match: { model: chat }\n    strategy: priority\n    retry: { attempts: 1 }\n    targets:\n      \
         - { provider: azure, model: gpt-4o-prod, priority: 0, headers: { x-trace: abc }, query: { tenant: \"a b&c\" } }\n",
    );
    if fallback.is_some() {
        yaml.push_str("      - { provider: plain, model: plain-model, priority: 1 }\n");
    }
    yaml
}

#[test]
fn azure_over_tls_addresses_the_deployment_with_api_key() {
    let pki = pki();
    let upstream = Upstream::start(Some(pki.server.clone()));
    let gateway = common::gateway(&azure_yaml(upstream.port(), Some(&pki.ca_file), None));

    let whole = ask(&gateway, "chat", false);
    assert_eq!(whole.status, 200, "{}", whole.text());
    assert_eq!(
        whole.json()["choices"][0]["message"]["content"],
        "Hello over TLS"
    );
    assert_eq!(
        whole.header("x-switchyard-target"),
        Some("azure/gpt-4o-prod")
    );
    let seen = upstream.last();
    assert_eq!(
        seen.path,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21&tenant=a%20b%26c"
    );
    assert_eq!(seen.header("api-key"), Some("az-secret"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("x-team"), Some("search"));
    assert_eq!(seen.header("x-trace"), Some("abc"));
    assert_eq!(
        seen.header("host"),
        Some(&*format!("localhost:{}", upstream.port()))
    );
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    assert_eq!(seen.json()["model"], "gpt-4o-prod");
    assert_eq!(seen.json()["messages"][1]["content"], "Say hello.");

    let streamed = ask(&gateway, "chat", true);
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    assert_eq!(streamed.stream_text(), "Hello over TLS");
    assert_eq!(
        streamed.sse_data().last().map(String::as_str),
        Some("[DONE]")
    );
    let seen = upstream.last();
    assert_eq!(seen.header("accept"), Some("text/event-stream"));
    assert_eq!(seen.json()["stream"], true);
    gateway.shutdown();
}

#[test]
fn azure_content_filter_is_returned_not_failed_over() {
    let upstream = Upstream::start(None);
    let plain = common::mock("plain");
    let gateway = common::gateway(&azure_yaml(upstream.port(), None, Some(&plain.base_url())));

    // A filtered prompt: Azure's 400 goes back to the client as it is.
    upstream.set_reply(Reply::Error {
        status: 400,
        body: PROMPT_FILTERED.to_string(),
    });
    let filtered = ask(&gateway, "chat", false);
    assert_eq!(filtered.status, 400, "{}", filtered.text());
    assert_eq!(filtered.json()["error"]["code"], "content_filter");
    assert_eq!(
        filtered.json()["error"]["innererror"]["code"],
        "ResponsibleAIPolicyViolation"
    );
    assert_eq!(
        filtered.header("x-switchyard-target"),
        Some("azure/gpt-4o-prod")
    );
    assert_eq!(
        plain.stats().requests,
        0,
        "content filtering is not a provider failure"
    );

    // A filtered completion is a normal answer, whole or streamed.
    upstream.set_reply(Reply::Answer {
        finish_reason: "content_filter",
    });
    let whole = ask(&gateway, "chat", false);
    assert_eq!(whole.status, 200, "{}", whole.text());
    assert_eq!(
        whole.json()["choices"][0]["finish_reason"],
        "content_filter"
    );
    let streamed = ask(&gateway, "chat", true);
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    let finish: Vec<String> = streamed
        .sse_data()
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["finish_reason"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(finish, vec!["content_filter".to_string()]);
    assert_eq!(plain.stats().requests, 0);

    // A real outage still fails over.
    upstream.set_reply(Reply::Error {
        status: 503,
        body: r#"{"error":{"code":"ServiceUnavailable","message":"The service is temporarily unavailable."}}"#.to_string(),
    });
    let fell_back = ask(&gateway, "chat", false);
    assert_eq!(fell_back.status, 200, "{}", fell_back.text());
    assert_eq!(
        fell_back.header("x-switchyard-target"),
        Some("plain/plain-model")
    );
    gateway.shutdown();
}

// ---------------------------------------------------------------------------
// Per-target overrides (pass-through kind, against the mock provider).

#[test]
fn target_headers_and_query_reach_the_provider() {
    let mock = common::mock("a");
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n  \
         a: {{ kind: openai-compatible, base_url: \"{url}\", api_key: sk-a, headers: {{ x-provider-h: p1 }} }}\n\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    targets:\n      \
         - {{ provider: a, model: a-model, headers: {{ x-target-h: t1 }}, query: {{ tenant: \"a b&c\", v: \"1\" }} }}\n",
        url = mock.base_url(),
    );
    let gateway = common::gateway(&yaml);
    let response = ask(&gateway, "chat", false);
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = mock.last_request().expect("the mock saw the request");
    assert_eq!(seen.path, "/v1/chat/completions?tenant=a%20b%26c&v=1");
    assert_eq!(seen.header("authorization"), Some("Bearer sk-a"));
    assert_eq!(seen.header("x-provider-h"), Some("p1"));
    assert_eq!(seen.header("x-target-h"), Some("t1"));
    gateway.shutdown();
}

#[test]
fn a_target_first_byte_override_times_out_and_falls_back() {
    let slow = Fault::Latency {
        base: Duration::from_millis(400),
        jitter: Duration::ZERO,
    };
    let hasty = common::mock_with(MockConfig {
        name: "hasty".into(),
        fault: slow.clone(),
        ..MockConfig::default()
    });
    let patient = common::mock_with(MockConfig {
        name: "patient".into(),
        fault: slow,
        ..MockConfig::default()
    });
    let yaml = format!(
        "listen: 127.0.0.1:0\nshards: 1\nshutdown_grace: 2s\nproviders:\n  \
         hasty: {{ kind: openai-compatible, base_url: \"{h}\" }}\n  \
         patient: {{ kind: openai-compatible, base_url: \"{p}\" }}\n\
         routes:\n  - name: chat\n    match: {{ model: chat }}\n    strategy: priority\n    \
         retry: {{ attempts: 1 }}\n    timeouts: {{ first_byte: 5s }}\n    targets:\n      \
         - {{ provider: hasty, model: h, priority: 0, timeouts: {{ first_byte: 100ms }} }}\n      \
         - {{ provider: patient, model: p, priority: 1 }}\n",
        h = hasty.base_url(),
        p = patient.base_url(),
    );
    let gateway = common::gateway(&yaml);
    let started = Instant::now();
    let response = ask(&gateway, "chat", false);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-switchyard-target"), Some("patient/p"));
    assert_eq!(response.header("x-switchyard-attempts"), Some("2"));
    assert!(response.text().contains("Hello from patient"));
    assert_eq!(hasty.stats().requests, 1, "the hasty target was tried");
    // The hasty target gave up after its own 100 ms, not the route's 5 s.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    gateway.shutdown();
}
