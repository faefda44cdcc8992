//! Provider kinds: how to address, authenticate and understand each provider.
//!
//! Everything a kind decides is prepared once per config ([`PreparedProvider`]) so
//! the request path only copies bytes. Classification turns a provider's answer into
//! the failure taxonomy of [`crate::outcome`].

pub mod openai;

use crate::config::{Provider, ProviderKind};
use crate::outcome::FailureClass;

/// A provider kind this build can configure but not yet speak.
#[derive(Debug, thiserror::Error)]
#[error("provider `{provider}`: kind `{kind}` is not supported by this build yet (supported: openai, openai-compatible)")]
pub struct UnsupportedKind {
    pub provider: String,
    pub kind: &'static str,
}

/// Provider kinds this build speaks; the config loader rejects the others.
pub const SUPPORTED_KINDS: [&str; 2] = ["openai", "openai-compatible"];

pub fn is_supported(kind: ProviderKind) -> bool {
    SUPPORTED_KINDS.contains(&kind.as_str())
}

/// Per-provider request settings, computed once per config.
#[derive(Debug, Clone)]
pub struct PreparedProvider {
    pub name: String,
    pub kind: ProviderKind,
    /// Value of the `host` header.
    pub host_header: String,
    /// Request path for chat completions.
    pub chat_path: String,
    /// Request path for embeddings.
    pub embeddings_path: String,
    /// Auth and configured extra headers, sent on every request.
    pub headers: Vec<(String, String)>,
}

/// Prepares `provider` for the request path, or says its kind is not spoken yet.
pub fn prepare(provider: &Provider) -> Result<PreparedProvider, UnsupportedKind> {
    match provider.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => Ok(openai::prepare(provider)),
        kind => Err(UnsupportedKind {
            provider: provider.name.clone(),
            kind: kind.as_str(),
        }),
    }
}

/// Whether a provider kind accepts an assistant message as the last message and
/// continues it (prefill). OpenAI-style chat APIs do not: they answer it as a new
/// turn, so continuation uses the instruction style there. Anthropic does.
pub fn accepts_prefill(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::Anthropic | ProviderKind::Bedrock)
}

/// Classifies a non-2xx answer from the status and (bounded) error body.
pub fn classify_status(kind: ProviderKind, status: u16, body: &[u8]) -> FailureClass {
    match kind {
        // Kinds that `prepare` rejects never reach the request path; until they
        // have classifiers of their own, OpenAI's shapes are the best reading.
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            openai::classify_status(status, body)
        }
        _ => openai::classify_status(status, body),
    }
}

/// Classifies an error event found inside a 200 event stream.
pub fn classify_stream_error(kind: ProviderKind, data: &str) -> FailureClass {
    match kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            openai::classify_stream_error(data)
        }
        _ => openai::classify_stream_error(data),
    }
}
