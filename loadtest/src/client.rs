//! A small blocking HTTP/1.1 client for tests and the demo: keep-alive, Content-Length
//! and chunked bodies, and a hook that sees body pieces as they arrive.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One response, body fully read (chunked decoded).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When each decoded body piece arrived.
    pub piece_times: Vec<Instant>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `data:` payloads of an event stream, in order.
    pub fn sse_data(&self) -> Vec<String> {
        let text = self.text();
        text.split("\n\n")
            .filter_map(|event| {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                (!data.is_empty()).then(|| data.join("\n"))
            })
            .collect()
    }

    /// Concatenated `choices[0].delta.content` of an event stream.
    pub fn stream_text(&self) -> String {
        self.sse_data()
            .iter()
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("connection closed before a complete response")]
    Closed,
}

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        self.stream.set_read_timeout(Some(timeout))?;
        Ok(())
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Sends a request with a Content-Length body and reads the response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, ClientError> {
        self.send_raw(&encode_request(method, path, headers, body))?;
        self.read_response(|_| {})
    }

    /// POSTs a chat completion body.
    pub fn chat(
        &mut self,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpResponse, ClientError> {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.request("POST", "/v1/chat/completions", &all, body.as_bytes())
    }

    /// Reads one response; `on_piece` sees each decoded body piece as it arrives.
    pub fn read_response(
        &mut self,
        mut on_piece: impl FnMut(&[u8]),
    ) -> Result<HttpResponse, ClientError> {
        let (status, headers, head_len) = loop {
            let mut raw = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut raw);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or(0);
                    let headers = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect::<Vec<_>>();
                    if (100..200).contains(&status) {
                        self.buf.drain(..len);
                        continue;
                    }
                    break (status, headers, len);
                }
                Ok(httparse::Status::Partial) => self.fill()?,
                Err(e) => return Err(ClientError::Malformed(e.to_string())),
            }
        };
        self.buf.drain(..head_len);
        let mut response = HttpResponse {
            status,
            headers,
            body: Vec::new(),
            piece_times: Vec::new(),
        };
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = response
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok());
        if chunked {
            self.read_chunked(&mut response, &mut on_piece)?;
        } else if let Some(length) = length {
            while self.buf.len() < length {
                self.fill()?;
            }
            let body: Vec<u8> = self.buf.drain(..length).collect();
            on_piece(&body);
            response.piece_times.push(Instant::now());
            response.body = body;
        }
        Ok(response)
    }

    fn read_chunked(
        &mut self,
        response: &mut HttpResponse,
        on_piece: &mut impl FnMut(&[u8]),
    ) -> Result<(), ClientError> {
        loop {
            let (size, line_len) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((len, size))) => break (size as usize, len),
                    Ok(httparse::Status::Partial) => self.fill()?,
                    Err(_) => return Err(ClientError::Malformed("bad chunk size".into())),
                }
            };
            while self.buf.len() < line_len + size + 2 {
                self.fill()?;
            }
            if size == 0 {
                self.buf.drain(..line_len + 2);
                return Ok(());
            }
            let piece: Vec<u8> = self.buf[line_len..line_len + size].to_vec();
            self.buf.drain(..line_len + size + 2);
            on_piece(&piece);
            response.piece_times.push(Instant::now());
            response.body.extend_from_slice(&piece);
        }
    }

    /// A second handle on the socket (e.g. to write a large body from another
    /// thread while this one reads the answer).
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().expect("clone a connected socket")
    }

    /// Reads exactly `out.len()` raw bytes (an interim `100 Continue`, say),
    /// taking what is already buffered first.
    pub fn read_exact_raw(&mut self, out: &mut [u8]) -> Result<(), ClientError> {
        while self.buf.len() < out.len() {
            self.fill()?;
        }
        out.copy_from_slice(&self.buf[..out.len()]);
        self.buf.drain(..out.len());
        Ok(())
    }

    fn fill(&mut self) -> Result<(), ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

pub fn encode_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: switchyard\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A minimal OpenAI chat body.
pub fn chat_body(model: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello."}
        ]
    })
    .to_string()
}
