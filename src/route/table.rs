//! The routing table: one immutable snapshot of the config, prepared for shards.
//!
//! The control plane builds a `Table` (resolving provider hosts, preparing provider
//! headers, numbering health slots) and hands every shard the same `Arc<Table>`;
//! shards only read it. A reload builds a new one with the next generation number.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::config::{
    ClientKey, Config, FallbackPolicy, HedgePolicy, Prefill, Quota, RetryPolicy, Route, Strategy,
    StreamPolicy, Timeouts,
};
use crate::health::{PrefillMemory, SharedBreaker};
use crate::limits::budget::SpendBook;
use crate::limits::gate::{Limits, Names};
use crate::limits::prices::Prices;
use crate::limits::spend::Ledger;
use crate::provider::{self, PreparedProvider};
use crate::proxy::headers::Forwarding;

/// A provider ready for the request path.
#[derive(Debug, Clone)]
pub struct ProviderEntry {
    pub prepared: PreparedProvider,
    pub addrs: Arc<[SocketAddr]>,
    /// SNI host for https providers.
    pub tls_host: Option<String>,
    /// Its credentials, blanked out of every body relayed from it.
    pub secrets: provider::Secrets,
}

/// One health slot: a (provider, model) pair, shared by every route that uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSlot {
    pub provider: usize,
    pub model: String,
    /// `provider/model`, used in headers, metrics and logs (shared: an answer's
    /// `x-switchyard-target` takes it without a copy).
    pub label: Arc<str>,
}

/// One target of one route, resolved at load: where it sends, which health slot
/// judges it, and every policy that applies to it. Nothing on the request path
/// merges route and target settings again.
#[derive(Debug, Clone)]
pub struct TargetPolicy {
    /// The health slot (provider, model) that judges this target.
    pub slot: usize,
    /// Index into `Table::providers` (and the shard's pools).
    pub provider: usize,
    /// The target's own retry policy, or the route's; its budget is this
    /// (route, target)'s.
    pub retry: RetryPolicy,
    pub fallback: FallbackPolicy,
    /// The target's own timeouts with absent keys from the route's.
    pub timeouts: Timeouts,
    pub stream: StreamPolicy,
    /// The route index a context-length overflow re-routes to.
    pub reroute: Option<usize>,
    /// Whether a stream continued here is sent as prefill (`auto`: first, unless
    /// the slot's [`Table::prefill`] memory says it does not work).
    pub prefill: Prefill,
    /// Outside the route's best priority tier: serving from it is a fallback even
    /// when better targets were skipped rather than tried.
    pub fallback_tier: bool,
    /// Which client headers this target gets (the kind's defaults and the
    /// route's `forward_headers`).
    pub headers: Forwarding,
}

/// A route's targets, resolved (same order as the config's).
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    pub targets: Vec<TargetPolicy>,
    /// The route's `hedge:`, when it hedges.
    pub hedge: Option<HedgePolicy>,
}

#[derive(Debug)]
pub struct Table {
    pub generation: u64,
    pub config: Arc<Config>,
    pub providers: Vec<ProviderEntry>,
    pub slots: Vec<TargetSlot>,
    /// Each slot's breaker, shared by every shard (and carried across reloads by
    /// label, see [`Table::carry_breakers`]).
    pub breakers: Vec<Arc<SharedBreaker>>,
    /// Each slot's learned prefill, shared by every shard (carried like breakers).
    pub prefill: Vec<Arc<PrefillMemory>>,
    /// Each route's targets with their resolved policies, by route index.
    pub routes: Vec<RoutePolicy>,
    /// Model names clients may ask for, each with the route it comes from.
    pub known_models: Vec<(String, usize)>,
    /// Every key's, provider's and slot's limits, shared by every shard (carried
    /// like breakers).
    pub limits: Arc<Limits>,
    /// Prices and the keys' spend, shared by every shard. The control plane sets
    /// the live one (spend carried by key name and persisted, see
    /// `limits::spend`); a table built alone has a fresh one.
    pub spend: Ledger,
}

/// Resolves a host name to socket addresses; called only off the shards.
pub fn resolve_host(host: &str, port: u16) -> Vec<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .map(|addrs| addrs.collect())
        .unwrap_or_default()
}

impl Table {
    pub fn build(
        config: Arc<Config>,
        generation: u64,
        resolve: &dyn Fn(&str, u16) -> Vec<SocketAddr>,
    ) -> Table {
        let providers: Vec<ProviderEntry> = config
            .providers
            .iter()
            .enumerate()
            .map(|(index, p)| ProviderEntry {
                prepared: provider::prepare(p),
                addrs: resolve(&p.base_url.host, p.base_url.port).into(),
                tls_host: p.base_url.tls.then(|| p.base_url.host.clone()),
                secrets: provider::Secrets::of_provider(p, targets_of(&config, index)),
            })
            .collect();
        let (slots, route_slots) = number_slots(&config);
        let routes = resolve_policies(&config, &route_slots);
        let known_models = known_models(&config.routes);
        let epoch = std::time::Instant::now();
        let breakers = slots
            .iter()
            .map(|_| Arc::new(SharedBreaker::new(epoch)))
            .collect();
        let prefill = slots.iter().map(|_| Arc::default()).collect();
        let limits = Arc::new(Limits::build(&config, &slot_quotas(&config, &slots)));
        let spend = Ledger {
            prices: Arc::new(Prices::build(&config)),
            book: Arc::new(SpendBook::new(&config.keys, std::time::SystemTime::now())),
        };
        Table {
            generation,
            config,
            providers,
            slots,
            breakers,
            prefill,
            routes,
            known_models,
            limits,
            spend,
        }
    }

    /// The first route whose conditions all hold, in config order.
    pub fn match_route<'h>(
        &self,
        model: &str,
        key: Option<&ClientKey>,
        header: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> Option<usize> {
        if key.is_some_and(|k| !k.allows_model(model)) {
            return None;
        }
        self.config.routes.iter().position(|route| {
            let m = &route.matcher;
            let model_ok = m.models.is_empty() || m.models.iter().any(|x| x == "*" || x == model);
            let key_ok = key.map_or(m.keys.is_empty(), |k| {
                k.allows_route(&route.name) && (m.keys.is_empty() || m.keys.contains(&k.name))
            });
            let headers_ok = m
                .headers
                .iter()
                .all(|(name, value)| header(name) == Some(value.as_bytes()));
            model_ok && key_ok && headers_ok
        })
    }

    /// The model names `key` may use: those of routes open to every key or
    /// listing this one, that the key's own `routes` and `models` allow. Routes
    /// restricted to other keys stay invisible.
    pub fn models_for(&self, key: Option<&ClientKey>) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (model, route) in &self.known_models {
            let route = &self.config.routes[*route];
            let keys = &route.matcher.keys;
            let visible = key.map_or(keys.is_empty(), |k| {
                (keys.is_empty() || keys.contains(&k.name))
                    && k.allows_route(&route.name)
                    && (model == "*" || k.allows_model(model))
            });
            if visible && !names.contains(&model.as_str()) {
                names.push(model);
            }
        }
        names
    }

    /// Takes over the breakers (and learned prefill) of `old`'s slots that still
    /// exist (same label), so a reload neither forgets a trip nor hands a dead
    /// target fresh traffic; and the limit counts of keys, providers and slots
    /// that still exist with the same limits, so it refills no spent window.
    pub fn carry_breakers(&mut self, old: &Table) {
        for (index, slot) in self.slots.iter().enumerate() {
            let Some(i) = old.slots.iter().position(|s| s.label == slot.label) else {
                continue;
            };
            self.breakers[index] = old.breakers[i].clone();
            self.prefill[index] = old.prefill[i].clone();
        }
        let (new_names, old_names) = (
            names(&self.config, &self.slots),
            names(&old.config, &old.slots),
        );
        let names = Names {
            keys: (&new_names.0, &old_names.0),
            providers: (&new_names.1, &old_names.1),
            slots: (&new_names.2, &old_names.2),
        };
        match Arc::get_mut(&mut self.limits) {
            // Built by `Table::build` and not shared yet: carried in place.
            Some(limits) => limits.carry(&old.limits, &names),
            None => {
                let mut limits =
                    Limits::build(&self.config, &slot_quotas(&self.config, &self.slots));
                limits.carry(&old.limits, &names);
                self.limits = Arc::new(limits);
            }
        }
        // Same config (a DNS refresh): the same prices and spend. A reload sets
        // its own after this.
        self.spend = old.spend.clone();
    }

    /// Whether the addresses of any provider differ from `other`'s.
    pub fn same_addresses(&self, other: &Table) -> bool {
        self.providers.len() == other.providers.len()
            && self
                .providers
                .iter()
                .zip(&other.providers)
                .all(|(a, b)| a.addrs == b.addrs)
    }
}

/// Every target, in any route, that sends to provider `index`.
fn targets_of(config: &Config, index: usize) -> impl Iterator<Item = &crate::config::Target> {
    config
        .routes
        .iter()
        .flat_map(|r| r.targets.iter())
        .filter(move |t| t.provider == index)
}

fn number_slots(config: &Config) -> (Vec<TargetSlot>, Vec<Vec<usize>>) {
    let mut slots: Vec<TargetSlot> = Vec::new();
    let mut route_slots = Vec::with_capacity(config.routes.len());
    for route in &config.routes {
        let mut indices = Vec::with_capacity(route.targets.len());
        for target in &route.targets {
            let found = slots
                .iter()
                .position(|s| s.provider == target.provider && s.model == target.model);
            let index = found.unwrap_or_else(|| {
                let provider_name = config
                    .providers
                    .get(target.provider)
                    .map_or("?", |p| p.name.as_str());
                slots.push(TargetSlot {
                    provider: target.provider,
                    model: target.model.clone(),
                    label: format!("{provider_name}/{}", target.model).into(),
                });
                slots.len() - 1
            });
            indices.push(index);
        }
        route_slots.push(indices);
    }
    (slots, route_slots)
}

/// The names of keys, providers and slots, by index (what limits carry by).
fn names<'a>(
    config: &'a Config,
    slots: &'a [TargetSlot],
) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    (
        config.keys.iter().map(|k| k.name.as_str()).collect(),
        config.providers.iter().map(|p| p.name.as_str()).collect(),
        slots.iter().map(|s| &*s.label).collect(),
    )
}

/// Each slot's own quota: that of the first target entry (in any route) for the
/// slot that sets one.
fn slot_quotas(config: &Config, slots: &[TargetSlot]) -> Vec<Quota> {
    slots
        .iter()
        .map(|slot| {
            config
                .routes
                .iter()
                .flat_map(|route| &route.targets)
                .filter(|t| t.provider == slot.provider && t.model == slot.model)
                .map(|t| t.quota)
                .find(Quota::is_limited)
                .unwrap_or_default()
        })
        .collect()
}

/// Resolves every (route, target) once: its slot, provider and policies.
fn resolve_policies(config: &Config, route_slots: &[Vec<usize>]) -> Vec<RoutePolicy> {
    config
        .routes
        .iter()
        .zip(route_slots)
        .map(|(route, slots)| {
            let reroute = route
                .fallback
                .on_context_length
                .as_deref()
                .and_then(|name| config.routes.iter().position(|r| r.name == name));
            let best = route.targets.iter().map(|t| t.priority).min().unwrap_or(0);
            let targets = route
                .targets
                .iter()
                .zip(slots)
                .map(|(target, &slot)| TargetPolicy {
                    slot,
                    provider: target.provider,
                    retry: target.retry.clone().unwrap_or_else(|| route.retry.clone()),
                    fallback: route.fallback.clone(),
                    timeouts: target.timeouts,
                    stream: route.stream,
                    reroute,
                    prefill: target.prefill,
                    fallback_tier: route.strategy == Strategy::Priority && target.priority > best,
                    headers: config
                        .providers
                        .get(target.provider)
                        .map(|p| Forwarding::resolve(p.kind, &route.forward_headers))
                        .unwrap_or_default(),
                })
                .collect();
            RoutePolicy {
                targets,
                hedge: route.hedge,
            }
        })
        .collect()
}

fn known_models(routes: &[Route]) -> Vec<(String, usize)> {
    let mut models: Vec<(String, usize)> = Vec::new();
    for (index, route) in routes.iter().enumerate() {
        let concrete: Vec<&String> = route.matcher.models.iter().filter(|m| *m != "*").collect();
        if concrete.is_empty() {
            models.push((route.name.clone(), index));
        }
        models.extend(concrete.into_iter().map(|m| (m.clone(), index)));
    }
    models.dedup_by(|a, b| a.0 == b.0);
    models
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::StateKind;
    use std::net::SocketAddr;
    use std::time::Instant;

    fn table(models: &[&str], generation: u64) -> Table {
        let targets: String = models
            .iter()
            .map(|m| format!("      - {{ provider: p, model: {m} }}\n"))
            .collect();
        let yaml = format!(
            "listen: 127.0.0.1:0\nproviders:\n  p: {{ kind: openai-compatible, base_url: http://127.0.0.1:9/v1 }}\nroutes:\n  - name: chat\n    targets:\n{targets}"
        );
        let config = crate::config::load_str(&yaml, "t.yaml", &|_| None)
            .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let local = |_: &str, port: u16| vec![SocketAddr::from(([127, 0, 0, 1], port))];
        Table::build(Arc::new(config), generation, &local)
    }

    #[test]
    fn each_target_policy_holds_its_resolved_first_token() {
        use crate::config::FirstToken;
        let yaml = "listen: 127.0.0.1:0\nproviders:\n  p: { kind: openai-compatible, base_url: http://127.0.0.1:9/v1 }\nroutes:\n  - name: chat\n    timeouts: { first_token: 2s }\n    targets:\n      - { provider: p, model: a }\n      - { provider: p, model: b, timeouts: { first_token: auto } }\n";
        let config = crate::config::load_str(yaml, "t.yaml", &|_| None)
            .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let local = |_: &str, port: u16| vec![SocketAddr::from(([127, 0, 0, 1], port))];
        let table = Table::build(Arc::new(config), 1, &local);
        let resolved: Vec<FirstToken> = table.routes[0]
            .targets
            .iter()
            .map(|t| t.timeouts.first_token)
            .collect();
        assert_eq!(
            resolved,
            [
                FirstToken::Fixed(std::time::Duration::from_secs(2)),
                FirstToken::Auto
            ]
        );
    }

    #[test]
    fn a_reload_carries_breakers_by_label() {
        let old = table(&["a", "b"], 1);
        let cfg = old.config.health;
        let now = Instant::now();
        let totals = crate::health::WindowTotals::default();
        for _ in 0..cfg.consecutive_failures {
            old.breakers[1].on_failure(&cfg, now, false, &totals);
        }
        let mut new = table(&["b", "c"], 2);
        new.carry_breakers(&old);
        assert!(Arc::ptr_eq(&new.breakers[0], &old.breakers[1]), "b kept");
        assert_eq!(new.breakers[0].state(now).kind(), StateKind::Open);
        assert_eq!(
            new.breakers[1].state(now).kind(),
            StateKind::Closed,
            "c new"
        );
    }
}
