//! The deterministic answer every dialect sends, and the continuation rules.
//!
//! The answer to every chat request is `"Hello from {name}: "` followed by the words
//! `w0 w1 ... w{n-1}`, each with a trailing space (`n` = `stream_chunks`). Streamed,
//! word `i` is one content piece and whatever precedes the first word (the greeting,
//! or a lead text below) rides in the first one, so the pieces concatenate to the
//! non-streamed content, whatever the dialect. A forced tool call (see
//! [`super::tool`]) replaces the text.
//!
//! A conversation asks to continue a partial answer `P` in one of two styles:
//!
//! - prefill: the last message has an assistant role (`assistant`, or Gemini's
//!   `model`); `P` is its text (e.g. a gateway resuming a broken stream);
//! - instruction: an assistant message `P`, then a last user message that starts
//!   with "Continue" (in every mode but `honest` also one that holds a `«…»` span).
//!
//! `rest(P)`, the honest continuation, is what follows `P` in the full answer: the
//! mock finds the highest `w{i}` token in `P` and answers `w{i+1}` onwards (all
//! words if none is present), without the greeting, after one space if `P` is not
//! empty and does not end in whitespace. So for a `P` that ends on a piece boundary,
//! `P + rest(P)` == the full answer.
//!
//! What a continuation is answered depends on the mock's [`Continuation`] mode
//! (OpenAI, Azure and Anthropic; Gemini and Bedrock always answer `honest`):
//!
//! | mode | prefill | instruction |
//! |---|---|---|
//! | `honest` (default) | `rest(P)` | `rest(P)` |
//! | `prefill_only` | `rest(P)` | `P + rest(P)`: the answer restarted verbatim |
//! | `restart_reworded` | `"Sure, here it is again: "` + all words from `w0` | the same |
//! | `repeat_last_sentence` | `tail(P) + rest(P)` | the same |
//! | `echo_honouring` | `rest(P)` | `S + rest(P)`; like `restart_reworded` without a span |
//! | `reject_prefill` | HTTP 400, the provider's error (see [`Continuation`]) | like `echo_honouring` |
//!
//! `tail(P)` is `P` from the start of its third-last whitespace-separated word to
//! its end, spacing kept (all of `P` but leading whitespace when it has fewer
//! words), so `P + tail(P) + rest(P)` with the repeated `tail(P)` removed once is
//! `P + rest(P)`. `S` is the text of the last user message between its first `«`
//! and the last `»` after it, verbatim; the rest follows it directly, so the answer
//! less `S` is `rest(P)`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::tool::ToolCall;
use super::wire::{push_json_escaped, push_u64};

/// How a mock answers a request to continue a partial answer (the table in
/// `answer.rs`). JSON control form: `{"mode":"honest"}`, `{"mode":"prefill_only"}`,
/// `{"mode":"restart_reworded"}`, `{"mode":"repeat_last_sentence"}`,
/// `{"mode":"echo_honouring"}`, `{"mode":"reject_prefill"}` (`POST
/// /_mock/continuation`, [`super::MockHandle::set_continuation`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Continuation {
    /// Continues both styles correctly.
    #[default]
    Honest,
    /// Continues a prefill; restarts the answer verbatim on an instruction.
    PrefillOnly,
    /// Answers any continuation with `"Sure, here it is again: "` and every word.
    RestartReworded,
    /// Repeats the last 3 words of the partial answer, then continues it.
    RepeatLastSentence,
    /// Continues a prefill; on an instruction begins with its `«…»` span, then
    /// continues (restarts reworded without a span).
    EchoHonouring,
    /// Answers a conversation that ends with an assistant message 400: OpenAI,
    /// Azure `{"error":{"message":"Assistant message prefill is not supported: the
    /// final message must be a user or tool message.","type":"invalid_request_error",
    /// "param":"messages","code":"invalid_request_error"}}`; Anthropic
    /// `{"type":"error","error":{"type":"invalid_request_error","message":"This model
    /// does not support assistant message prefill. The conversation must end with a
    /// user message."}}`. An instruction is answered like `EchoHonouring`.
    RejectPrefill,
}

impl Continuation {
    /// Every mode, in declaration order (the index is the stored form).
    pub const ALL: [Continuation; 6] = [
        Continuation::Honest,
        Continuation::PrefillOnly,
        Continuation::RestartReworded,
        Continuation::RepeatLastSentence,
        Continuation::EchoHonouring,
        Continuation::RejectPrefill,
    ];

    /// Parses the JSON control form.
    pub fn from_json(bytes: &[u8]) -> Result<Continuation, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The JSON control form of this mode.
    pub fn to_json(self) -> String {
        serde_json::to_string(&self).unwrap_or_else(|_| String::from("{\"mode\":\"honest\"}"))
    }

    pub(crate) fn index(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_index(index: u8) -> Continuation {
        Continuation::ALL
            .get(usize::from(index))
            .copied()
            .unwrap_or_default()
    }
}

/// What `restart_reworded` (and an echo mode without a span) says before the words.
pub(crate) const REWORDED: &str = "Sure, here it is again: ";
/// How many words of the partial answer `repeat_last_sentence` repeats.
const TAIL_WORDS: usize = 3;

/// A prefill that `reject_prefill` refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PrefillRejected;

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

/// What precedes the first word of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lead {
    /// `"Hello from {name}: "` (a fresh answer).
    Greeting,
    /// Nothing (continuing a prefix that ends in whitespace).
    Nothing,
    /// One space (continuing a prefix that ends in a word).
    Space,
    /// This text, verbatim (a restart or a repeat; never empty).
    Text(Cow<'static, str>),
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
    /// What precedes the first word, in the first piece.
    pub lead: Lead,
    pub prompt_tokens: u64,
    pub stream: bool,
    pub include_usage: bool,
    /// A function call answered instead of the text.
    pub tool: Option<ToolCall>,
}

impl Answer {
    /// Plans the answer of `words` words to a conversation, by the continuation
    /// rules of `mode`. `body_len` sizes the prompt token count (one token per 4
    /// bytes).
    pub(crate) fn for_turns(
        turns: &[Turn<'_>],
        mode: Continuation,
        model: String,
        words: usize,
        id: u64,
        body_len: usize,
    ) -> Result<Answer, PrefillRejected> {
        let (lead, first) = plan_text(turns, mode, words)?;
        Ok(Answer {
            id,
            model,
            first,
            end: words,
            lead,
            prompt_tokens: (body_len as u64).div_ceil(4),
            stream: false,
            include_usage: false,
            tool: None,
        })
    }

    /// Number of content pieces: the words (one more piece when only a lead text
    /// is left), or the argument chunks of a tool call.
    pub(crate) fn pieces(&self) -> usize {
        if let Some(tool) = &self.tool {
            return tool.pieces();
        }
        match self.end.saturating_sub(self.first) {
            0 if matches!(self.lead, Lead::Text(_)) => 1,
            words => words,
        }
    }

    pub(crate) fn completion_tokens(&self) -> u64 {
        self.pieces() as u64
    }

    /// Appends the escaped text of content piece `k` (0-based), without quotes.
    pub(crate) fn push_piece(&self, out: &mut Vec<u8>, name: &str, k: usize) {
        if k == 0 {
            match &self.lead {
                Lead::Greeting => {
                    out.extend_from_slice(b"Hello from ");
                    push_json_escaped(out, name);
                    out.extend_from_slice(b": ");
                }
                Lead::Nothing => {}
                Lead::Space => out.push(b' '),
                Lead::Text(text) => push_json_escaped(out, text),
            }
        }
        let word = self.first + k;
        if word < self.end {
            out.push(b'w');
            push_u64(out, word as u64);
            out.push(b' ');
        }
    }

    /// Appends the whole answer text as a quoted JSON string.
    pub(crate) fn push_content(&self, out: &mut Vec<u8>, name: &str) {
        out.push(b'"');
        for k in 0..self.pieces() {
            self.push_piece(out, name, k);
        }
        out.push(b'"');
    }

    /// The answer text, unescaped (tests).
    #[cfg(test)]
    pub(crate) fn text(&self, name: &str) -> String {
        let mut out = Vec::new();
        self.push_content(&mut out, name);
        serde_json::from_slice(&out).expect("answer text is a JSON string")
    }
}

/// The lead and first word of the answer to `turns` under `mode`.
fn plan_text(
    turns: &[Turn<'_>],
    mode: Continuation,
    words: usize,
) -> Result<(Lead, usize), PrefillRejected> {
    use Continuation as C;
    let Some((partial, instruction)) = asked(turns, mode) else {
        return Ok((Lead::Greeting, 0));
    };
    let reworded = (Lead::Text(Cow::Borrowed(REWORDED)), 0);
    Ok(match (mode, instruction) {
        (C::RejectPrefill, None) => return Err(PrefillRejected),
        (C::RestartReworded, _) => reworded,
        (C::Honest, _) | (C::PrefillOnly | C::EchoHonouring, None) => {
            let (first, space) = rest_of(partial, words);
            (if space { Lead::Space } else { Lead::Nothing }, first)
        }
        (C::PrefillOnly, Some(_)) => repeating(partial, partial, words),
        (C::RepeatLastSentence, _) => repeating(tail(partial), partial, words),
        (C::EchoHonouring | C::RejectPrefill, Some(ask)) => match span(ask) {
            Some(echo) => repeating(echo, partial, words),
            None => reworded,
        },
    })
}

/// `echo` followed by `rest(partial)`.
fn repeating(echo: &str, partial: &str, words: usize) -> (Lead, usize) {
    let (first, space) = rest_of(partial, words);
    let mut text = String::with_capacity(echo.len() + 1);
    text.push_str(echo);
    if space {
        text.push(' ');
    }
    let lead = if text.is_empty() {
        Lead::Nothing
    } else {
        Lead::Text(Cow::Owned(text))
    };
    (lead, first)
}

/// Where `rest(partial)` starts, and whether a space precedes it.
fn rest_of(partial: &str, words: usize) -> (usize, bool) {
    let space = !partial.is_empty() && !partial.ends_with(char::is_whitespace);
    (next_word(partial).min(words), space)
}

/// The partial answer a conversation asks to continue and, for the instruction
/// style, the text of the instruction; `None` for a fresh question.
fn asked<'t>(turns: &'t [Turn<'_>], mode: Continuation) -> Option<(&'t str, Option<&'t str>)> {
    let (last, earlier) = turns.split_last()?;
    if last.role == Role::Assistant {
        return Some((&last.text, None));
    }
    let previous = earlier.last()?;
    let text: &str = &last.text;
    let asks =
        text.starts_with("Continue") || (mode != Continuation::Honest && span(text).is_some());
    (asks && last.role == Role::User && previous.role == Role::Assistant)
        .then_some((&previous.text, Some(text)))
}

/// The text between the first `«` and the last `»` after it.
pub(crate) fn span(text: &str) -> Option<&str> {
    let open = text.find('«')? + '«'.len_utf8();
    let len = text[open..].rfind('»')?;
    Some(&text[open..open + len])
}

/// `text` from the start of its `TAIL_WORDS`-th last whitespace-separated word.
pub(crate) fn tail(text: &str) -> &str {
    let mut seen = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices().rev() {
        if !c.is_whitespace() {
            in_word = true;
        } else if in_word {
            in_word = false;
            seen += 1;
            if seen == TAIL_WORDS {
                return &text[i + c.len_utf8()..];
            }
        }
    }
    text.trim_start()
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

    fn prefill(partial: &'static str) -> Vec<Turn<'static>> {
        vec![turn("user", "q"), turn("assistant", partial)]
    }

    fn instruction(partial: &'static str, ask: &'static str) -> Vec<Turn<'static>> {
        vec![
            turn("user", "q"),
            turn("assistant", partial),
            turn("user", ask),
        ]
    }

    /// The text `mode` answers to `turns` with 4 words, as mock "b".
    fn answer(mode: Continuation, turns: &[Turn<'_>]) -> Result<String, PrefillRejected> {
        Answer::for_turns(turns, mode, "m".into(), 4, 1, 0).map(|a| a.text("b"))
    }

    const CUT: &str = "Hello from a: w0 w1 ";
    const CUT_WORD: &str = "Hello from a: w0 w1";
    const CONTINUE: &str = "Continue your previous answer exactly where it stopped.";
    const ECHO: &str = "Begin your reply by repeating, exactly, its last words: «w0 w1» — then continue where it stopped.";

    #[test]
    fn continuation_by_role_names() {
        let gemini = [turn("user", "q"), turn("model", CUT)];
        let a = Answer::for_turns(&gemini, Continuation::Honest, "m".into(), 4, 1, 0).unwrap();
        assert_eq!((a.first, &a.lead), (2, &Lead::Nothing));
        let a = Answer::for_turns(
            &instruction("w0", "Continue."),
            Continuation::Honest,
            "m".into(),
            4,
            1,
            0,
        )
        .unwrap();
        assert_eq!((a.first, &a.lead), (1, &Lead::Space));
        let fresh = [turn("system", "s"), turn("user", "use a tool")];
        assert_eq!(
            answer(Continuation::Honest, &fresh).unwrap(),
            "Hello from b: w0 w1 w2 w3 "
        );
        assert_eq!(last_user_text(&fresh), Some("use a tool"));
        assert_eq!(last_user_text(&gemini), None);
        assert_eq!(next_word("x w3 w10x w1"), 4);
    }

    #[test]
    fn honest_continues_both_styles() {
        let mode = Continuation::Honest;
        assert_eq!(answer(mode, &prefill(CUT)).unwrap(), "w2 w3 ");
        assert_eq!(answer(mode, &prefill(CUT_WORD)).unwrap(), " w2 w3 ");
        assert_eq!(answer(mode, &instruction(CUT, CONTINUE)).unwrap(), "w2 w3 ");
        // Unchanged: only "Continue ..." is an instruction, a «…» span is not.
        assert_eq!(
            answer(mode, &instruction(CUT, ECHO)).unwrap(),
            "Hello from b: w0 w1 w2 w3 "
        );
        assert_eq!(
            answer(mode, &instruction(CUT, "Thanks")).unwrap(),
            "Hello from b: w0 w1 w2 w3 "
        );
    }

    #[test]
    fn prefill_only_restarts_instructions_verbatim() {
        let mode = Continuation::PrefillOnly;
        assert_eq!(answer(mode, &prefill(CUT)).unwrap(), "w2 w3 ");
        assert_eq!(
            answer(mode, &instruction(CUT, CONTINUE)).unwrap(),
            "Hello from a: w0 w1 w2 w3 "
        );
        assert_eq!(
            answer(mode, &instruction(CUT_WORD, ECHO)).unwrap(),
            "Hello from a: w0 w1 w2 w3 "
        );
        assert_eq!(
            answer(mode, &instruction("Hello from a: w0 w1 w2 w3 ", CONTINUE)).unwrap(),
            "Hello from a: w0 w1 w2 w3 "
        );
    }

    #[test]
    fn restart_reworded_answers_every_continuation_anew() {
        let mode = Continuation::RestartReworded;
        for turns in [
            prefill(CUT),
            instruction(CUT, CONTINUE),
            instruction(CUT, ECHO),
        ] {
            assert_eq!(
                answer(mode, &turns).unwrap(),
                "Sure, here it is again: w0 w1 w2 w3 "
            );
        }
        let fresh = [turn("user", "q")];
        assert_eq!(answer(mode, &fresh).unwrap(), "Hello from b: w0 w1 w2 w3 ");
    }

    #[test]
    fn repeat_last_sentence_overlaps_three_words() {
        let mode = Continuation::RepeatLastSentence;
        for turns in [prefill(CUT), instruction(CUT, CONTINUE)] {
            let text = answer(mode, &turns).unwrap();
            assert_eq!(text, "a: w0 w1 w2 w3 ");
            let overlap = tail(CUT);
            assert_eq!(
                CUT.to_string() + text.strip_prefix(overlap).unwrap(),
                "Hello from a: w0 w1 w2 w3 "
            );
        }
        assert_eq!(
            answer(mode, &prefill("Hello  from a:\tw0")).unwrap(),
            "from a:\tw0 w1 w2 w3 "
        );
        assert_eq!(answer(mode, &prefill(" w0 ")).unwrap(), "w0 w1 w2 w3 ");
        assert_eq!(tail("a b"), "a b");
        assert_eq!(tail(""), "");
    }

    #[test]
    fn echo_honouring_begins_with_the_span() {
        let mode = Continuation::EchoHonouring;
        assert_eq!(answer(mode, &prefill(CUT)).unwrap(), "w2 w3 ");
        assert_eq!(
            answer(mode, &instruction(CUT, ECHO)).unwrap(),
            "w0 w1w2 w3 "
        );
        assert_eq!(
            answer(mode, &instruction(CUT_WORD, ECHO)).unwrap(),
            "w0 w1 w2 w3 "
        );
        let nested = "Begin with «a «b» c» — then go on.";
        assert_eq!(span(nested), Some("a «b» c"));
        assert_eq!(span("«open only"), None);
        assert_eq!(
            answer(mode, &instruction(CUT, CONTINUE)).unwrap(),
            "Sure, here it is again: w0 w1 w2 w3 "
        );
    }

    #[test]
    fn reject_prefill_refuses_a_trailing_assistant_message() {
        let mode = Continuation::RejectPrefill;
        assert_eq!(answer(mode, &prefill(CUT)), Err(PrefillRejected));
        assert_eq!(
            answer(mode, &instruction(CUT, ECHO)).unwrap(),
            "w0 w1w2 w3 "
        );
        assert_eq!(
            answer(mode, &instruction(CUT, CONTINUE)).unwrap(),
            "Sure, here it is again: w0 w1 w2 w3 "
        );
        assert_eq!(
            answer(mode, &[turn("user", "q")]).unwrap(),
            "Hello from b: w0 w1 w2 w3 "
        );
    }

    #[test]
    fn a_lead_text_alone_is_one_piece() {
        let turns = instruction("Hello from a: w0 w1 w2 w3 ", CONTINUE);
        let a = Answer::for_turns(&turns, Continuation::PrefillOnly, "m".into(), 4, 1, 0).unwrap();
        assert_eq!((a.first, a.end, a.pieces()), (4, 4, 1));
        let a =
            Answer::for_turns(&prefill(CUT), Continuation::Honest, "m".into(), 2, 1, 0).unwrap();
        assert_eq!(a.pieces(), 0);
    }

    #[test]
    fn control_form_round_trips() {
        for mode in Continuation::ALL {
            assert_eq!(
                Continuation::from_json(mode.to_json().as_bytes()).unwrap(),
                mode
            );
            assert_eq!(Continuation::from_index(mode.index()), mode);
        }
        assert_eq!(
            Continuation::from_json(br#"{"mode":"repeat_last_sentence"}"#).unwrap(),
            Continuation::RepeatLastSentence
        );
        assert_eq!(
            Continuation::RejectPrefill.to_json(),
            r#"{"mode":"reject_prefill"}"#
        );
        for bad in [r#"{"mode":"liar"}"#, "{}", "honest"] {
            assert!(Continuation::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
