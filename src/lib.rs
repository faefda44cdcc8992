//! switchyard: a thread-per-core LLM gateway that keeps applications answering when
//! model providers fail.

pub mod admin;
pub mod bufio;
pub mod bufpool;
pub mod cluster;
pub mod config;
pub mod control;
pub mod demo;
pub mod downstream;
pub mod gateway;
pub mod health;
pub mod http;
pub mod launch;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod outcome;
pub mod peek;
pub mod provider;
pub mod proxy;
pub mod request_id;
pub mod route;
pub mod server;
pub mod shard;
pub mod systemd;
pub mod telemetry;
pub mod upstream;
pub mod wire;
