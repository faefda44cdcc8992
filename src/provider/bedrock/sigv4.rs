//! AWS Signature Version 4 for request headers: canonical request, string to
//! sign, signing-key chain and the `Authorization` value (AWS's "Create a signed
//! AWS API request" reference; checked against the aws-sig-v4-test-suite).
//!
//! Paths are signed the way every non-S3 AWS service checks them: the path as
//! sent (its segments already percent-encoded once) is URI-encoded again, so a
//! model id `a:0` travels as `a%3A0` and is signed as `a%253A0`.

use std::time::{SystemTime, UNIX_EPOCH};

use ring::{digest, hmac};

use crate::config::AwsCredentials;
use crate::log::civil_from_days;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Where a signature is valid: region and service of the credential scope.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
}

/// The parts of one request that are signed.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path exactly as sent (segments already percent-encoded), no query.
    pub path: &'a str,
    /// The query as sent (`a=1&b=2`, already percent-encoded), or empty.
    pub query: &'a str,
    /// Every signed header (`host` and `x-amz-date` included), names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// The `Authorization` header value for `request` at `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub fn authorization(
    credentials: &AwsCredentials,
    scope: Scope<'_>,
    amz_date: &str,
    request: &Request<'_>,
) -> String {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let (canonical, signed_headers) = canonical_request(request);
    let to_sign = string_to_sign(amz_date, &credential_scope, &canonical);
    let key = signing_key(&credentials.secret_access_key, date, scope);
    let signature = hex(hmac_sha256(key.as_ref(), to_sign.as_bytes()).as_ref());
    format!(
        "{ALGORITHM} Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    )
}

/// The canonical request and its `SignedHeaders` list.
pub fn canonical_request(request: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), canonical_value(value)))
        .collect();
    headers.sort();
    let signed: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
    let signed = signed.join(";");
    let mut canonical = String::with_capacity(256);
    canonical.push_str(request.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(request.path));
    canonical.push('\n');
    canonical.push_str(&canonical_query(request.query));
    canonical.push('\n');
    for (name, value) in &headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed);
    canonical.push('\n');
    canonical.push_str(&sha256_hex(request.payload));
    (canonical, signed)
}

/// `AWS4-HMAC-SHA256`, the timestamp, the scope and the canonical request's hash.
pub fn string_to_sign(amz_date: &str, credential_scope: &str, canonical: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{credential_scope}\n{}",
        sha256_hex(canonical.as_bytes())
    )
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
fn signing_key(secret: &str, date: &str, scope: Scope<'_>) -> hmac::Tag {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(k_date.as_ref(), scope.region.as_bytes());
    let k_service = hmac_sha256(k_region.as_ref(), scope.service.as_bytes());
    hmac_sha256(k_service.as_ref(), b"aws4_request")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Each segment of the sent path URI-encoded (again); `/` separators kept.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let mut out = String::with_capacity(path.len() + 16);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        crate::provider::percent_encode(segment, &mut out);
    }
    out
}

/// Query pairs sorted by name, then value (components are already encoded).
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    pairs.sort_unstable();
    let pairs: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    pairs.join("&")
}

/// Header value trimmed, inner runs of spaces collapsed to one.
fn canonical_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `YYYYMMDDTHHMMSSZ` in UTC, the `x-amz-date` format.
pub fn amz_date(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn suite_credentials() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    const SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
    };
    const DATE: &str = "20150830T123600Z";
    const BASE: [(&str, &str); 2] = [("Host", "example.amazonaws.com"), ("X-Amz-Date", DATE)];

    fn suite_authorization(signed: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={signature}"
        )
    }

    fn sign(method: &str, query: &str, headers: &[(&str, &str)], payload: &[u8]) -> String {
        let request = Request {
            method,
            path: "/",
            query,
            headers,
            payload,
        };
        authorization(&suite_credentials(), SCOPE, DATE, &request)
    }

    #[test]
    fn get_vanilla() {
        assert_eq!(
            sign("GET", "", &BASE, b""),
            suite_authorization(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn post_vanilla_and_its_string_to_sign() {
        assert_eq!(
            sign("POST", "", &BASE, b""),
            suite_authorization(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
        let request = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &BASE,
            payload: b"",
        };
        let (canonical, _) = canonical_request(&request);
        assert_eq!(
            canonical,
            "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            string_to_sign(DATE, "20150830/us-east-1/service/aws4_request", &canonical),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87"
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        assert_eq!(
            sign("GET", "Param2=value2&Param1=value1", &BASE, b""),
            suite_authorization(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    #[test]
    fn post_x_www_form_urlencoded() {
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            BASE[0],
            BASE[1],
        ];
        assert_eq!(
            sign("POST", "", &headers, b"Param1=value1"),
            suite_authorization(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    #[test]
    fn sent_path_is_encoded_again() {
        assert_eq!(
            canonical_uri("/model/anthropic.claude-v2%3A1/converse"),
            "/model/anthropic.claude-v2%253A1/converse"
        );
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        assert_eq!(canonical_value("  a   b  c "), "a b c");
    }

    #[test]
    fn amz_date_formats_utc() {
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(at), DATE);
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(amz_date(leap), "20000229T000000Z");
    }
}
