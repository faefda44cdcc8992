//! Azure OpenAI: OpenAI's wire format, addressed by deployment
//! (`{base}/openai/deployments/{deployment}/chat/completions?api-version=...`),
//! authenticated with an `api-key` header, with Azure's content-filter errors.
//!
//! The target's `model` is the deployment name. Answers and streams are OpenAI's
//! shapes and pass through unchanged; a 200 whose choice ends with
//! `finish_reason: "content_filter"` is a normal answer. A 400 whose error says
//! `code: content_filter` (or `innererror.code: ResponsibleAIPolicyViolation`) is a
//! content-policy outcome for the client, not a provider failure.

use serde::Deserialize;

use super::{
    append_query, percent_encode, Adapter, Api, EventSource, Outbound, RequestParts, Serves,
    TranslateError, JSON,
};
use crate::http::sse::SseParser;
use crate::outcome::FailureClass;

/// Azure's adapter: OpenAI's shapes on a deployment path with an `api-key`.
#[derive(Debug)]
pub struct Azure;

impl Adapter for Azure {
    fn encode<'a>(&self, parts: &RequestParts<'a>) -> Result<Outbound<'a>, TranslateError> {
        translate_request(parts)
    }

    /// Azure answers in OpenAI's shapes: the body is relayed as it came.
    fn whole_answer(
        &self,
        _api: Api,
        _model: &str,
        _content_type: Vec<u8>,
        body: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<u8>), TranslateError> {
        Ok((JSON.to_vec(), body))
    }

    fn error_answer(
        &self,
        _status: u16,
        _content_type: Vec<u8>,
        body: Vec<u8>,
    ) -> (Vec<u8>, Vec<u8>) {
        (JSON.to_vec(), body)
    }

    fn classify_status(&self, status: u16, body: &[u8]) -> FailureClass {
        classify_status(status, body)
    }

    fn classify_stream_error(&self, data: &str) -> FailureClass {
        super::openai::classify_stream_error(data)
    }

    fn event_source(&self, _model: &str) -> Box<dyn EventSource> {
        Box::new(SseParser::new())
    }

    fn serves(&self, provider: &crate::config::Provider) -> Serves {
        Serves {
            completions: true,
            responses: provider.responses,
            count_tokens: false,
        }
    }
}

/// The `api-version` used when the provider config names none (the 2024-10-21 GA).
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// Header that carries the Azure key.
const KEY_HEADER: &str = "api-key";

/// The request path (with the `api-version` query) for `api` on `deployment`.
/// `base_path` is the provider URL's path without a trailing slash (usually empty:
/// `base_url` is the resource endpoint, e.g. `https://my-resource.openai.azure.com`).
pub fn request_path(base_path: &str, api: Api, deployment: &str, api_version: &str) -> String {
    let operation = match api {
        Api::ChatCompletions => "chat/completions",
        Api::Embeddings => "embeddings",
        Api::Completions => "completions",
        // The v1 API: no deployment in the path (the body's `model` names it) and
        // no api-version.
        Api::Responses | Api::CountTokens => return format!("{base_path}/openai/v1/responses"),
    };
    let mut path = String::with_capacity(base_path.len() + deployment.len() + 64);
    path.push_str(base_path);
    path.push_str("/openai/deployments/");
    percent_encode(deployment, &mut path);
    path.push('/');
    path.push_str(operation);
    path.push_str("?api-version=");
    percent_encode(api_version, &mut path);
    path
}

/// Builds one Azure request: the client's body with `model` set to the deployment
/// (Azure ignores it, the usage accounting downstream reads it), the deployment
/// path with the target's query, the `api-key` header and the provider's
/// configured headers.
pub fn translate_request(parts: &RequestParts<'_>) -> Result<Outbound<'static>, TranslateError> {
    let provider = parts.provider;
    if !parts.prepared.serves.serves(parts.api) {
        return Err(TranslateError::Unsupported(parts.api.as_str()));
    }
    if parts.model.is_empty() {
        return Err(TranslateError::Request(
            "the target's model (the Azure deployment name) is empty".into(),
        ));
    }
    let api_version = provider
        .api_version
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or(DEFAULT_API_VERSION);
    let mut path = request_path(
        &parts.prepared.base_path,
        parts.api,
        parts.model,
        api_version,
    );
    append_query(&mut path, parts.query);
    let mut headers = Vec::with_capacity(provider.headers.len() + 1);
    if let Some(key) = &provider.api_key {
        headers.push((KEY_HEADER.to_string(), key.clone()));
    }
    headers.extend(provider.headers.iter().cloned());
    let mut body = Vec::with_capacity(parts.body.len() + parts.model.len() + 48);
    parts
        .chat
        .rewrite_for(parts.api, parts.body, parts.model, &mut body);
    Ok(Outbound {
        path: path.into(),
        headers: headers.into(),
        body,
    })
}

#[derive(Deserialize, Default)]
struct ErrorEnvelope {
    #[serde(default)]
    error: AzureError,
}

#[derive(Deserialize, Default)]
struct AzureError {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    innererror: Option<InnerError>,
}

#[derive(Deserialize, Default)]
struct InnerError {
    #[serde(default)]
    code: Option<serde_json::Value>,
}

fn code_is(code: Option<&serde_json::Value>, wanted: &str) -> bool {
    code.and_then(serde_json::Value::as_str)
        .is_some_and(|c| c.eq_ignore_ascii_case(wanted))
}

/// Whether an Azure error body is a content-filter rejection.
fn is_content_filter(body: &[u8]) -> bool {
    let Ok(envelope) = serde_json::from_slice::<ErrorEnvelope>(body) else {
        return false;
    };
    let error = envelope.error;
    code_is(error.code.as_ref(), "content_filter")
        || error
            .innererror
            .as_ref()
            .is_some_and(|inner| code_is(inner.code.as_ref(), "ResponsibleAIPolicyViolation"))
}

/// Azure's statuses and error codes mapped onto the taxonomy: OpenAI's rules, plus
/// Azure's content filter (a 4xx with `content_filter` /
/// `ResponsibleAIPolicyViolation`) as [`FailureClass::ContentPolicy`].
pub fn classify_status(status: u16, body: &[u8]) -> FailureClass {
    if (400..500).contains(&status) && status != 408 && status != 429 && is_content_filter(body) {
        return FailureClass::ContentPolicy;
    }
    super::openai::classify_status(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BaseUrl, Provider, ProviderKind};
    use crate::wire::ChatBody;
    use std::time::Duration;

    fn provider(api_version: Option<&str>) -> Provider {
        Provider {
            name: "azure".into(),
            kind: ProviderKind::Azure,
            base_url: BaseUrl {
                tls: true,
                host: "res.openai.azure.com".into(),
                port: 443,
                path: String::new(),
            },
            api_key: Some("az-key".into()),
            headers: vec![("x-team".into(), "search".into())],
            max_connections: 8,
            pool_idle_timeout: Duration::from_secs(90),
            api_version: api_version.map(str::to_string),
            responses: false,
            quota: Default::default(),
            region: None,
            aws: None,
            ca_file: None,
        }
    }

    fn translate(provider: &Provider, api: Api, model: &str, body: &[u8]) -> Outbound<'static> {
        let prepared = crate::provider::prepare(provider);
        let chat = ChatBody::parse(body).expect("valid body");
        let parts = RequestParts {
            provider,
            prepared: &prepared,
            api,
            model,
            body,
            chat: &chat,
            query: &[],
            now: std::time::SystemTime::now(),
        };
        translate_request(&parts).expect("translates")
    }

    #[test]
    fn chat_path_query_and_headers() {
        let p = provider(None);
        let out = translate(
            &p,
            Api::ChatCompletions,
            "gpt-4o-prod",
            br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(
            out.path,
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            out.headers,
            vec![
                ("api-key".to_string(), "az-key".to_string()),
                ("x-team".to_string(), "search".to_string()),
            ]
        );
        assert!(!out.headers.iter().any(|(k, _)| k == "authorization"));
        let body: serde_json::Value = serde_json::from_slice(&out.body).expect("json body");
        assert_eq!(body["model"], "gpt-4o-prod");
        assert_eq!(body["messages"][0]["content"], "hi");
    }

    #[test]
    fn embeddings_path_configured_version_and_base_path() {
        let mut p = provider(Some("2024-06-01"));
        p.base_url.path = "/proxy".into();
        let out = translate(
            &p,
            Api::Embeddings,
            "embed small",
            br#"{"model":"emb","input":"x"}"#,
        );
        assert_eq!(
            out.path,
            "/proxy/openai/deployments/embed%20small/embeddings?api-version=2024-06-01"
        );
    }

    #[test]
    fn empty_deployment_is_rejected() {
        let p = provider(None);
        let prepared = crate::provider::prepare(&p);
        let body = br#"{"model":"chat","messages":[]}"#;
        let chat = ChatBody::parse(body).expect("valid body");
        let parts = RequestParts {
            provider: &p,
            prepared: &prepared,
            api: Api::ChatCompletions,
            model: "",
            body,
            chat: &chat,
            query: &[],
            now: std::time::SystemTime::now(),
        };
        assert!(matches!(
            translate_request(&parts),
            Err(TranslateError::Request(_))
        ));
    }

    /// Azure's prompt-filter rejection, as the service sends it.
    const PROMPT_FILTERED: &[u8] = br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":true,"severity":"medium"}}}}}"#;

    #[test]
    fn content_filter_is_a_content_policy_outcome() {
        assert_eq!(
            classify_status(400, PROMPT_FILTERED),
            FailureClass::ContentPolicy
        );
        let inner_only = br#"{"error":{"message":"filtered","code":"BadRequest","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#;
        assert_eq!(
            classify_status(400, inner_only),
            FailureClass::ContentPolicy
        );
        assert!(!FailureClass::ContentPolicy.counts_against_health());
    }

    #[test]
    fn azure_errors_map_like_openai() {
        let throttled = br#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds."}}"#;
        assert_eq!(classify_status(429, throttled), FailureClass::Overloaded);
        let no_deployment = br#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}"#;
        assert_eq!(classify_status(404, no_deployment), FailureClass::Client);
        let denied = br#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}"#;
        assert_eq!(classify_status(401, denied), FailureClass::Client);
        let too_long = br#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded","status":400}}"#;
        assert_eq!(classify_status(400, too_long), FailureClass::ContextLength);
        let internal = br#"{"error":{"code":"InternalServerError","message":"The service is temporarily unable to process your request. Please try again later."}}"#;
        assert_eq!(classify_status(500, internal), FailureClass::Server);
        assert_eq!(
            classify_status(503, b"<html>busy</html>"),
            FailureClass::Server
        );
        assert_eq!(classify_status(400, b"not json"), FailureClass::Client);
    }
}
