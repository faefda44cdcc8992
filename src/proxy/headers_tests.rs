//! The header policy by table: defaults per kind, allow/deny/wildcards, the
//! never-forwarded list, user-agent, caps, merging and returned headers.

use super::*;
use crate::http::response::BodyFraming;

const KINDS: [ProviderKind; 6] = [
    ProviderKind::OpenAi,
    ProviderKind::OpenAiCompatible,
    ProviderKind::Azure,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Bedrock,
];

fn config(allow: &[&str], deny: &[&str]) -> ForwardHeaders {
    ForwardHeaders {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
    }
}

fn client(headers: &[(&str, &str)]) -> Fields {
    headers.iter().copied().collect()
}

fn names(selected: &[(&str, &[u8])]) -> Vec<String> {
    selected.iter().map(|(n, _)| n.to_string()).collect()
}

#[test]
fn defaults_per_kind() {
    // (header, kinds it reaches by default)
    let table: &[(&str, &[ProviderKind])] = &[
        ("anthropic-beta", &[ProviderKind::Anthropic]),
        ("anthropic-version", &[ProviderKind::Anthropic]),
        (
            "openai-beta",
            &[
                ProviderKind::OpenAi,
                ProviderKind::OpenAiCompatible,
                ProviderKind::Azure,
            ],
        ),
        ("traceparent", &KINDS),
        ("tracestate", &KINDS),
        ("x-acme-team", &[]),
        ("user-agent", &[]),
    ];
    for (header, reaches) in table {
        for kind in KINDS {
            let policy = Forwarding::resolve(kind, &ForwardHeaders::default());
            assert_eq!(
                policy.forwards(header),
                reaches.contains(&kind),
                "{header} {kind:?}"
            );
            // Names compare case-insensitively.
            let upper = header.to_ascii_uppercase();
            assert_eq!(
                policy.forwards(&upper),
                reaches.contains(&kind),
                "{upper} {kind:?}"
            );
        }
    }
}

#[test]
fn allow_deny_and_wildcards() {
    let cases: &[(&[&str], &[&str], &str, bool)] = &[
        (&["x-acme-team"], &[], "x-acme-team", true),
        (&["X-Acme-Team"], &[], "x-acme-team", true),
        (&["x-acme-*"], &[], "x-acme-team", true),
        (&["x-acme-*"], &[], "x-acme-", true),
        (&["x-acme-*"], &[], "x-acmeteam", false),
        (&["x-acme-*"], &["x-acme-secret"], "x-acme-secret", false),
        (&["x-acme-*"], &["x-acme-*"], "x-acme-team", false),
        // deny wins over the kind's defaults
        (&[], &["traceparent"], "traceparent", false),
        (&[], &["openai-*"], "openai-beta", false),
        (&[], &[], "x-other", false),
        // allow never reaches a never-forwarded header (refused at load too)
        (&["authorization"], &[], "authorization", false),
        (&["x-*"], &[], "x-api-key", false),
        (&["x-*"], &[], "x-amz-date", false),
        (&["x-*"], &[], "x-switchyard-timeout-ms", false),
        (&["x-*"], &[], "x-request-id", false),
        (&["x-*"], &[], "x-anything", true),
    ];
    for (allow, deny, header, forwarded) in cases {
        let policy = Forwarding::resolve(ProviderKind::OpenAi, &config(allow, deny));
        assert_eq!(
            policy.forwards(header),
            *forwarded,
            "{allow:?} {deny:?} {header}"
        );
    }
}

#[test]
fn never_forwarded_list() {
    let never = [
        "authorization",
        "Authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "proxy-authorization",
        "cookie",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-type",
        "content-encoding",
        "accept-encoding",
        "expect",
        "x-request-id",
        "x-switchyard-timeout-ms",
        "X-Switchyard-Anything",
    ];
    for name in never {
        assert!(never_forwarded(name).is_some(), "{name}");
        assert!(never_allowed(name).is_some(), "{name}");
        let policy = Forwarding::resolve(ProviderKind::Anthropic, &config(&[name], &[]));
        assert!(!policy.forwards(name), "{name}");
    }
    for name in [
        "traceparent",
        "x-acme-team",
        "anthropic-beta",
        "accept",
        "x-amzn-trace-id",
    ] {
        assert_eq!(never_forwarded(name), None, "{name}");
    }
    // Prefixes: inside a never-forwarded one is refused, wider ones are not.
    assert!(never_allowed("x-amz-*").is_some());
    assert!(never_allowed("x-amz-sdk-*").is_some());
    assert!(never_allowed("x-switchyard-*").is_some());
    assert_eq!(never_allowed("x-*"), None);
    assert_eq!(never_allowed("x-acme-*"), None);
}

#[test]
fn entries_must_be_header_names() {
    for good in ["x-acme-team", "x-acme-*", "a", "x_y.z"] {
        assert!(valid_entry(good), "{good}");
    }
    for bad in ["", "*", "x acme", "x-acme:", "x-*-y", "x-ä"] {
        assert!(!valid_entry(bad), "{bad}");
    }
}

#[test]
fn select_keeps_client_order_and_drops_the_rest() {
    let policy = Forwarding::resolve(
        ProviderKind::Anthropic,
        &config(&["x-acme-*"], &["x-acme-secret"]),
    );
    let headers = client(&[
        ("authorization", "Bearer client"),
        ("x-api-key", "client-key"),
        ("x-acme-team", "blue"),
        ("anthropic-beta", "tools-2024"),
        ("openai-beta", "assistants=v2"),
        ("x-acme-secret", "s"),
        ("traceparent", "00-abc-def-01"),
        ("x-acme-team", "second"),
        ("user-agent", "sdk/1"),
        ("content-length", "12"),
    ]);
    let selected = policy.select(&headers);
    assert_eq!(
        names(&selected),
        ["x-acme-team", "anthropic-beta", "traceparent"]
    );
    assert_eq!(selected[0].1, b"blue");
}

#[test]
fn select_is_capped_in_count_and_bytes() {
    let policy = Forwarding::resolve(ProviderKind::OpenAi, &config(&["x-many-*"], &[]));
    let many: Fields = (0..MAX_FORWARDED + 10)
        .map(|i| (format!("x-many-{i}"), b"v".to_vec()))
        .collect();
    assert_eq!(policy.select(&many).len(), MAX_FORWARDED);
    let big: Fields = (0..4)
        .map(|i| (format!("x-many-{i}"), vec![b'a'; 3000]))
        .collect();
    let selected = policy.select(&big);
    assert_eq!(selected.len(), 2);
    let bytes: usize = selected.iter().map(|(n, v)| n.len() + v.len()).sum();
    assert!(bytes <= MAX_FORWARDED_BYTES);
}

#[test]
fn user_agent_is_appended_capped_and_deniable() {
    let policy = Forwarding::resolve(ProviderKind::Gemini, &ForwardHeaders::default());
    assert_eq!(&policy.user_agent(None)[..], OUR_USER_AGENT.as_bytes());
    let ua = policy.user_agent(Some(b"  openai-python/1.2  "));
    assert_eq!(
        ua[..],
        *format!("{OUR_USER_AGENT} openai-python/1.2").as_bytes()
    );
    let long = vec![b'a'; 1000];
    let ua = policy.user_agent(Some(&long));
    assert_eq!(ua.len(), OUR_USER_AGENT.len() + 1 + MAX_CLIENT_USER_AGENT);
    assert_eq!(
        &policy.user_agent(Some(b"bad\x01ua"))[..],
        OUR_USER_AGENT.as_bytes()
    );
    let denied = Forwarding::resolve(ProviderKind::Gemini, &config(&[], &["user-agent"]));
    assert_eq!(
        &denied.user_agent(Some(b"sdk/1"))[..],
        OUR_USER_AGENT.as_bytes()
    );
    assert!(OUR_USER_AGENT.starts_with("switchyard/"));
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn configured_headers_win_over_forwarded_ones() {
    // The adapter's own: auth, its default anthropic-version, a configured header.
    let own = pairs(&[
        ("x-api-key", "provider-key"),
        ("anthropic-version", "2023-06-01"),
        ("x-acme-team", "ops"),
    ]);
    let configured = pairs(&[("x-acme-team", "ops")]);
    let target = pairs(&[("x-acme-env", "prod"), ("user-agent", "custom/1")]);
    let forwarded: Vec<(&str, &[u8])> = vec![
        ("anthropic-version", b"2024-01-01"),
        ("x-acme-team", b"client"),
        ("x-acme-env", b"client"),
        ("traceparent", b"00-1"),
    ];
    let merged = merge(&own, &configured, &target, &forwarded, b"switchyard/x");
    let got: Vec<(&str, &[u8])> = merged.to_vec();
    assert_eq!(
        got,
        vec![
            ("x-api-key", b"provider-key".as_slice()),
            ("x-acme-team", b"ops".as_slice()),
            ("x-acme-env", b"prod".as_slice()),
            ("user-agent", b"custom/1".as_slice()),
            ("anthropic-version", b"2024-01-01".as_slice()),
            ("traceparent", b"00-1".as_slice()),
        ]
    );
    // A configured anthropic-version is the operator's: the client's gives way.
    let configured = pairs(&[("anthropic-version", "2023-06-01")]);
    let merged = merge(&own, &configured, &[], &forwarded[..1], b"ua");
    let versions: Vec<&[u8]> = merged
        .iter()
        .filter(|(n, _)| *n == "anthropic-version")
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(versions, [b"2023-06-01".as_slice()]);
    assert!(merged.contains(&("user-agent", b"ua".as_slice())));
}

fn head(headers: &[(&str, &[u8])]) -> ResponseHead {
    ResponseHead {
        status: 200,
        headers: headers.iter().copied().collect(),
        framing: BodyFraming::ContentLength(0),
        keep_alive: true,
        head_len: 0,
    }
}

#[test]
fn returned_headers_are_renamed_and_bounded() {
    let long = vec![b'1'; MAX_RETURNED_VALUE + 1];
    let got = returned(&head(&[
        ("x-ratelimit-limit-requests", b"100"),
        ("x-ratelimit-remaining-tokens", b"999"),
        ("anthropic-ratelimit-tokens-reset", b"2024-01-01T00:00:00Z"),
        ("request-id", b"req_anthropic"),
        ("x-request-id", b"second-id"),
        ("x-ratelimit-huge", &long),
        ("x-ratelimit-", b"empty suffix"),
        ("x-ratelimit-bad", b"a\x7fb"),
        ("content-type", b"application/json"),
        ("set-cookie", b"a=b"),
    ]));
    let want: Vec<(String, Vec<u8>)> = vec![
        (
            "x-switchyard-upstream-ratelimit-limit-requests".into(),
            b"100".to_vec(),
        ),
        (
            "x-switchyard-upstream-ratelimit-remaining-tokens".into(),
            b"999".to_vec(),
        ),
        (
            "x-switchyard-upstream-ratelimit-tokens-reset".into(),
            b"2024-01-01T00:00:00Z".to_vec(),
        ),
        (
            "x-switchyard-upstream-request-id".into(),
            b"req_anthropic".to_vec(),
        ),
    ];
    assert_eq!(got.to_pairs(), want);
    for (name, id) in [
        ("apim-request-id", "azure"),
        ("x-amzn-requestid", "aws"),
        ("x-request-id", "oai"),
    ] {
        let got = returned(&head(&[(name, id.as_bytes())]));
        assert_eq!(
            got.to_pairs(),
            vec![(RETURNED_REQUEST_ID.to_string(), id.as_bytes().to_vec())],
            "{name}"
        );
    }
    let many: Fields = (0..MAX_RETURNED + 5)
        .map(|i| (format!("x-ratelimit-n{i}"), b"1".to_vec()))
        .collect();
    let many_head = ResponseHead {
        headers: many,
        ..head(&[])
    };
    assert_eq!(returned(&many_head).len(), MAX_RETURNED);
}

#[test]
fn overhead_is_own_time_in_ms_with_three_decimals() {
    let overhead_ms = |start, waited, now| {
        let mut out = Vec::new();
        push_overhead_ms(&mut out, start, waited, now);
        String::from_utf8(out).unwrap_or_default()
    };
    let start = Instant::now();
    let now = start + Duration::from_micros(12_345);
    assert_eq!(overhead_ms(start, Duration::ZERO, now), "12.345");
    assert_eq!(overhead_ms(start, Duration::from_millis(12), now), "0.345");
    // Waiting longer than the span (clock granularity) never goes negative.
    assert_eq!(overhead_ms(start, Duration::from_secs(1), now), "0.000");
    let later = start + Duration::from_nanos(1_234_567_890);
    assert_eq!(overhead_ms(start, Duration::ZERO, later), "1234.568");
}

#[test]
fn traceparent_is_the_gateways_when_traced() {
    let ours: &[u8] = b"00-aa-bb-01";
    let client: Vec<(&str, &[u8])> = vec![("traceparent", b"00-cc-dd-01"), ("x-a", b"1")];
    type Pairs<'a> = &'a [(&'a str, &'a [u8])];
    let table: [(Pairs, Option<&[u8]>, bool, Pairs); 4] = [
        (
            &client,
            Some(ours),
            true,
            &[("traceparent", ours), ("x-a", b"1")],
        ),
        (&client, None, true, &client),
        (
            &client[1..],
            Some(ours),
            true,
            &[("x-a", b"1"), ("traceparent", ours)],
        ),
        (&client[1..], Some(ours), false, &client[1..]),
    ];
    for (forwarded, ours, allowed, want) in table {
        assert_eq!(
            &with_traceparent(forwarded.iter().copied().collect(), ours, allowed)[..],
            want
        );
    }
}

#[test]
fn byte_classes_are_rfc_9110_tokens_and_field_values() {
    for b in 0..=255u8 {
        let token = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        let value = b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
        assert_eq!(is_token_byte(b), token, "token {b:#x}");
        assert_eq!(valid_value_byte(b), value, "value {b:#x}");
    }
}
