//! Configuration: the YAML contract, `${ENV}` secrets, and validation that names
//! the file and line of every mistake.

mod types;

pub use types::*;
