//! Continuing a stream that broke after the client saw part of the answer: the
//! request that asks another target for exactly the rest.
//!
//! Targets that accept an assistant prefill get the partial answer as the last
//! (assistant) message and continue it. Targets that reject a trailing assistant
//! message (many current chat models answer 400) get the instruction style: the
//! partial answer as an assistant turn, then a user turn asking to continue
//! exactly where it stopped.

use serde_json::{Map, Value};

/// The user turn of an instruction-style continuation.
pub const CONTINUE_INSTRUCTION: &str =
    "Continue your previous answer exactly where it stopped. Do not repeat any of it and do not add any preamble.";

/// The client's body with the partial answer appended, or `None` when the body has
/// no `messages` array to extend.
pub fn request_body(original: &[u8], partial: &str, prefill: bool) -> Option<Vec<u8>> {
    let mut body: Map<String, Value> = serde_json::from_slice(original).ok()?;
    let messages = body.get_mut("messages")?.as_array_mut()?;
    messages.push(serde_json::json!({ "role": "assistant", "content": partial }));
    if !prefill {
        messages.push(serde_json::json!({ "role": "user", "content": CONTINUE_INSTRUCTION }));
    }
    body.insert("stream".into(), Value::Bool(true));
    serde_json::to_vec(&Value::Object(body)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}],"temperature":0}"#;

    #[test]
    fn prefill_ends_with_the_partial_answer() {
        let body: Value =
            serde_json::from_slice(&request_body(BODY, "Hello wor", true).unwrap()).unwrap();
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[1],
            serde_json::json!({"role": "assistant", "content": "Hello wor"})
        );
        assert_eq!(body["temperature"], 0);
    }

    #[test]
    fn instruction_style_adds_a_user_turn() {
        let body: Value =
            serde_json::from_slice(&request_body(BODY, "Hello", false).unwrap()).unwrap();
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[2]["role"], "user");
        assert_eq!(messages[2]["content"], CONTINUE_INSTRUCTION);
    }

    #[test]
    fn bodies_without_messages_cannot_continue() {
        assert!(request_body(br#"{"model":"chat"}"#, "x", true).is_none());
        assert!(request_body(b"not json", "x", true).is_none());
    }
}
