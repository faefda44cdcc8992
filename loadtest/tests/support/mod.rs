//! Helpers shared by the mock provider's socket tests (`mock.rs`, `mock_dialects.rs`).
#![allow(dead_code)]

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Duration;

use loadtest::mock::{MockConfig, MockHandle};

/// Connect and read timeout of the tests' blocking clients.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A mock provider named `name` streaming `chunks` words, on an ephemeral port.
pub fn start(name: &str, chunks: usize) -> MockHandle {
    let config = MockConfig {
        name: name.into(),
        stream_chunks: chunks,
        ..MockConfig::default()
    };
    loadtest::mock::start(config).expect("mock starts")
}

/// The value of header `name` (as stored, lower-case) in `headers`.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Appends what one read of `stream` gives to `buf`; end of stream is an error.
pub fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk)? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        n => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}
