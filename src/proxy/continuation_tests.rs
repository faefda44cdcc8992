//! Continuation requests and the alignment check, by table.

use super::*;

const BODY: &[u8] = br#"{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":100}"#;

fn messages(body: &[u8]) -> Vec<Value> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["messages"].as_array().unwrap().clone()
}

#[test]
fn prefill_ends_with_the_partial_answer_less_its_last_words() {
    let body = request_body(BODY, "Hello big wide wor", Style::Prefill, 3).unwrap();
    let m = messages(&body);
    assert_eq!(m.len(), 2);
    assert_eq!(
        m[1],
        serde_json::json!({"role": "assistant", "content": "Hello big "})
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["temperature"], 0);
    assert_eq!(
        v["max_tokens"], 97,
        "the client's limit minus what was sent"
    );
    assert_eq!(
        prefill_split("one"),
        0,
        "one word cannot be verified by prefill"
    );
    assert_eq!(prefill_split("one two "), 4);
}

#[test]
fn instruction_style_asks_for_an_echo_of_the_last_words() {
    let partial = "one two three four five six seven eight nine ten ";
    let body = request_body(BODY, partial, Style::Instruction, 0).unwrap();
    let m = messages(&body);
    assert_eq!(m.len(), 3);
    assert_eq!(m[2]["role"], "user");
    let turn = m[2]["content"].as_str().unwrap();
    assert!(
        turn.contains("«three four five six seven eight nine ten»"),
        "{turn}"
    );
    assert_eq!(echo_of("a  b"), "a  b");
    assert_eq!(echo_of(""), "");
}

#[test]
fn what_cannot_be_continued_faithfully() {
    type Case = (&'static [u8], bool);
    let cases: &[Case] = &[
        (br#"{"model":"chat"}"#, false),
        (b"not json", false),
        (br#"{"messages":[],"n":2}"#, false),
        (br#"{"messages":[],"n":1}"#, true),
        (br#"{"messages":[],"logprobs":true}"#, false),
        (
            br#"{"messages":[],"response_format":{"type":"json_schema"}}"#,
            false,
        ),
        (
            br#"{"messages":[],"response_format":{"type":"json_object"}}"#,
            false,
        ),
        (
            br#"{"messages":[],"response_format":{"type":"text"}}"#,
            true,
        ),
    ];
    for &(body, ok) in cases {
        let got = request_body(body, "x", Style::Prefill, 0);
        assert_eq!(got.is_ok(), ok, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn prefill_rejections_are_recognised() {
    let anthropic = br#"{"error":{"type":"invalid_request_error","message":"This model does not support assistant message prefill. The conversation must end with a user message."}}"#;
    let openai = br#"{"error":{"message":"Assistant message prefill is not supported: the final message must be a user or tool message.","type":"invalid_request_error"}}"#;
    assert!(rejects_prefill(400, anthropic));
    assert!(rejects_prefill(400, openai));
    assert!(!rejects_prefill(
        400,
        br#"{"error":{"message":"max_tokens is too large"}}"#
    ));
    assert!(
        !rejects_prefill(503, anthropic),
        "a server error is not a prefill verdict"
    );
    assert!(!rejects_prefill(429, openai));
}

/// Feeds `pieces` and returns what the client would get, or `None` if misaligned.
fn align(partial: &str, style: Style, pieces: &[&str]) -> Option<String> {
    let mut aligner = Aligner::new(partial, style);
    let mut out = String::new();
    for piece in pieces {
        match aligner.push(piece) {
            Aligned::Hold => {}
            Aligned::Emit(text) => out.push_str(&text),
            Aligned::Misaligned => return None,
        }
    }
    match aligner.finish() {
        Aligned::Emit(text) => out.push_str(&text),
        Aligned::Hold => unreachable!("finish always decides"),
        Aligned::Misaligned => return None,
    }
    Some(out)
}

/// Every way a fallback answers a continuation: (partial, style, pieces, what the
/// client gets appended; `None` = the clean error).
#[test]
fn alignment_table() {
    use Style::*;
    const P: &str = "Hello from primary: w0 w1 w2 w3 w4 ";
    type Case = (
        &'static str,
        Style,
        &'static [&'static str],
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        // A model that honours prefill writes the withheld words again: stripped.
        (
            P,
            Prefill,
            &["w3 ", "w4 ", "w5 ", "w6 ", "w7 "],
            Some("w5 w6 w7 "),
        ),
        (P, Prefill, &["w3 w4 w5"], Some("w5")),
        // ...but text that repeats nothing cannot be shown to follow: refused.
        (P, Prefill, &["w5 ", "w6 ", "w7 "], None),
        (P, Prefill, &["Sure, here it is again: w0 w1"], None),
        // A verbatim restart (either style): the repeat is stripped.
        (
            P,
            Prefill,
            &["Hello ", "from primary: ", "w0 w1 w2 w3 w4 ", "w5 ", "w6 "],
            Some("w5 w6 "),
        ),
        (
            P,
            Instruction,
            &["Hello from primary: w0 w1 w2 w3 w4 w5 w6 "],
            Some("w5 w6 "),
        ),
        // A repeat that covers the withheld words (a prefill repeating more).
        (P, Prefill, &["w2 w3 w4 w5 "], Some("w5 ")),
        // An echo of the last words, as asked (or the last sentence): stripped.
        (
            P,
            Instruction,
            &["primary: w0 w1 ", "w2 w3 w4 ", "w5 w6 "],
            Some("w5 w6 "),
        ),
        (P, Instruction, &["w2 w3 w4 w5 w6 "], Some("w5 w6 ")),
        // A reworded restart is never spliced.
        (P, Instruction, &["Sure, here it is again: w0 w1"], None),
        // Instruction style without an echo cannot be shown to follow: refused.
        (P, Instruction, &["w5 w6 w7 "], None),
        // A restart that stops before passing the partial adds nothing true.
        (P, Prefill, &["Hello from primary: w0 w1"], None),
        // Nothing more (the partial was the whole answer).
        (P, Prefill, &[], Some("")),
        (P, Instruction, &["  "], Some("")),
        // A partial without trailing space keeps the model's own spacing.
        ("The answer is", Prefill, &["answer is 42."], Some(" 42.")),
        (
            "The answer is",
            Instruction,
            &["The answer is 42."],
            Some(" 42."),
        ),
        // A short coincidental repeat of the end is not an echo.
        ("we went to the", Instruction, &["the shop"], None),
    ];
    for &(partial, style, pieces, want) in cases {
        let got = align(partial, style, pieces);
        assert_eq!(got.as_deref(), want, "{partial:?} {style:?} {pieces:?}");
    }
}

#[test]
fn holding_is_bounded_by_the_partial() {
    let partial = "x".repeat(10_000);
    let mut aligner = Aligner::new(&partial, Style::Prefill);
    for _ in 1..10_000 {
        assert_eq!(aligner.push("x"), Aligned::Hold);
    }
    // The whole partial repeated: a restart, stripped; what follows is new.
    assert_eq!(aligner.push("x"), Aligned::Emit(String::new()));
    assert_eq!(aligner.push("y"), Aligned::Emit("y".into()));
}
