//! HTTP/1.1 request framing for the mock: parse a head with `httparse`, route it
//! (the path picks the provider dialect), and find where its body (Content-Length
//! or chunked) ends in the read buffer.

use super::dialect::Dialect;

/// Largest request head the mock accepts (431 beyond).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Largest request body the mock accepts (413 beyond).
pub(crate) const MAX_BODY: usize = 32 * 1024 * 1024;
const MAX_HEADERS: usize = 64;

/// The endpoint a request addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Chat,
    Embeddings,
    Models,
    /// Anthropic `{prefix}/v1/messages`.
    Messages,
    /// Gemini `{prefix}/models/{model}:{method}`.
    Gemini(GeminiMethod),
    /// Bedrock `{prefix}/model/{modelId}/converse` or `/converse-stream`.
    Converse {
        stream: bool,
    },
    /// Azure OpenAI `{prefix}/openai/deployments/{deployment}/chat/completions`.
    AzureChat,
    /// The OpenAI Responses API: `/v1/responses`, `/responses`, or (`azure`) any
    /// path ending in `/openai/v1/responses`.
    Responses {
        azure: bool,
    },
    /// Legacy text completions: `/v1/completions`, `/completions`, or (`azure`)
    /// `{prefix}/openai/deployments/{deployment}/completions`.
    Completions {
        azure: bool,
    },
    /// Anthropic `{prefix}/v1/messages/count_tokens`.
    CountTokens,
    GetFault,
    SetFault,
    GetContinuation,
    SetContinuation,
    Stats,
    /// `GET /_mock/last_request`.
    LastRequest,
    /// `GET /_mock/requests`.
    Requests,
    NotFound,
    MethodNotAllowed,
}

/// The Gemini methods the mock answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GeminiMethod {
    Generate,
    Stream,
    Embed,
    BatchEmbed,
}

impl Route {
    /// Control routes (`/_mock/...`) are never subject to faults.
    pub(crate) fn is_control(self) -> bool {
        matches!(
            self,
            Route::GetFault
                | Route::SetFault
                | Route::GetContinuation
                | Route::SetContinuation
                | Route::Stats
                | Route::LastRequest
                | Route::Requests
        )
    }

    /// The dialect a provider route speaks; `None` for control and unknown routes.
    pub(crate) fn dialect(self) -> Option<Dialect> {
        match self {
            Route::Chat
            | Route::Embeddings
            | Route::Models
            | Route::Responses { azure: false }
            | Route::Completions { azure: false } => Some(Dialect::OpenAi),
            Route::Messages | Route::CountTokens => Some(Dialect::Anthropic),
            Route::Gemini(_) => Some(Dialect::Gemini),
            Route::Converse { .. } => Some(Dialect::Bedrock),
            Route::AzureChat
            | Route::Responses { azure: true }
            | Route::Completions { azure: true } => Some(Dialect::Azure),
            _ => None,
        }
    }
}

/// How the body after the head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyLen {
    Fixed(usize),
    Chunked,
}

/// What the connection loop needs to know about one parsed request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub route: Route,
    pub head_len: usize,
    pub body: BodyLen,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// A non-empty `api-key` header (Azure OpenAI's key) is present.
    pub api_key: bool,
}

/// A request the mock cannot accept; each maps to an HTTP status.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RequestError {
    #[error("malformed request head: {0}")]
    Head(httparse::Error),
    #[error("request head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid content-length")]
    ContentLength,
    #[error("unsupported transfer-encoding")]
    TransferEncoding,
    #[error("request body larger than {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("malformed chunked body")]
    Chunk,
}

impl RequestError {
    /// The status the mock answers before closing the connection.
    pub(crate) fn status(&self) -> u16 {
        match self {
            RequestError::HeadTooLarge => 431,
            RequestError::BodyTooLarge => 413,
            RequestError::TransferEncoding => 501,
            _ => 400,
        }
    }
}

/// Parses the head at the start of `buf`; `Ok(None)` means more bytes are needed.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<RequestHead>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(RequestError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(e) => return Err(RequestError::Head(e)),
    };
    let route = route(req.method.unwrap_or(""), req.path.unwrap_or(""));
    let mut facts = HeaderFacts::new(req.version == Some(1));
    for h in req.headers.iter() {
        facts.note(h.name, h.value)?;
    }
    Ok(Some(RequestHead {
        route,
        head_len,
        body: facts.body()?,
        keep_alive: facts.keep_alive,
        expect_continue: facts.expect_continue,
        api_key: facts.api_key,
    }))
}

/// Maps method and path (query ignored) to a route.
pub(crate) fn route(method: &str, path: &str) -> Route {
    let path = path.split('?').next().unwrap_or("");
    let (want, route) = match path {
        "/v1/chat/completions" | "/chat/completions" => ("POST", Route::Chat),
        "/v1/embeddings" | "/embeddings" => ("POST", Route::Embeddings),
        "/v1/models" | "/models" => ("GET", Route::Models),
        "/v1/responses" | "/responses" => ("POST", Route::Responses { azure: false }),
        "/v1/completions" | "/completions" => ("POST", Route::Completions { azure: false }),
        "/_mock/stats" => ("GET", Route::Stats),
        "/_mock/last_request" => ("GET", Route::LastRequest),
        "/_mock/requests" => ("GET", Route::Requests),
        "/_mock/fault" if method == "GET" => ("GET", Route::GetFault),
        "/_mock/fault" => ("POST", Route::SetFault),
        "/_mock/continuation" if method == "GET" => ("GET", Route::GetContinuation),
        "/_mock/continuation" => ("POST", Route::SetContinuation),
        _ => match dialect_target(path) {
            Some((route, _)) => ("POST", route),
            None => return Route::NotFound,
        },
    };
    if method == want {
        route
    } else {
        Route::MethodNotAllowed
    }
}

/// Recognizes the other dialects' paths (any prefix before the part that names
/// the provider API); returns the route and the model, model id (still
/// percent-encoded) or deployment named in the path (empty for Anthropic).
pub(crate) fn dialect_target(path: &str) -> Option<(Route, &str)> {
    let path = path.split('?').next().unwrap_or("");
    if path.ends_with("/v1/messages") {
        return Some((Route::Messages, ""));
    }
    if path.ends_with("/v1/messages/count_tokens") {
        return Some((Route::CountTokens, ""));
    }
    if path.ends_with("/openai/v1/responses") {
        return Some((Route::Responses { azure: true }, ""));
    }
    if let Some((_, rest)) = path.split_once("/openai/deployments/") {
        let (deployment, tail) = rest.split_once('/')?;
        let route = match tail {
            "chat/completions" => Route::AzureChat,
            "completions" => Route::Completions { azure: true },
            _ => return None,
        };
        return (!deployment.is_empty()).then_some((route, deployment));
    }
    if let Some((_, rest)) = path.rsplit_once("/models/") {
        let (model, method) = rest.rsplit_once(':')?;
        let method = match method {
            "generateContent" => GeminiMethod::Generate,
            "streamGenerateContent" => GeminiMethod::Stream,
            "embedContent" => GeminiMethod::Embed,
            "batchEmbedContents" => GeminiMethod::BatchEmbed,
            _ => return None,
        };
        return (!model.is_empty() && !model.contains('/'))
            .then_some((Route::Gemini(method), model));
    }
    if let Some((_, rest)) = path.split_once("/model/") {
        let (model, op) = rest.rsplit_once('/')?;
        let stream = match op {
            "converse" => false,
            "converse-stream" => true,
            _ => return None,
        };
        return (!model.is_empty()).then_some((Route::Converse { stream }, model));
    }
    None
}

/// The request target (path and query) of a complete request head.
pub(crate) fn target(head: &[u8]) -> &str {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(b"");
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or(b"");
    std::str::from_utf8(target).unwrap_or("")
}

/// The value of query parameter `name` in `target` (not percent-decoded).
pub(crate) fn query_param<'t>(target: &'t str, name: &str) -> Option<&'t str> {
    let (_, query) = target.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The header values that change framing or connection handling.
struct HeaderFacts {
    content_length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
    expect_continue: bool,
    api_key: bool,
}

impl HeaderFacts {
    fn new(http11: bool) -> Self {
        HeaderFacts {
            content_length: None,
            chunked: false,
            keep_alive: http11,
            expect_continue: false,
            api_key: false,
        }
    }

    fn note(&mut self, name: &str, value: &[u8]) -> Result<(), RequestError> {
        if name.eq_ignore_ascii_case("content-length") {
            let len = parse_len(value)?;
            if self.content_length.is_some_and(|old| old != len) {
                return Err(RequestError::ContentLength);
            }
            self.content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.chunked = last_token(value).eq_ignore_ascii_case(b"chunked");
            if !self.chunked {
                return Err(RequestError::TransferEncoding);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    self.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            self.expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("api-key") {
            self.api_key = !value.trim_ascii().is_empty();
        }
        Ok(())
    }

    /// Chunked wins over Content-Length (RFC 9112 §6.3).
    fn body(&self) -> Result<BodyLen, RequestError> {
        match (self.chunked, self.content_length) {
            (true, _) => Ok(BodyLen::Chunked),
            (false, Some(len)) if len > MAX_BODY => Err(RequestError::BodyTooLarge),
            (false, len) => Ok(BodyLen::Fixed(len.unwrap_or(0))),
        }
    }
}

fn parse_len(value: &[u8]) -> Result<usize, RequestError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::ContentLength);
    }
    Ok(digits.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')))
}

fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or(b"")
        .trim_ascii()
}

/// Decodes a chunked body from the start of `src` into `out`. Returns the bytes
/// of `src` consumed (trailers included) once complete, `Ok(None)` if incomplete.
pub(crate) fn decode_chunked(src: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, RequestError> {
    out.clear();
    let mut at = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&src[at..]) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(RequestError::Chunk),
        };
        at += size_len;
        if size == 0 {
            return Ok(skip_trailers(&src[at..])?.map(|n| at + n));
        }
        let size = usize::try_from(size).map_err(|_| RequestError::BodyTooLarge)?;
        if out.len().saturating_add(size) > MAX_BODY {
            return Err(RequestError::BodyTooLarge);
        }
        let Some(data) = src.get(at..at.saturating_add(size).saturating_add(2)) else {
            return Ok(None);
        };
        if !data.ends_with(b"\r\n") {
            return Err(RequestError::Chunk);
        }
        out.extend_from_slice(&data[..size]);
        at += size + 2;
    }
}

/// Skips trailer lines up to and including the blank line that ends the body.
fn skip_trailers(src: &[u8]) -> Result<Option<usize>, RequestError> {
    let mut at = 0;
    loop {
        let Some(nl) = src[at..].windows(2).position(|w| w == b"\r\n") else {
            return if src.len() - at > MAX_HEAD {
                Err(RequestError::HeadTooLarge)
            } else {
                Ok(None)
            };
        };
        at += nl + 2;
        if nl == 0 {
            return Ok(Some(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> RequestHead {
        parse_head(raw.as_bytes())
            .expect("valid")
            .expect("complete")
    }

    #[test]
    fn routes_and_framing() {
        let h = head("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(
            (h.route, h.body, h.keep_alive),
            (Route::Chat, BodyLen::Fixed(12), true)
        );
        let h = head("GET /v1/models?x=1 HTTP/1.0\r\n\r\n");
        assert_eq!((h.route, h.keep_alive), (Route::Models, false));
        let h = head("GET /v1/chat/completions HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert_eq!((h.route, h.keep_alive), (Route::MethodNotAllowed, false));
        let h = head("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((h.route, h.body), (Route::NotFound, BodyLen::Chunked));
        assert_eq!(
            parse_head(b"POST /v1/chat/completions HTTP/1.1\r\nHost"),
            Ok(None)
        );
    }

    #[test]
    fn dialect_paths() {
        let cases = [
            ("/v1/messages", Some((Route::Messages, ""))),
            (
                "/anthropic/v1/messages?beta=true",
                Some((Route::Messages, "")),
            ),
            (
                "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                Some((Route::Gemini(GeminiMethod::Stream), "gemini-2.0-flash")),
            ),
            (
                "/g/v1beta/models/e:batchEmbedContents",
                Some((Route::Gemini(GeminiMethod::BatchEmbed), "e")),
            ),
            ("/v1beta/models/x:countTokens", None),
            (
                "/model/anthropic.claude-v2%3A1/converse-stream",
                Some((Route::Converse { stream: true }, "anthropic.claude-v2%3A1")),
            ),
            ("/model//converse", None),
            (
                "/openai/deployments/gpt4o/chat/completions?api-version=2024-06-01",
                Some((Route::AzureChat, "gpt4o")),
            ),
            (
                "/openai/deployments/gpt4o/completions",
                Some((Route::Completions { azure: true }, "gpt4o")),
            ),
            ("/openai/deployments/gpt4o/embeddings", None),
            (
                "/az/openai/v1/responses?api-version=preview",
                Some((Route::Responses { azure: true }, "")),
            ),
            (
                "/anthropic/v1/messages/count_tokens",
                Some((Route::CountTokens, "")),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(dialect_target(path), want, "{path}");
        }
        assert_eq!(route("GET", "/v1/messages"), Route::MethodNotAllowed);
        assert_eq!(
            route("POST", "/v1/responses"),
            Route::Responses { azure: false }
        );
        assert_eq!(
            route("POST", "/completions"),
            Route::Completions { azure: false }
        );
        assert_eq!(route("GET", "/_mock/last_request"), Route::LastRequest);
        assert_eq!(route("POST", "/_mock/requests"), Route::MethodNotAllowed);
        let h = head("POST /openai/deployments/d/chat/completions?api-version=1 HTTP/1.1\r\napi-key: k\r\n\r\n");
        assert_eq!((h.route, h.api_key), (Route::AzureChat, true));
        let raw = b"POST /a/b?alt=sse&key=K HTTP/1.1\r\n\r\n";
        assert_eq!(target(raw), "/a/b?alt=sse&key=K");
        assert_eq!(query_param(target(raw), "alt"), Some("sse"));
        assert_eq!(query_param("/x?flag&y=1", "flag"), Some(""));
        assert_eq!(query_param("/x", "y"), None);
    }

    #[test]
    fn rejects_bad_heads() {
        let bad_len = "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n";
        assert_eq!(
            parse_head(bad_len.as_bytes()),
            Err(RequestError::ContentLength)
        );
        let gzip = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(
            parse_head(gzip.as_bytes()),
            Err(RequestError::TransferEncoding)
        );
        assert!(matches!(
            parse_head(b"\x01\x02 nonsense\r\n\r\n"),
            Err(RequestError::Head(_))
        ));
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert!(parse_head(&huge).is_err());
    }

    #[test]
    fn chunked_bodies() {
        let mut out = Vec::new();
        let src = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        assert_eq!(decode_chunked(src, &mut out), Ok(Some(src.len() - 4)));
        assert_eq!(out, b"hello world");
        for cut in 0..src.len() - 4 {
            assert_eq!(
                decode_chunked(&src[..cut], &mut out),
                Ok(None),
                "cut at {cut}"
            );
        }
        assert_eq!(
            decode_chunked(b"3\r\nabcX\r\n", &mut out),
            Err(RequestError::Chunk)
        );
        assert_eq!(
            decode_chunked(b"zz\r\n", &mut out),
            Err(RequestError::Chunk)
        );
    }
}
