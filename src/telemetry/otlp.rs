//! OTLP/HTTP protobuf encoding of an `ExportTraceServiceRequest`, written by
//! hand after opentelemetry-proto's trace.proto, common.proto and resource.proto
//! (field numbers as there): a few dozen lines instead of a code generator.

use super::{AttrValue, SpanKind, SpanRecord};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// The request body for `POST /v1/traces`: one resource (the gateway) with one
/// scope holding `spans`.
pub fn encode_request(resource: &[(&'static str, AttrValue)], spans: &[SpanRecord]) -> Vec<u8> {
    let mut resource_msg = Vec::new();
    for attr in resource {
        message(&mut resource_msg, 1, &key_value(attr.0, &attr.1));
    }
    let mut scope = Vec::new();
    bytes_field(&mut scope, 1, b"switchyard");
    bytes_field(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
    let mut scope_spans = Vec::new();
    message(&mut scope_spans, 1, &scope);
    for span in spans {
        message(&mut scope_spans, 2, &encode_span(span));
    }
    let mut resource_spans = Vec::new();
    message(&mut resource_spans, 1, &resource_msg);
    message(&mut resource_spans, 2, &scope_spans);
    let mut request = Vec::with_capacity(resource_spans.len() + 8);
    message(&mut request, 1, &resource_spans);
    request
}

fn encode_span(span: &SpanRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    bytes_field(&mut out, 1, &span.trace_id);
    bytes_field(&mut out, 2, &span.span_id);
    if span.parent_span_id != [0; 8] {
        bytes_field(&mut out, 4, &span.parent_span_id);
    }
    bytes_field(&mut out, 5, span.name.as_bytes());
    let kind = match span.kind {
        SpanKind::Server => 2,
        SpanKind::Client => 3,
    };
    tag(&mut out, 6, VARINT);
    varint(&mut out, kind);
    tag(&mut out, 7, FIXED64);
    out.extend_from_slice(&span.start_unix_nanos.to_le_bytes());
    tag(&mut out, 8, FIXED64);
    out.extend_from_slice(&span.end_unix_nanos.to_le_bytes());
    for (key, value) in &span.attributes {
        message(&mut out, 9, &key_value(key, value));
    }
    // Status { code = 3 }: 1 ok, 2 error.
    let mut status = Vec::new();
    tag(&mut status, 3, VARINT);
    varint(&mut status, if span.error { 2 } else { 1 });
    message(&mut out, 15, &status);
    out
}

fn key_value(key: &str, value: &AttrValue) -> Vec<u8> {
    let mut any = Vec::new();
    match value {
        AttrValue::Str(s) => bytes_field(&mut any, 1, s.as_bytes()),
        AttrValue::Bool(b) => {
            tag(&mut any, 2, VARINT);
            varint(&mut any, u64::from(*b));
        }
        AttrValue::Int(i) => {
            tag(&mut any, 3, VARINT);
            varint(&mut any, *i as u64);
        }
        AttrValue::Float(f) => {
            tag(&mut any, 4, FIXED64);
            any.extend_from_slice(&f.to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(key.len() + any.len() + 4);
    bytes_field(&mut out, 1, key.as_bytes());
    message(&mut out, 2, &any);
    out
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field << 3 | u32::from(wire)));
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(out, field, LEN);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn message(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    bytes_field(out, field, body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_protobuf_writes_them() {
        let table: [(u64, &[u8]); 4] = [
            (0, &[0]),
            (1, &[1]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (value, want) in table {
            let mut out = Vec::new();
            varint(&mut out, value);
            assert_eq!(out, want, "{value}");
        }
    }
}
