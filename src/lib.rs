//! switchyard: a thread-per-core LLM gateway that keeps applications answering when
//! model providers fail.

pub mod config;
pub mod outcome;
