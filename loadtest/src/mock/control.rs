//! The `/_mock/` control routes: read or switch the fault or the continuation mode,
//! read the counters and what the mock received.

use serde::Serialize;

use super::openai;
use super::request::Route;
use super::state::{Shared, RING_BODY};
use super::wire;
use super::{Continuation, Fault, RecordedRequest};

/// The JSON form of a recorded request (`GET /_mock/last_request`).
#[derive(Serialize)]
struct Shown<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [(String, String)],
    /// Lossy UTF-8, at most [`RING_BODY`] bytes of it.
    body: std::borrow::Cow<'a, str>,
    body_len: usize,
}

impl<'a> Shown<'a> {
    fn of(req: &'a RecordedRequest) -> Shown<'a> {
        let cut = &req.body[..req.body.len().min(RING_BODY)];
        Shown {
            method: &req.method,
            path: &req.path,
            headers: &req.headers,
            body: String::from_utf8_lossy(cut),
            body_len: req.body_len,
        }
    }
}

/// Appends `value` as JSON (these shapes always serialize).
fn push_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.clear();
        openai::write_error(out, "could not serialize", "server_error");
    }
}

/// Builds a control answer in `out`; returns its status and the fault to apply
/// once it is sent.
pub(super) fn control_reply(
    shared: &Shared,
    route: Route,
    body: &[u8],
    out: &mut Vec<u8>,
) -> (u16, Option<Fault>) {
    out.clear();
    match route {
        Route::Stats => {
            let stats = shared.stats();
            out.extend_from_slice(b"{\"connections\":");
            wire::push_u64(out, stats.connections);
            out.extend_from_slice(b",\"requests\":");
            wire::push_u64(out, stats.requests);
            out.extend_from_slice(b",\"streams\":");
            wire::push_u64(out, stats.streams);
            out.extend_from_slice(b",\"faults_injected\":");
            wire::push_u64(out, stats.faults_injected);
            out.push(b'}');
            (200, None)
        }
        Route::LastRequest => match shared.last_request() {
            Some(req) => {
                push_json(out, &Shown::of(&req));
                (200, None)
            }
            None => {
                openai::write_error(out, "no provider request yet", "invalid_request_error");
                (404, None)
            }
        },
        Route::Requests => {
            let all = shared.recent_requests();
            let shown: Vec<Shown<'_>> = all.iter().map(Shown::of).collect();
            push_json(out, &shown);
            (200, None)
        }
        Route::GetFault => {
            out.extend_from_slice(shared.fault().1.to_json().as_bytes());
            (200, None)
        }
        Route::GetContinuation => {
            out.extend_from_slice(shared.continuation().to_json().as_bytes());
            (200, None)
        }
        Route::SetContinuation => match Continuation::from_json(body) {
            Ok(mode) => {
                shared.set_continuation(mode);
                out.extend_from_slice(b"{\"ok\":true,\"continuation\":");
                out.extend_from_slice(mode.to_json().as_bytes());
                out.push(b'}');
                (200, None)
            }
            Err(e) => {
                let message = format!("invalid continuation JSON: {e}");
                openai::write_error(out, &message, "invalid_request_error");
                (400, None)
            }
        },
        Route::SetFault => match Fault::from_json(body) {
            Ok(fault) => {
                out.extend_from_slice(b"{\"ok\":true,\"fault\":");
                out.extend_from_slice(fault.to_json().as_bytes());
                out.push(b'}');
                (200, Some(fault))
            }
            Err(e) => {
                openai::write_error(out, &e.to_string(), "invalid_request_error");
                (400, None)
            }
        },
        _ => {
            openai::write_error(out, "unknown path", "invalid_request_error");
            (404, None)
        }
    }
}
