//! The shortest end-to-end path: a client, the gateway, a mock provider.

mod common;

use common::*;

#[test]
fn proxies_a_chat_completion_and_a_stream() {
    let primary = mock("primary");
    let gw = gateway(&chain_yaml(&[("primary", &primary)], "", ""));
    let response = chat(gw.addr());
    assert_served_by(&response, "primary/primary-model");
    assert_eq!(response.json()["model"], "primary-model");
    assert!(response.header("x-request-id").is_some());
    let recorded = primary.last_request().expect("mock saw the request");
    let body: serde_json::Value = serde_json::from_slice(&recorded.body).unwrap();
    assert_eq!(body["model"], "primary-model");

    let stream = chat_stream(gw.addr());
    assert_eq!(stream.status, 200);
    assert_eq!(stream.sse_data().last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        stream.stream_text(),
        response.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
    );
    gw.shutdown();
    primary.shutdown();
}

#[test]
fn falls_back_when_the_primary_is_down() {
    let (_primary, _fallback, gw) = primary_down_chain("");
    let response = chat(gw.addr());
    assert_fell_back(&response);
    assert_eq!(response.header("x-switchyard-attempts"), Some("2"));
    gw.shutdown();
}

#[test]
fn routes_embeddings_with_the_same_rules() {
    let (_primary, fallback, gw) = primary_down_chain("");
    let mut client = client(&gw);
    let body = r#"{"model":"chat","input":"hello","stream":true}"#;
    let response = client
        .request(
            "POST",
            "/v1/embeddings",
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
    assert_served_by(&response, "fallback/fallback-model");
    assert!(
        response.json()["data"][0]["embedding"].is_array(),
        "{}",
        response.text()
    );
    let recorded = fallback.last_request().unwrap();
    assert_eq!(recorded.path, "/v1/embeddings");
    gw.shutdown();
}

/// Every shipped config under config/ validates (secrets given as placeholders);
/// price lists (`prices*.yaml`) are checked by the config tests instead.
#[test]
fn every_shipped_config_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir("config").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        // A price list is a `prices_file:`, not a config (the config tests load it).
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("prices") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let origin = path.display().to_string();
        let result = switchyard::config::load_str(&text, &origin, &|name| {
            Some(format!("placeholder-{name}"))
        });
        if let Err(errors) = result {
            panic!("{origin} does not validate:\n{errors}");
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the example, demo and cross-provider configs"
    );
}
