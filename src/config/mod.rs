//! Configuration: the YAML contract, `${ENV}` secrets, and validation that names
//! the file and line of every mistake.

mod check;
mod duration;
mod env;
mod error;
pub mod keys;
mod lint;
mod load;
mod locate;
mod prices;
mod raw;
mod redact;
mod routes;
mod types;

#[cfg(test)]
mod tests;

pub use duration::{format_duration, parse_duration, DurationError};
pub use error::{ConfigError, ConfigErrors};
pub use lint::{is_placeholder, lint_file, lint_str};
pub use load::{load_file, load_str};
pub use redact::redacted_json;
pub use routes::default_retry;
pub use types::*;
