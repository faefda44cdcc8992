//! W3C trace context: continuing a client's `traceparent`, or starting a trace,
//! and the sampling decision taken once at the root.

/// The trace a request belongs to and the span it is (or is parented by).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; an all-zero id or another
    /// version's shape is `None` (the spec says: start a new trace).
    pub fn parse(header: &[u8]) -> Option<TraceContext> {
        let text = std::str::from_utf8(header).ok()?.trim();
        let mut parts = text.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = hex(trace)?;
        let span_id: [u8; 8] = hex(span)?;
        let [flags]: [u8; 1] = hex(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The header value naming this span as the parent.
    pub fn header(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.span_id);
        out.push_str(if self.sampled { "-01" } else { "-00" });
        out
    }
}

/// A request's root span: the client's trace continued (its sampled flag
/// respected), or a new trace sampled at `ratio`. Returns (root, parent span id).
pub fn root(client: Option<TraceContext>, ratio: f64, draw: f64) -> (TraceContext, [u8; 8]) {
    let span_id = new_span_id();
    match client {
        Some(parent) => (
            TraceContext {
                trace_id: parent.trace_id,
                span_id,
                sampled: parent.sampled,
            },
            parent.span_id,
        ),
        None => (
            TraceContext {
                trace_id: new_trace_id(),
                span_id,
                sampled: draw < ratio,
            },
            [0; 8],
        ),
    }
}

/// A non-zero random span id.
pub fn new_span_id() -> [u8; 8] {
    fastrand::u64(1..).to_be_bytes()
}

fn new_trace_id() -> [u8; 16] {
    fastrand::u128(1..).to_be_bytes()
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    // Upper-case hex is invalid in a traceparent.
    text.bytes().all(|b| !b.is_ascii_uppercase()).then_some(out)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = std::fmt::Write::write_fmt(out, format_args!("{b:02x}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_traceparent() {
        let ctx = TraceContext::parse(CLIENT.as_bytes()).unwrap();
        assert!(ctx.sampled);
        assert_eq!(ctx.header(), CLIENT);
        let table: [(&str, bool); 6] = [
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                true,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                false,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
                false,
            ),
        ];
        for (text, ok) in table {
            assert_eq!(TraceContext::parse(text.as_bytes()).is_some(), ok, "{text}");
        }
    }

    #[test]
    fn root_continues_the_client_or_samples_at_the_ratio() {
        let client = TraceContext::parse(CLIENT.as_bytes()).unwrap();
        let (root_ctx, parent) = root(Some(client), 0.0, 0.5);
        assert_eq!(root_ctx.trace_id, client.trace_id);
        assert_eq!(parent, client.span_id);
        assert!(root_ctx.sampled, "the client's flag wins over the ratio");
        let unsampled = TraceContext {
            sampled: false,
            ..client
        };
        assert!(!root(Some(unsampled), 1.0, 0.0).0.sampled);
        assert!(root(None, 1.0, 0.999).0.sampled);
        assert!(!root(None, 0.0, 0.0).0.sampled);
        assert_eq!(root(None, 1.0, 0.0).1, [0; 8]);
    }
}
