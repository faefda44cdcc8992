//! The AWS event-stream binary framing (`application/vnd.amazon.eventstream`) that
//! Bedrock's streaming APIs use. One message is:
//!
//! ```text
//! total length u32 BE | headers length u32 BE | prelude CRC32 u32 BE (of the 8 bytes before)
//! headers: name length u8, name, value type u8 (7 = string), value length u16 BE, value
//! payload
//! message CRC32 u32 BE (of everything before it)
//! ```
//!
//! The mock writes only string headers (`:event-type`, `:content-type`,
//! `:message-type`, `:exception-type`).

/// Header value type 7: a UTF-8 string with a u16 length.
const STRING: u8 = 7;
/// Prelude (12 bytes) plus the trailing message CRC (4 bytes).
const OVERHEAD: usize = 16;

/// Appends one event-stream message with string `headers` and the payload that
/// `payload` appends. Header names longer than 255 bytes or values longer than
/// 65535 bytes are truncated, which never happens with the mock's own headers.
pub(crate) fn write_message(
    out: &mut Vec<u8>,
    headers: &[(&str, &str)],
    payload: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.reserve(OVERHEAD + 128);
    out.extend_from_slice(&[0; 12]);
    for (name, value) in headers {
        let name = &name.as_bytes()[..name.len().min(usize::from(u8::MAX))];
        let value = &value.as_bytes()[..value.len().min(usize::from(u16::MAX))];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.push(STRING);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
    }
    let headers_len = out.len() - start - 12;
    payload(out);
    let total = out.len() - start + 4;
    let total = u32::try_from(total).unwrap_or(u32::MAX);
    let headers_len = u32::try_from(headers_len).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&total.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&headers_len.to_be_bytes());
    let prelude_crc = crc32fast::hash(&out[start..start + 8]);
    out[start + 8..start + 12].copy_from_slice(&prelude_crc.to_be_bytes());
    let message_crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&message_crc.to_be_bytes());
}

/// Appends an `event` message: `:event-type` `event_type`, JSON payload.
pub(crate) fn write_event(out: &mut Vec<u8>, event_type: &str, payload: impl FnOnce(&mut Vec<u8>)) {
    write_message(
        out,
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    );
}

/// Appends an `exception` message: `:exception-type` `kind`, JSON payload.
pub(crate) fn write_exception(out: &mut Vec<u8>, kind: &str, payload: impl FnOnce(&mut Vec<u8>)) {
    write_message(
        out,
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload,
    );
}

/// The smallest possible message: no headers, no payload.
#[cfg(test)]
pub(crate) const MIN_MESSAGE: usize = OVERHEAD;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_lengths_and_crcs() {
        let mut out = Vec::new();
        write_message(&mut out, &[], |_| {});
        assert_eq!(out.len(), MIN_MESSAGE);
        assert_eq!(&out[..4], &16u32.to_be_bytes());
        out.clear();
        write_event(&mut out, "messageStop", |o| {
            o.extend_from_slice(br#"{"stopReason":"end_turn"}"#)
        });
        let total = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        let headers = u32::from_be_bytes([out[4], out[5], out[6], out[7]]) as usize;
        assert_eq!(total, out.len());
        assert_eq!(&out[8..12], &crc32fast::hash(&out[..8]).to_be_bytes());
        assert_eq!(
            &out[total - 4..],
            &crc32fast::hash(&out[..total - 4]).to_be_bytes()
        );
        assert_eq!(&out[12..13], &[11]);
        assert_eq!(&out[13..24], b":event-type");
        assert_eq!(
            &out[12 + headers..total - 4],
            br#"{"stopReason":"end_turn"}"#
        );
    }
}
