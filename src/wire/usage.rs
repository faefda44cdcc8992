//! Token counts as OpenAI's shapes report them (`usage` on a completion or chunk).

use serde::Deserialize;

/// A rough count of the tokens `len` bytes of text are: one per 4 bytes (what
/// limits charge before the usage is known, and what a cut stream is charged).
pub fn estimate_tokens_of_bytes(len: usize) -> u64 {
    (len as u64).div_ceil(4)
}

/// Token counts reported by a provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// Usage as any OpenAI API reports it: chat and completions say
/// `prompt_tokens`/`completion_tokens`, the Responses API (like Anthropic)
/// `input_tokens`/`output_tokens`. Read into [`Usage`] with `From`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct ReportedUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

impl From<ReportedUsage> for Usage {
    fn from(reported: ReportedUsage) -> Usage {
        Usage {
            prompt_tokens: reported
                .prompt_tokens
                .or(reported.input_tokens)
                .unwrap_or(0),
            completion_tokens: reported
                .completion_tokens
                .or(reported.output_tokens)
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_naming_reads_into_usage() {
        for (json, expected) in [
            (r#"{"prompt_tokens":3,"completion_tokens":4}"#, (3, 4)),
            (
                r#"{"input_tokens":5,"output_tokens":6,"total_tokens":11}"#,
                (5, 6),
            ),
            (r#"{}"#, (0, 0)),
        ] {
            let reported: ReportedUsage = serde_json::from_str(json).unwrap();
            let usage = Usage::from(reported);
            assert_eq!(
                (usage.prompt_tokens, usage.completion_tokens),
                expected,
                "{json}"
            );
        }
    }
}
