//! Request traces: which spans a request makes, and their trip to an OTLP
//! collector without ever blocking a shard.
//!
//! A shard builds a request's spans when it is answered and pushes them onto a
//! bounded lock-free queue ([`queue`]); a full queue drops the span and counts it.
//! The exporter thread ([`exporter`]) drains the queue in batches and POSTs them
//! as OTLP/HTTP protobuf ([`otlp`]). Nothing runs unless `telemetry:` is set.

pub mod context;
pub mod exporter;
pub mod otlp;
pub mod queue;

pub use context::TraceContext;

/// A key/value attribute of a span.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// One finished span, as the shard hands it to the exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zeros for a root the client did not parent.
    pub parent_span_id: [u8; 8],
    pub name: String,
    /// Server for the request, client for an attempt.
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// An error status (the client got one, or the attempt failed).
    pub error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Server,
    Client,
}
