//! What the gateway has learned about one target model's prefill: whether it
//! continues a trailing assistant message. Shared by every shard (one atomic), set
//! by whichever continuation found out, and carried across reloads by label.

use std::sync::atomic::{AtomicU8, Ordering};

/// A target model's prefill, as far as the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefillKnown {
    /// Never tried (or only tried without a verdict).
    Unknown,
    /// A prefill continuation of it was verified (aligned with the partial).
    Capable,
    /// It refused a prefill (a 400 saying so) or answered one with a restart.
    Unsupported,
}

impl PrefillKnown {
    pub fn as_str(self) -> &'static str {
        match self {
            PrefillKnown::Unknown => "unknown",
            PrefillKnown::Capable => "capable",
            PrefillKnown::Unsupported => "unsupported",
        }
    }
}

/// The shared cell.
#[derive(Debug, Default)]
pub struct PrefillMemory(AtomicU8);

impl PrefillMemory {
    pub fn get(&self) -> PrefillKnown {
        match self.0.load(Ordering::Acquire) {
            1 => PrefillKnown::Capable,
            2 => PrefillKnown::Unsupported,
            _ => PrefillKnown::Unknown,
        }
    }

    pub fn set(&self, known: PrefillKnown) {
        let code = match known {
            PrefillKnown::Unknown => 0,
            PrefillKnown::Capable => 1,
            PrefillKnown::Unsupported => 2,
        };
        self.0.store(code, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_verdict() {
        let m = PrefillMemory::default();
        assert_eq!(m.get(), PrefillKnown::Unknown);
        for known in [
            PrefillKnown::Capable,
            PrefillKnown::Unsupported,
            PrefillKnown::Unknown,
        ] {
            m.set(known);
            assert_eq!(m.get(), known);
        }
    }
}
