//! Prices resolved for the request path: one lookup by (provider index, model)
//! turns a response's token usage into micro-dollars.
//!
//! Built once per config generation from `Config::prices`; immutable except for
//! the lock-free "already warned" set that lets the caller log an unpriced model
//! once instead of on every request.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{Config, Rate};

/// Tokens one attempt used, as the provider reported (or as estimated where a
/// stream was cut). `input` counts every prompt token, cached ones included
/// (OpenAI's `prompt_tokens`); `cached_input` is the part of it read from the
/// provider's prompt cache (`prompt_tokens_details.cached_tokens`; Anthropic's
/// `cache_read_input_tokens`, which the caller adds to `input`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
}

/// A cost in micro-dollars (USD × 10⁶), rounded up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost {
    pub micros: u64,
}

/// Most distinct unpriced (provider, model) pairs remembered as warned; past it
/// every further one reads as already warned (the log is not flooded).
const WARNED_SLOTS: usize = 256;

/// Every provider's prices, by provider index.
#[derive(Debug)]
pub struct Prices {
    providers: Vec<ProviderPrices>,
    /// Hashes of the (provider, model) pairs already reported unpriced; 0 = free.
    warned: Box<[AtomicU64]>,
}

#[derive(Debug, Default)]
struct ProviderPrices {
    models: HashMap<String, Rate>,
    /// `provider/*`: every model without its own price.
    any: Option<Rate>,
}

impl Prices {
    /// The table of `config.prices`.
    pub fn build(config: &Config) -> Prices {
        let mut providers: Vec<ProviderPrices> = (0..config.providers.len())
            .map(|_| ProviderPrices::default())
            .collect();
        for price in &config.prices {
            let Some(entry) = providers.get_mut(price.provider) else {
                continue;
            };
            if price.model == "*" {
                entry.any = Some(price.rate);
            } else {
                entry.models.insert(price.model.clone(), price.rate);
            }
        }
        Prices {
            providers,
            warned: (0..WARNED_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The rate of `model` on provider `provider`: its own, else the provider's `*`.
    /// Whether no price at all is configured (nothing to warn about then: spend
    /// is simply not priced).
    pub fn is_empty(&self) -> bool {
        self.providers
            .iter()
            .all(|p| p.models.is_empty() && p.any.is_none())
    }

    pub fn rate(&self, provider: usize, model: &str) -> Option<Rate> {
        let entry = self.providers.get(provider)?;
        entry.models.get(model).copied().or(entry.any)
    }

    /// What `usage` costs on (provider, model); `None` when it has no price.
    pub fn cost(&self, provider: usize, model: &str, usage: &TokenUsage) -> Option<Cost> {
        self.rate(provider, model).map(|rate| cost(&rate, usage))
    }

    /// True the first time it is asked about (provider, model), so the caller
    /// logs "no price" once; lock-free, shared by every shard.
    pub fn unpriced_once(&self, provider: usize, model: &str) -> bool {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (provider, model).hash(&mut hasher);
        let hash = hasher.finish().max(1);
        let start = (hash as usize) % self.warned.len();
        for probe in 0..self.warned.len() {
            let slot = &self.warned[(start + probe) % self.warned.len()];
            match slot.compare_exchange(0, hash, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(seen) if seen == hash => return false,
                Err(_) => continue,
            }
        }
        false
    }
}

/// `usage` × `rate`, summed in pico-dollars and rounded up to the micro-dollar
/// (a provider bills fractions; a budget must never under-count them).
pub fn cost(rate: &Rate, usage: &TokenUsage) -> Cost {
    let cached = usage.cached_input.min(usage.input);
    let fresh = usage.input - cached;
    let part = |tokens: u64, rate: u64| u128::from(tokens) * u128::from(rate);
    let picos = part(fresh, rate.input)
        .saturating_add(part(cached, rate.cached_input))
        .saturating_add(part(usage.output, rate.output));
    let micros = picos.div_ceil(1_000_000);
    Cost {
        micros: u64::try_from(micros).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prices: &str) -> Config {
        let yaml = format!(
            "providers:\n  a: {{kind: openai-compatible, base_url: \"http://127.0.0.1:1\"}}\n  b: {{kind: openai-compatible, base_url: \"http://127.0.0.1:2\"}}\nroutes:\n  - {{name: r, targets: [{{provider: a, model: m}}]}}\nprices:\n{prices}"
        );
        match crate::config::load_str(&yaml, "t.yaml", &|_| None) {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        }
    }

    fn usage(input: u64, output: u64, cached_input: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            cached_input,
        }
    }

    #[test]
    fn resolves_model_then_wildcard_then_none() {
        let prices = Prices::build(&config(
            "  a/gpt-4o: {input: 2.5, output: 10}\n  a/*: {input: 1, output: 2}\n  b/x: {input: 3, output: 4, cached_input: 0.5}\n",
        ));
        let rate = |p, m| {
            prices
                .rate(p, m)
                .map(|r| (r.input, r.output, r.cached_input))
        };
        let table = [
            (0, "gpt-4o", Some((2_500_000, 10_000_000, 2_500_000))),
            (0, "other", Some((1_000_000, 2_000_000, 1_000_000))),
            (1, "x", Some((3_000_000, 4_000_000, 500_000))),
            (1, "y", None),
            (7, "x", None),
        ];
        for (provider, model, expected) in table {
            assert_eq!(rate(provider, model), expected, "{provider}/{model}");
        }
    }

    #[test]
    fn costs_round_up_to_the_micro_dollar_and_price_cached_input() {
        let rate = Rate {
            input: 2_500_000,
            output: 10_000_000,
            cached_input: 1_250_000,
        };
        // (usage, micro-dollars): $2.50/M input is 2.5 µ$ a token.
        let table = [
            (usage(0, 0, 0), 0),
            (usage(1, 0, 0), 3),
            (usage(2, 0, 0), 5),
            (usage(1_000_000, 0, 0), 2_500_000),
            (usage(0, 1_000_000, 0), 10_000_000),
            (usage(1_000_000, 1_000_000, 1_000_000), 11_250_000),
            (usage(1000, 100, 400), 600 * 5 / 2 + 400 * 5 / 4 + 1000),
            (usage(1, 0, 1), 2),
            // More cached than input (a confused provider): capped at input.
            (usage(10, 0, 50), 13),
        ];
        for (u, micros) in table {
            assert_eq!(cost(&rate, &u).micros, micros, "{u:?}");
        }
        let tiny = Rate {
            input: 75_000,
            output: 300_000,
            cached_input: 0,
        };
        // 0.075 µ$ a token: one token still costs a whole (rounded up) micro-dollar,
        // but the parts are summed before rounding.
        assert_eq!(cost(&tiny, &usage(1, 0, 0)).micros, 1);
        assert_eq!(cost(&tiny, &usage(40, 0, 0)).micros, 3);
        assert_eq!(cost(&tiny, &usage(10, 10, 10)).micros, 3);
        let huge = Rate {
            input: u64::MAX,
            output: u64::MAX,
            cached_input: u64::MAX,
        };
        assert_eq!(cost(&huge, &usage(u64::MAX, u64::MAX, 0)).micros, u64::MAX);
    }

    #[test]
    fn cost_is_none_without_a_price() {
        let prices = Prices::build(&config("  a/m: {input: 1, output: 1}\n"));
        assert_eq!(
            prices.cost(0, "m", &usage(1_000_000, 0, 0)),
            Some(Cost { micros: 1_000_000 })
        );
        assert_eq!(prices.cost(0, "n", &usage(1, 1, 0)), None);
        assert_eq!(prices.cost(1, "m", &usage(1, 1, 0)), None);
    }

    #[test]
    fn warns_once_per_provider_and_model_across_threads() {
        let prices = Prices::build(&config("  a/m: {input: 1, output: 1}\n"));
        let firsts = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for model in ["x", "y", "z"] {
                        for provider in [0, 1] {
                            if prices.unpriced_once(provider, model) {
                                firsts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(firsts.load(Ordering::Relaxed), 6);
        assert!(!prices.unpriced_once(0, "x"));
        // Past the remembered slots nothing more is reported (bounded memory).
        let fresh = (0..WARNED_SLOTS * 2)
            .filter(|i| prices.unpriced_once(1, &format!("model-{i}")))
            .count();
        assert_eq!(fresh, WARNED_SLOTS - 6);
    }
}
