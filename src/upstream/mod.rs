//! Talking to providers: per-shard keep-alive pools, plain and TLS sockets, and the
//! HTTP/1.1 exchange with stale-socket recovery.

pub mod client;
pub mod pool;
pub mod stream;
pub mod tls;

pub use client::{exchange, BodyError, ExchangeDeadlines, ExchangeError, Response};
pub use pool::{ConnectError, Endpoint, Pool, PooledConn, TlsTarget};
