//! The loadtest crate: mock LLM providers with fault injection, an open-loop load
//! generator, and the outage scenario suite for switchyard.
pub mod client;
pub mod loadgen;
pub mod mock;
pub mod suite;
pub mod taskclock;
