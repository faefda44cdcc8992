//! Continuing a stream that broke after the client saw part of the answer: the
//! request that asks another target for exactly the rest, and the check that what
//! comes back really is the rest before a byte of it reaches the client.
//!
//! Two styles. **Prefill**: the partial answer, less its last [`PREFILL_TAIL`]
//! words, is the last (assistant) message; a model that continues it writes those
//! words again first. **Instruction**: the partial answer is an assistant turn and a
//! user turn asks to continue, beginning with an exact echo of its last
//! [`ECHO_WORDS`] words. Either way the continuation must repeat some of what the
//! client already has — that is the proof that it follows the partial rather than
//! starting over (many servers answer a trailing assistant message as a new turn,
//! and asked to continue, a model often restarts). Every continuation passes
//! through an [`Aligner`]: the repeat (the withheld words, the echo, a verbatim
//! restart) is checked and stripped and only what follows is spliced; anything that
//! cannot be shown to follow ends the stream with the clean error instead. Text the
//! client already has is never sent twice.

use serde_json::{Map, Value};

/// How many of the partial's last words the instruction style asks to be echoed.
pub const ECHO_WORDS: usize = 8;
/// How many of the partial's last words a prefill withholds, to be written again.
pub const PREFILL_TAIL: usize = 2;
/// In instruction style a repeat of the partial's end shorter than this is not
/// taken as an echo (it may be a coincidence).
const MIN_OVERLAP: usize = 6;

/// How a continuation asks for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Prefill,
    Instruction,
}

/// Why a stream cannot be continued faithfully (it ends with the clean error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotContinuable {
    #[error("the request body has no `messages` array to extend")]
    NoMessages,
    #[error("the request asks for {0}, which a continuation cannot reproduce")]
    Unfaithful(&'static str),
}

/// The user turn of an instruction-style continuation that asks to begin with
/// `echo`.
pub fn instruction(echo: &str) -> String {
    format!(
        "Continue your previous answer exactly where it stopped. Begin your reply by repeating, exactly, its last words: «{echo}» — then continue with the rest, with no preamble."
    )
}

/// The partial's last [`ECHO_WORDS`] words, as they appear in it (spacing kept).
pub fn echo_of(partial: &str) -> &str {
    let trimmed = partial.trim_end();
    &trimmed[last_words_start(trimmed, ECHO_WORDS)..]
}

/// Where a prefill cuts the partial: it sends `partial[..split]` and withholds the
/// last [`PREFILL_TAIL`] words (at most all but the first). Zero when the partial
/// has fewer than two words: a prefill could not be verified.
pub fn prefill_split(partial: &str) -> usize {
    let trimmed = partial.trim_end();
    let words = trimmed.split_whitespace().count();
    if words < 2 {
        return 0;
    }
    last_words_start(trimmed, PREFILL_TAIL.min(words - 1))
}

/// The byte index where the last `n` whitespace-separated words of `text` begin.
fn last_words_start(text: &str, n: usize) -> usize {
    let mut words = 0;
    let mut start = text.len();
    let mut in_word = false;
    for (i, c) in text.char_indices().rev() {
        if !c.is_whitespace() {
            in_word = true;
            start = i;
            continue;
        }
        if in_word {
            words += 1;
            if words == n {
                break;
            }
        }
        in_word = false;
    }
    start
}

/// The client's body extended with the partial answer in `style`. `sent_tokens`
/// (an estimate of what the client already has) comes off the client's own
/// `max_tokens` / `max_completion_tokens`.
pub fn request_body(
    original: &[u8],
    partial: &str,
    style: Style,
    sent_tokens: u64,
) -> Result<Vec<u8>, NotContinuable> {
    let mut body: Map<String, Value> =
        serde_json::from_slice(original).map_err(|_| NotContinuable::NoMessages)?;
    faithful(&body)?;
    let messages = body
        .get_mut("messages")
        .and_then(Value::as_array_mut)
        .ok_or(NotContinuable::NoMessages)?;
    let said = match style {
        Style::Prefill => &partial[..prefill_split(partial)],
        Style::Instruction => partial,
    };
    messages.push(serde_json::json!({ "role": "assistant", "content": said }));
    if style == Style::Instruction {
        let turn = instruction(echo_of(partial));
        messages.push(serde_json::json!({ "role": "user", "content": turn }));
    }
    for key in ["max_tokens", "max_completion_tokens"] {
        if let Some(limit) = body.get(key).and_then(Value::as_u64) {
            body.insert(
                key.into(),
                Value::from(limit.saturating_sub(sent_tokens).max(1)),
            );
        }
    }
    body.insert("stream".into(), Value::Bool(true));
    serde_json::to_vec(&Value::Object(body)).map_err(|_| NotContinuable::NoMessages)
}

/// Requests whose answer a continuation cannot reproduce: several choices,
/// structured output, token log-probabilities.
fn faithful(body: &Map<String, Value>) -> Result<(), NotContinuable> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(NotContinuable::Unfaithful("several choices (`n` > 1)"));
    }
    if body.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(NotContinuable::Unfaithful("log-probabilities"));
    }
    let format = body
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str);
    if matches!(format, Some("json_schema" | "json_object")) {
        return Err(NotContinuable::Unfaithful("structured (JSON) output"));
    }
    Ok(())
}

/// Whether an error answer says the target does not take a trailing assistant
/// message (prefill): the cue to continue in instruction style instead.
pub fn rejects_prefill(status: u16, body: &[u8]) -> bool {
    if !(400..500).contains(&status) || status == 429 {
        return false;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    text.contains("prefill")
        || text.contains("must end with a user")
        || (text.contains("final message") || text.contains("last message"))
            && (text.contains("user") || text.contains("assistant"))
}

/// Roughly how many tokens `text` is (for the continuation's `max_tokens`).
pub fn estimate_tokens(text: &str) -> u64 {
    crate::wire::usage::estimate_tokens_of_bytes(text.len())
}

/// What to do with a continuation's text so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aligned {
    /// Not decided yet: send nothing.
    Hold,
    /// Send this text (the part that follows what the client has).
    Emit(String),
    /// It does not follow the partial: send nothing, ever.
    Misaligned,
}

/// How far back from the partial's end a repeat of it is looked for (bytes).
const ECHO_WINDOW: usize = 512;

/// Decides whether a continuation lines up with the partial answer the client
/// holds. It holds the continuation's first text while it still repeats the
/// partial from some position — its start (a verbatim restart) or a point within
/// the last [`ECHO_WINDOW`] bytes (an echo of the end; for a prefill, one that
/// covers the withheld words) — so the text held is bounded by the partial's
/// length and each piece costs O(candidates × piece). A continuation that repeats
/// nothing of the partial is never spliced.
#[derive(Debug, Clone)]
pub struct Aligner {
    /// The partial answer without trailing whitespace.
    partial: String,
    partial_ends_in_space: bool,
    style: Style,
    buffered: String,
    /// Positions in `partial` from which the held text still repeats it.
    candidates: Vec<usize>,
    /// Bytes of the held text (leading whitespace trimmed) already compared
    /// against every candidate.
    checked: usize,
    decided: bool,
}

impl Aligner {
    pub fn new(partial: &str, style: Style) -> Aligner {
        let trimmed = partial.trim_end();
        let window = trimmed.len().saturating_sub(ECHO_WINDOW).max(1);
        // A prefill's repeat must cover the words it withheld.
        let last = match style {
            Style::Prefill => prefill_split(partial),
            Style::Instruction => trimmed.len(),
        };
        let candidates = std::iter::once(0)
            .chain(
                trimmed
                    .char_indices()
                    .map(|(i, _)| i)
                    .filter(|&i| i >= window && i <= last),
            )
            .collect();
        Aligner {
            partial: trimmed.to_string(),
            partial_ends_in_space: trimmed.len() != partial.len(),
            style,
            buffered: String::new(),
            candidates,
            checked: 0,
            decided: false,
        }
    }

    /// Whether the continuation was found to follow the partial.
    pub fn decided(&self) -> bool {
        self.decided
    }

    /// Takes the next piece of the continuation's text.
    pub fn push(&mut self, text: &str) -> Aligned {
        if self.decided {
            return Aligned::Emit(text.to_string());
        }
        self.buffered.push_str(text);
        let start = self.buffered.trim_start();
        if start.is_empty() {
            return Aligned::Hold;
        }
        // Only the new bytes are compared: each candidate matched the rest already.
        let (partial, checked) = (&self.partial, self.checked);
        let new = &start[checked..];
        self.candidates.retain(|&p| {
            let Some(rest) = partial.get(p + checked..) else {
                return true; // complete before: the whole repeat was seen
            };
            rest.starts_with(new) || new.starts_with(rest)
        });
        self.checked = start.len();
        if self.still_repeating() {
            return Aligned::Hold;
        }
        self.decide()
    }

    /// The continuation ended while its text was still held.
    pub fn finish(&mut self) -> Aligned {
        if self.decided || self.buffered.trim().is_empty() {
            // Nothing more to say: the partial was the whole answer.
            self.decided = true;
            return Aligned::Emit(String::new());
        }
        if self.still_repeating() {
            // It stopped in the middle of repeating the partial: nothing new.
            return Aligned::Misaligned;
        }
        self.decide()
    }

    /// Some candidate still matches and the held text has not passed its end.
    fn still_repeating(&self) -> bool {
        let held = self.buffered.trim_start().len();
        self.candidates
            .iter()
            .any(|&p| self.partial.len() - p > held)
    }

    /// No candidate is still in progress: strip the longest repeat of the partial
    /// that the held text completed (a whole restart, or an echo of the end long
    /// enough not to be chance); without one it is not aligned.
    fn decide(&mut self) -> Aligned {
        let start = self.buffered.trim_start();
        let min = match self.style {
            Style::Prefill => 1,
            Style::Instruction => MIN_OVERLAP,
        };
        let repeated = self
            .candidates
            .iter()
            .map(|&p| self.partial.len() - p)
            .filter(|&len| len == self.partial.len() || len >= min)
            .max();
        let verdict = match repeated {
            Some(len) => {
                let rest = &start[len..];
                let rest = if self.partial_ends_in_space {
                    rest.trim_start()
                } else {
                    rest
                };
                Aligned::Emit(rest.to_string())
            }
            None => Aligned::Misaligned,
        };
        self.decided = verdict != Aligned::Misaligned;
        verdict
    }
}

#[cfg(test)]
#[path = "continuation_tests.rs"]
mod tests;
