//! `prices:` (and `prices_file:`): what each provider's models cost, checked
//! against the configured providers and turned into integer rates.

use super::error::Report;
use super::locate::YamlPath;
use super::raw::RawPrice;
use super::types::{Price, Provider, Rate};

/// The most a price may say (USD per million tokens): far above any real model,
/// low enough that no sum of costs can overflow.
const MAX_USD_PER_MILLION: f64 = 1_000_000.0;

/// Checks `raw` entries (`provider/model` → rates) and appends them to `out`;
/// an entry already in `out` (from the config file) is refused.
pub(super) fn prices(
    raw: Vec<(String, RawPrice)>,
    providers: &[Provider],
    path: &YamlPath,
    out: &mut Vec<Price>,
    r: &mut Report<'_>,
) {
    for (name, entry) in raw {
        let here = path.key(&name);
        let Some(price) = price(&name, &entry, providers, &here, r) else {
            continue;
        };
        if out
            .iter()
            .any(|p| p.provider == price.provider && p.model == price.model)
        {
            r.error(&here, format!("`{name}` is priced twice"));
            continue;
        }
        out.push(price);
    }
}

fn price(
    name: &str,
    entry: &RawPrice,
    providers: &[Provider],
    path: &YamlPath,
    r: &mut Report<'_>,
) -> Option<Price> {
    let Some((provider_name, model)) = name
        .split_once('/')
        .filter(|(p, m)| !p.is_empty() && !m.is_empty())
    else {
        r.error(
            path,
            format!(
                "`{name}` is not `provider/model` (use `provider/*` for every model of a provider)"
            ),
        );
        return None;
    };
    let Some(provider) = providers.iter().position(|p| p.name == provider_name) else {
        let known: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        r.error(
            path,
            format!(
                "unknown provider `{provider_name}`; configured: {}",
                known.join(", ")
            ),
        );
        return None;
    };
    let input = rate(entry.input, &path.key("input"), r)?;
    let output = rate(entry.output, &path.key("output"), r)?;
    let cached_input = match entry.cached_input {
        None => input,
        given => rate(given, &path.key("cached_input"), r)?,
    };
    Some(Price {
        provider,
        model: model.to_string(),
        rate: Rate {
            input,
            output,
            cached_input,
        },
    })
}

/// USD per million tokens → pico-dollars per token (the same number × 10⁶).
fn rate(usd: Option<f64>, path: &YamlPath, r: &mut Report<'_>) -> Option<u64> {
    let Some(usd) = usd else {
        r.error(path, "is required (USD per million tokens; 0 for free)");
        return None;
    };
    if !usd.is_finite() || !(0.0..=MAX_USD_PER_MILLION).contains(&usd) {
        r.error(
            path,
            format!("must be from 0 to {MAX_USD_PER_MILLION} (USD per million tokens), got {usd}"),
        );
        return None;
    }
    Some((usd * 1e6).round() as u64)
}
