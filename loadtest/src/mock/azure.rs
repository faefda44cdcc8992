//! The Azure OpenAI dialect
//! (`POST {prefix}/openai/deployments/{deployment}/chat/completions?api-version=...`):
//! the OpenAI chat bodies with the deployment as the model, behind Azure's rules.
//!
//! - A non-empty `api-key` header is required: 401 (OpenAI-shaped, code `"401"`)
//!   without it. Bearer tokens are not accepted by the mock.
//! - An `api-version` query parameter is required: 400 without it.
//! - Content filter rule: when the last message is a user message whose text
//!   contains "filtered", the answer is Azure's 400 `content_filter` error with
//!   `innererror.code` `ResponsibleAIPolicyViolation`.

use super::wire::push_json_str;

/// Why an Azure request is refused before it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.")]
    MissingKey,
    #[error("Missing required query parameter: api-version")]
    MissingApiVersion,
    #[error("The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766")]
    ContentFilter,
}

impl Refusal {
    /// Checks the key and the api-version before the body is read.
    pub(crate) fn check(api_key: bool, api_version: Option<&str>) -> Result<(), Refusal> {
        if !api_key {
            return Err(Refusal::MissingKey);
        }
        match api_version {
            Some(version) if !version.is_empty() => Ok(()),
            _ => Err(Refusal::MissingApiVersion),
        }
    }

    /// The content filter rule on the text of the last user message.
    pub(crate) fn filter(last_user: Option<&str>) -> Result<(), Refusal> {
        match last_user {
            Some(text) if text.contains("filtered") => Err(Refusal::ContentFilter),
            _ => Ok(()),
        }
    }

    /// The HTTP status of the refusal.
    pub(crate) fn status(self) -> u16 {
        match self {
            Refusal::MissingKey => 401,
            Refusal::MissingApiVersion | Refusal::ContentFilter => 400,
        }
    }

    /// Appends the refusal's error body.
    pub(crate) fn write(self, out: &mut Vec<u8>) {
        let (kind, param, code) = match self {
            Refusal::MissingKey => ("invalid_request_error", "null", "\"401\""),
            Refusal::MissingApiVersion => ("invalid_request_error", "\"api-version\"", "\"400\""),
            Refusal::ContentFilter => ("null", "\"prompt\"", "\"content_filter\""),
        };
        out.extend_from_slice(b"{\"error\":{\"message\":");
        push_json_str(out, &self.to_string());
        out.extend_from_slice(b",\"type\":");
        if kind == "null" {
            out.extend_from_slice(b"null");
        } else {
            push_json_str(out, kind);
        }
        out.extend_from_slice(b",\"param\":");
        out.extend_from_slice(param.as_bytes());
        out.extend_from_slice(b",\"code\":");
        out.extend_from_slice(code.as_bytes());
        if self == Refusal::ContentFilter {
            out.extend_from_slice(
                b",\"status\":400,\"innererror\":{\"code\":\"ResponsibleAIPolicyViolation\",\
\"content_filter_result\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\
\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},\
\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},\
\"violence\":{\"filtered\":true,\"severity\":\"medium\"}}}",
            );
        }
        out.extend_from_slice(b"}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn rules_and_bodies() {
        assert_eq!(Refusal::check(false, Some("1")), Err(Refusal::MissingKey));
        assert_eq!(
            Refusal::check(true, Some("")),
            Err(Refusal::MissingApiVersion)
        );
        assert_eq!(Refusal::check(true, Some("2024-06-01")), Ok(()));
        assert_eq!(
            Refusal::filter(Some("get filtered")),
            Err(Refusal::ContentFilter)
        );
        assert_eq!(Refusal::filter(None), Ok(()));
        for refusal in [
            Refusal::MissingKey,
            Refusal::MissingApiVersion,
            Refusal::ContentFilter,
        ] {
            let mut out = Vec::new();
            refusal.write(&mut out);
            let v: Value = serde_json::from_slice(&out).expect("JSON");
            assert!(v["error"]["message"].is_string());
        }
        let mut out = Vec::new();
        Refusal::ContentFilter.write(&mut out);
        let v: Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["error"]["code"], "content_filter");
        assert_eq!(
            v["error"]["innererror"]["code"],
            "ResponsibleAIPolicyViolation"
        );
    }
}
