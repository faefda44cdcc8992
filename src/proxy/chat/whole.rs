//! Reading a whole provider answer into memory, within a byte limit, and undoing
//! any content coding it came with.
//!
//! The limit is a hard bound on memory, not a check after the fact: a declared
//! `content-length` over it fails before a byte is read, a known length is
//! allocated exactly once, and a chunked or close-delimited body grows a buffer
//! whose capacity never passes the limit (plus the one read chunk in flight).

use std::time::{Duration, Instant};

use crate::bufio::reserve_capped;
use crate::http::encoding::{self, Coding, DecodeError};
use crate::http::response::BodyFraming;
use crate::upstream::{BodyError, Response};

/// Why a whole answer could not be had.
#[derive(Debug, thiserror::Error)]
pub(super) enum WholeError {
    #[error("provider answer is larger than limits.max_response_bytes ({limit} bytes)")]
    TooLarge { limit: usize },
    #[error("provider answer decoded past limits.max_response_bytes ({limit} bytes)")]
    DecodedTooLarge { limit: usize },
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Decode(DecodeError),
}

impl From<DecodeError> for WholeError {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::TooLarge { limit } => WholeError::DecodedTooLarge { limit },
            other => WholeError::Decode(other),
        }
    }
}

/// Reads the rest of `response`'s body, at most `limit` bytes, each read waiting at
/// most `stall` and none past `deadline`, then decodes it (`coding`, output also
/// capped at `limit`).
pub(super) async fn read(
    response: &mut Response,
    coding: Coding,
    limit: usize,
    stall: Duration,
    deadline: Instant,
) -> Result<Vec<u8>, WholeError> {
    let body = match response.head.framing {
        BodyFraming::ContentLength(n) if n > limit as u64 => {
            return Err(WholeError::TooLarge { limit })
        }
        // The framing never yields more than the declared length: one buffer
        // with room for it (the shard's recycled one when it has one), filled
        // in place.
        BodyFraming::ContentLength(n) => {
            let mut body = crate::bufpool::take(n as usize);
            while response
                .read_chunk(&mut body, read_deadline(stall, deadline))
                .await?
            {}
            body
        }
        _ => read_unsized(response, limit, stall, deadline).await?,
    };
    Ok(encoding::decode(coding, body, limit)?)
}

/// A body of unknown length: each read lands in a small scratch buffer first, so
/// the answer's own buffer grows only within the limit.
async fn read_unsized(
    response: &mut Response,
    limit: usize,
    stall: Duration,
    deadline: Instant,
) -> Result<Vec<u8>, WholeError> {
    let mut body = Vec::new();
    let mut scratch = Vec::new();
    // Each pass appends at least one byte (or ends) and the total is capped.
    loop {
        scratch.clear();
        let more = response
            .read_chunk(&mut scratch, read_deadline(stall, deadline))
            .await?;
        if body.len() + scratch.len() > limit {
            return Err(WholeError::TooLarge { limit });
        }
        reserve_capped(&mut body, scratch.len(), limit);
        body.extend_from_slice(&scratch);
        if !more {
            return Ok(body);
        }
    }
}

fn read_deadline(stall: Duration, deadline: Instant) -> Instant {
    deadline.min(Instant::now() + stall)
}
