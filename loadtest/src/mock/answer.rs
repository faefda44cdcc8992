//! The deterministic answer every dialect sends, and the continuation rule.
//!
//! The answer to every chat request is `"Hello from {name}: "` followed by the words
//! `w0 w1 ... w{n-1}`, each with a trailing space (`n` = `stream_chunks`). Streamed,
//! word `i` is one content piece and the greeting rides in the first one, so the
//! pieces concatenate to the non-streamed content, whatever the dialect.
//!
//! Continuation rule: when the last message has an assistant role (`assistant`, or
//! Gemini's `model`) it is a prefill (e.g. a gateway resuming a broken stream), and
//! the mock answers only the rest of the full answer: it finds the highest `w{i}`
//! token in that text and answers `w{i+1}` onwards (all words if none is present),
//! without the greeting. So for a prefix that ends on a piece boundary, prefix +
//! continuation == the full answer. If the prefix does not end in whitespace, the
//! continuation starts with one space. The instruction style counts too: an
//! assistant message followed by a last user message that starts with "Continue" is
//! answered the same way.

use std::borrow::Cow;

use serde_json::Value;

use super::wire::{push_json_escaped, push_u64};

/// Who spoke a turn, as far as the continuation rule cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    User,
    Assistant,
    Other,
}

impl Role {
    /// Maps a dialect's role name: `model` (Gemini) is the assistant.
    pub(crate) fn parse(name: &str) -> Role {
        match name {
            "user" => Role::User,
            "assistant" | "model" => Role::Assistant,
            _ => Role::Other,
        }
    }
}

/// One conversation turn reduced to its role and plain text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Turn<'a> {
    pub role: Role,
    pub text: Cow<'a, str>,
}

impl<'a> Turn<'a> {
    /// A turn whose content is a JSON string or an array of parts with `text`.
    pub(crate) fn from_json(role: &str, content: &'a Option<Value>) -> Turn<'a> {
        Turn {
            role: Role::parse(role),
            text: text_of(content.as_ref()),
        }
    }
}

/// The text of the last user turn, if the last turn is a user's.
pub(crate) fn last_user_text<'t>(turns: &'t [Turn<'_>]) -> Option<&'t str> {
    turns
        .last()
        .filter(|t| t.role == Role::User)
        .map(|t| t.text.as_ref())
}

/// Everything needed to write one chat answer, whole or streamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub id: u64,
    pub model: String,
    /// Index of the first word answered.
    pub first: usize,
    /// One past the last word answered.
    pub end: usize,
    /// Whether the greeting precedes the first word (not for continuations).
    pub greet: bool,
    /// Whether a space precedes the first word (continuing a prefix without one).
    pub lead_space: bool,
    pub prompt_tokens: u64,
    pub stream: bool,
    pub include_usage: bool,
}

impl Answer {
    /// Plans the answer of `words` words to a conversation, by the continuation rule.
    /// `body_len` sizes the prompt token count (one token per 4 bytes).
    pub(crate) fn for_turns(
        turns: &[Turn<'_>],
        model: String,
        words: usize,
        id: u64,
        body_len: usize,
    ) -> Answer {
        let prefill = continued_text(turns);
        let (first, lead_space) = match prefill {
            Some(text) => (
                next_word(text).min(words),
                !text.is_empty() && !text.ends_with(char::is_whitespace),
            ),
            None => (0, false),
        };
        Answer {
            id,
            model,
            first,
            end: words,
            greet: prefill.is_none(),
            lead_space,
            prompt_tokens: (body_len as u64).div_ceil(4),
            stream: false,
            include_usage: false,
        }
    }

    /// Number of content pieces (words) in the answer.
    pub(crate) fn pieces(&self) -> usize {
        self.end.saturating_sub(self.first)
    }

    pub(crate) fn completion_tokens(&self) -> u64 {
        self.pieces() as u64
    }

    /// Appends the escaped text of content piece `k` (0-based), without quotes.
    pub(crate) fn push_piece(&self, out: &mut Vec<u8>, name: &str, k: usize) {
        if k == 0 && self.greet {
            out.extend_from_slice(b"Hello from ");
            push_json_escaped(out, name);
            out.extend_from_slice(b": ");
        }
        if k == 0 && self.lead_space {
            out.push(b' ');
        }
        out.push(b'w');
        push_u64(out, (self.first + k) as u64);
        out.push(b' ');
    }

    /// Appends the whole answer text as a quoted JSON string.
    pub(crate) fn push_content(&self, out: &mut Vec<u8>, name: &str) {
        out.push(b'"');
        for k in 0..self.pieces() {
            self.push_piece(out, name, k);
        }
        out.push(b'"');
    }
}

/// The partial answer a conversation asks the mock to continue, if any: a trailing
/// assistant prefill, or an assistant turn followed by a "Continue ..." instruction.
fn continued_text<'t>(turns: &'t [Turn<'_>]) -> Option<&'t str> {
    let (last, earlier) = turns.split_last()?;
    if last.role == Role::Assistant {
        return Some(&last.text);
    }
    let previous = earlier.last()?;
    let instruction = last.role == Role::User && last.text.starts_with("Continue");
    (instruction && previous.role == Role::Assistant).then_some(&previous.text)
}

/// The text of a message content: a string, or the `text` fields of an array of
/// parts (OpenAI parts, Anthropic blocks, Gemini parts, Bedrock blocks).
pub(crate) fn text_of(content: Option<&Value>) -> Cow<'_, str> {
    match content {
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(Value::Array(parts)) => Cow::Owned(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => Cow::Borrowed(""),
    }
}

/// One past the highest `w{i}` token in `text`, 0 when there is none.
pub(crate) fn next_word(text: &str) -> usize {
    text.split_whitespace()
        .filter_map(|t| t.strip_prefix('w'))
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|d| d.parse::<usize>().ok())
        .map(|i| i.saturating_add(1))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(role: &str, text: &'static str) -> Turn<'static> {
        Turn {
            role: Role::parse(role),
            text: Cow::Borrowed(text),
        }
    }

    #[test]
    fn continuation_by_role_names() {
        let prefill = [turn("user", "q"), turn("model", "Hello from a: w0 w1 ")];
        let a = Answer::for_turns(&prefill, "m".into(), 4, 1, 0);
        assert_eq!((a.first, a.greet, a.lead_space), (2, false, false));
        let instruction = [
            turn("user", "q"),
            turn("assistant", "w0"),
            turn("user", "Continue."),
        ];
        let a = Answer::for_turns(&instruction, "m".into(), 4, 1, 0);
        assert_eq!((a.first, a.greet, a.lead_space), (1, false, true));
        let fresh = [turn("system", "s"), turn("user", "use a tool")];
        assert!(Answer::for_turns(&fresh, "m".into(), 4, 1, 0).greet);
        assert_eq!(last_user_text(&fresh), Some("use a tool"));
        assert_eq!(last_user_text(&prefill), None);
        assert_eq!(next_word("x w3 w10x w1"), 4);
    }
}
