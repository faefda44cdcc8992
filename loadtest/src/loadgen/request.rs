//! The request every connection sends: one pre-encoded HTTP/1.1 POST of a realistic
//! OpenAI chat-completions body, or the same conversation as an Anthropic Messages
//! body when the path ends in `/messages` (to call such a provider directly).

use serde_json::json;

use super::LoadSpec;

const SYSTEM_PROMPT: &str = "You are a concise support assistant for an online store. \
Answer in two or three sentences, cite the relevant policy section when you can, and \
never invent order numbers, prices or delivery dates that the customer did not give you.";

const USER_PROMPT: &str = "Hi, I ordered a pair of running shoes last Tuesday and the \
tracking page has said 'label created' for four days now. Can you tell me whether the \
parcel is actually on its way, and what I can do if it does not arrive before Friday?";

/// The full request bytes (head and body) for `spec`.
pub(crate) fn build(spec: &LoadSpec) -> Vec<u8> {
    let anthropic = spec.path.ends_with("/messages");
    let body = if anthropic {
        messages_body(&spec.model, spec.stream)
    } else {
        body(&spec.model, spec.stream)
    };
    let mut head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\nuser-agent: switchyard-loadgen\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n",
        spec.path,
        spec.target,
        body.len()
    );
    if spec.stream {
        head.push_str("accept: text/event-stream\r\n");
    }
    match (&spec.api_key, anthropic) {
        (Some(key), false) => head.push_str(&format!("authorization: Bearer {key}\r\n")),
        (Some(key), true) => head.push_str(&format!("x-api-key: {key}\r\n")),
        (None, _) => {}
    }
    if anthropic {
        head.push_str("anthropic-version: 2023-06-01\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

fn body(model: &str, stream: bool) -> String {
    json!({
        "model": model,
        "messages": [
            { "role": "system", "content": SYSTEM_PROMPT },
            { "role": "user", "content": USER_PROMPT },
        ],
        "max_tokens": 256,
        "temperature": 0.2,
        "stream": stream,
    })
    .to_string()
}

/// The same conversation as [`body`], shaped for Anthropic's Messages API.
fn messages_body(model: &str, stream: bool) -> String {
    json!({
        "model": model,
        "system": SYSTEM_PROMPT,
        "messages": [{ "role": "user", "content": USER_PROMPT }],
        "max_tokens": 256,
        "temperature": 0.2,
        "stream": stream,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_parseable_post_with_matching_length() {
        let mut spec = LoadSpec::new("127.0.0.1:8080".parse().unwrap());
        spec.api_key = Some("K".into());
        spec.stream = true;
        let bytes = build(&spec);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(len) = req.parse(&bytes).unwrap() else {
            panic!("incomplete head");
        };
        assert_eq!(
            (req.method, req.path),
            (Some("POST"), Some("/v1/chat/completions"))
        );
        let auth = req
            .headers
            .iter()
            .find(|h| h.name == "authorization")
            .unwrap();
        assert_eq!(auth.value, b"Bearer K");
        let body: serde_json::Value = serde_json::from_slice(&bytes[len..]).unwrap();
        assert_eq!(body["stream"], true);
        assert_eq!(body["model"], "demo");
        let text = body["messages"].to_string();
        assert!((350..700).contains(&text.len()), "{}", text.len());
    }

    #[test]
    fn a_messages_path_gets_an_anthropic_body_and_key_header() {
        let mut spec = LoadSpec::new("127.0.0.1:8080".parse().unwrap());
        spec.path = "/v1/messages".into();
        spec.api_key = Some("K".into());
        let bytes = build(&spec);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("x-api-key: K\r\n"), "{text}");
        assert!(!text.contains("authorization"), "{text}");
        let at = text.find("\r\n\r\n").unwrap() + 4;
        let body: serde_json::Value = serde_json::from_str(&text[at..]).unwrap();
        assert_eq!(body["system"], SYSTEM_PROMPT);
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["max_tokens"], 256);
    }
}
