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

/// The `usage` object of a JSON answer, found from its end: the last `"usage"`
/// string that is a key (its quote not escaped — a string *value* holding the
/// word has its quotes escaped — and a `:` after it) whose value reads as usage.
/// At most a few candidates are tried; none found is `None`, as a missing
/// `usage` is.
pub fn scan_usage(body: &[u8]) -> Option<ReportedUsage> {
    const KEY: &[u8] = b"\"usage\"";
    const MAX_TRIES: usize = 4;
    // Built once: making the searcher was most of a small answer's scan.
    static FINDER: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new(KEY));
    let finder = &*FINDER;
    let mut end = body.len();
    for _ in 0..MAX_TRIES {
        let at = finder.rfind(&body[..end])?;
        end = at;
        if escaped_at(body, at) {
            continue;
        }
        let rest = body[at + KEY.len()..].trim_ascii_start();
        let Some(value) = rest.strip_prefix(b":") else {
            continue;
        };
        let mut de = serde_json::Deserializer::from_slice(value);
        if let Ok(usage) = ReportedUsage::deserialize(&mut de) {
            return Some(usage);
        }
    }
    None
}

/// Whether the byte at `at` is escaped: an odd run of backslashes before it.
fn escaped_at(body: &[u8], at: usize) -> bool {
    let run = body[..at].iter().rev().take_while(|&&b| b == b'\\').count();
    run % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_found_from_the_end_and_only_as_a_key() {
        let cases: &[(&str, Option<(u64, u64)>)] = &[
            (
                r#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
                Some((3, 4)),
            ),
            (
                r#"{"usage" : {"input_tokens":5,"output_tokens":6}, "id":"y"}"#,
                Some((5, 6)),
            ),
            // The word inside content: escaped quotes, never a key.
            (
                r#"{"choices":[{"message":{"content":"say \"usage\":{\"prompt_tokens\":99}"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
                Some((1, 2)),
            ),
            (
                r#"{"choices":[{"message":{"content":"\"usage\":{\"prompt_tokens\":99}"}}]}"#,
                None,
            ),
            // A value "usage", then the real key before it.
            (
                r#"{"usage":{"prompt_tokens":8,"completion_tokens":9},"kind":"usage"}"#,
                Some((8, 9)),
            ),
            (r#"{"usage":null}"#, None),
            (r#"{"id":"no usage"}"#, None),
            (r#"{"usage":{"prompt_tokens":"#, None),
            (r#""#, None),
        ];
        for (body, expected) in cases {
            let got = scan_usage(body.as_bytes())
                .map(Usage::from)
                .map(|u| (u.prompt_tokens, u.completion_tokens));
            assert_eq!(got, *expected, "{body}");
        }
    }

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
