//! Target selection: the order in which a route's targets are tried.
//!
//! Every strategy returns the whole chain (so fallback follows the strategy) with
//! targets that are available right now ahead of those whose breaker is open; the
//! attempt loop still asks each breaker before sending (a half-open probe may be
//! due). Strategies:
//! - `priority`: tiers by priority number; weighted random order within a tier.
//! - `weighted`: smooth weighted round robin (nginx's), then the rest by weight.
//! - `latency`: lowest peak-EWMA time-to-first-byte first; with a small chance a
//!   random other target goes first so a recovered target is rediscovered.
//! - `least-busy`: power of two choices on in-flight requests.

use std::time::Instant;

use smallvec::SmallVec;

use crate::config::{Route, Strategy};
use crate::health::TargetHealth;

/// Chance that the latency strategy explores a random target first.
pub const LATENCY_EXPLORATION: f64 = 0.05;

/// Per-route, per-shard balancing state.
#[derive(Debug, Clone)]
pub struct Balancer {
    /// Smooth weighted round robin's current weights.
    current: Vec<i64>,
}

impl Balancer {
    pub fn new(targets: usize) -> Balancer {
        Balancer {
            current: vec![0; targets],
        }
    }
}

/// What selection needs to know about one target of the route.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Index into `route.targets`.
    pub target: usize,
    pub available: bool,
    pub ewma_us: f64,
    pub in_flight: u32,
}

/// A route's candidates, on the stack up to the usual chain length.
pub type Candidates = SmallVec<[Candidate; 8]>;

/// A route's targets in the order to try them, on the stack likewise.
pub type Order = SmallVec<[usize; 8]>;

/// Reads the candidates of a route, one per target in route order, from each
/// target's health on this shard.
pub fn candidates<H: std::ops::Deref<Target = TargetHealth>>(
    health: impl Iterator<Item = H>,
    now: Instant,
) -> Candidates {
    health
        .enumerate()
        .map(|(target, h)| Candidate {
            target,
            available: h.available(now),
            ewma_us: h.ewma_us(now),
            in_flight: h.in_flight(),
        })
        .collect()
}

/// The order in which to try the route's targets (a copy of `candidates`
/// arranged by [`arrange`]).
pub fn order(
    route: &Route,
    candidates: &[Candidate],
    balancer: &mut Balancer,
    rng: &mut fastrand::Rng,
) -> Order {
    let mut list = Candidates::from_slice(candidates);
    arrange(route, &mut list, balancer, rng);
    list.iter().map(|c| c.target).collect()
}

/// Puts `list` in the order to try, in place (no allocation for a route of up
/// to 20 targets): available targets first, each group in the strategy's order.
pub fn arrange(
    route: &Route,
    list: &mut [Candidate],
    balancer: &mut Balancer,
    rng: &mut fastrand::Rng,
) {
    list.sort_by_key(|c| !c.available);
    let split = list.iter().take_while(|c| c.available).count();
    let (healthy, open) = list.split_at_mut(split);
    match route.strategy {
        Strategy::Priority => {
            priority_order(route, healthy, rng);
            priority_order(route, open, rng);
        }
        Strategy::Weighted => {
            weighted_order(route, healthy, balancer);
            weight_desc(route, open);
        }
        Strategy::Latency => {
            latency_order(healthy, rng);
            latency_order(open, rng);
        }
        Strategy::LeastBusy => {
            least_busy_order(healthy, rng);
            least_busy_order(open, rng);
        }
    }
}

fn weight(route: &Route, c: &Candidate) -> u32 {
    route.targets.get(c.target).map_or(1, |t| t.weight.max(1))
}

fn priority(route: &Route, c: &Candidate) -> u32 {
    route.targets.get(c.target).map_or(u32::MAX, |t| t.priority)
}

/// Tiers by priority; inside a tier a weighted random permutation.
fn priority_order(route: &Route, list: &mut [Candidate], rng: &mut fastrand::Rng) {
    list.sort_by_key(|c| priority(route, c));
    let mut start = 0;
    while start < list.len() {
        let tier = priority(route, &list[start]);
        let len = list[start..]
            .iter()
            .take_while(|c| priority(route, c) == tier)
            .count();
        weighted_shuffle(route, &mut list[start..start + len], rng);
        start += len;
    }
}

/// A weighted random permutation in place: each place is drawn from the targets
/// left in proportion to their weights (successive sampling, the distribution
/// Efraimidis–Spirakis keys give, without a keyed copy).
fn weighted_shuffle(route: &Route, tier: &mut [Candidate], rng: &mut fastrand::Rng) {
    for i in 0..tier.len().saturating_sub(1) {
        let total: u64 = tier[i..].iter().map(|c| u64::from(weight(route, c))).sum();
        let mut draw = rng.u64(..total);
        let mut pick = i;
        for (j, c) in tier.iter().enumerate().skip(i) {
            let w = u64::from(weight(route, c));
            if draw < w {
                pick = j;
                break;
            }
            draw -= w;
        }
        tier.swap(i, pick);
    }
}

/// Smooth weighted round robin picks the first; the rest follow by weight.
fn weighted_order(route: &Route, list: &mut [Candidate], balancer: &mut Balancer) {
    if list.is_empty() {
        return;
    }
    let total: i64 = list.iter().map(|c| i64::from(weight(route, c))).sum();
    let mut best = 0;
    for (i, c) in list.iter().enumerate() {
        if let Some(current) = balancer.current.get_mut(c.target) {
            *current += i64::from(weight(route, c));
        }
        let value = |c: &Candidate| balancer.current.get(c.target).copied().unwrap_or(0);
        if value(c) > value(&list[best]) {
            best = i;
        }
    }
    if let Some(current) = balancer.current.get_mut(list[best].target) {
        *current -= total;
    }
    list.swap(0, best);
    weight_desc(route, &mut list[1..]);
}

fn weight_desc(route: &Route, list: &mut [Candidate]) {
    list.sort_by_key(|c| std::cmp::Reverse(weight(route, c)));
}

fn latency_order(list: &mut [Candidate], rng: &mut fastrand::Rng) {
    list.sort_by(|a, b| a.ewma_us.total_cmp(&b.ewma_us));
    if list.len() > 1 && rng.f64() < LATENCY_EXPLORATION {
        let pick = rng.usize(1..list.len());
        list.swap(0, pick);
    }
}

/// Power of two choices for the first; the rest by in-flight count.
fn least_busy_order(list: &mut [Candidate], rng: &mut fastrand::Rng) {
    if list.len() < 2 {
        return;
    }
    let a = rng.usize(..list.len());
    let mut b = rng.usize(..list.len() - 1);
    if b >= a {
        b += 1;
    }
    let first = if (list[b].in_flight, list[b].ewma_us) < (list[a].in_flight, list[a].ewma_us) {
        b
    } else {
        a
    };
    list.swap(0, first);
    list[1..].sort_by_key(|c| c.in_flight);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;

    fn route(strategy: Strategy, targets: &[(u32, u32)]) -> Route {
        let targets = targets
            .iter()
            .map(|(priority, weight)| Target {
                provider: 0,
                model: "m".into(),
                priority: *priority,
                weight: *weight,
                retry: None,
                prefill: crate::config::Prefill::Auto,
                headers: Vec::new(),
                query: Vec::new(),
                timeouts: crate::config::Timeouts::DEFAULT,
                quota: Default::default(),
            })
            .collect();
        crate::route::tests_support::route_with(strategy, targets)
    }

    fn all_available(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|target| Candidate {
                target,
                available: true,
                ewma_us: 0.0,
                in_flight: 0,
            })
            .collect()
    }

    fn first_counts(route: &Route, cands: &[Candidate], runs: usize) -> Vec<usize> {
        let mut balancer = Balancer::new(route.targets.len());
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = vec![0; route.targets.len()];
        for _ in 0..runs {
            counts[order(route, cands, &mut balancer, &mut rng)[0]] += 1;
        }
        counts
    }

    #[test]
    fn priority_prefers_lowest_tier_and_splits_by_weight() {
        let r = route(Strategy::Priority, &[(1, 1), (0, 3), (0, 1)]);
        let counts = first_counts(&r, &all_available(3), 4000);
        assert_eq!(counts[0], 0);
        let share = counts[1] as f64 / 4000.0;
        assert!((0.70..0.80).contains(&share), "weight 3 of 4 got {share}");
    }

    #[test]
    fn unavailable_targets_go_last() {
        let r = route(Strategy::Priority, &[(0, 1), (1, 1)]);
        let mut cands = all_available(2);
        cands[0].available = false;
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(
            order(&r, &cands, &mut Balancer::new(2), &mut rng)[..],
            [1, 0]
        );
    }

    #[test]
    fn weighted_is_smooth_and_exact() {
        let r = route(Strategy::Weighted, &[(0, 5), (0, 1), (0, 1)]);
        let mut balancer = Balancer::new(3);
        let mut rng = fastrand::Rng::with_seed(1);
        let firsts: Vec<usize> = (0..7)
            .map(|_| order(&r, &all_available(3), &mut balancer, &mut rng)[0])
            .collect();
        assert_eq!(firsts.iter().filter(|t| **t == 0).count(), 5);
        assert_eq!(firsts, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn latency_prefers_fastest_but_explores() {
        let r = route(Strategy::Latency, &[(0, 1), (0, 1)]);
        let mut cands = all_available(2);
        cands[0].ewma_us = 9_000.0;
        cands[1].ewma_us = 1_000.0;
        let counts = first_counts(&r, &cands, 2000);
        let explored = counts[0] as f64 / 2000.0;
        assert!(counts[1] > counts[0]);
        assert!(
            (0.02..0.09).contains(&explored),
            "exploration share {explored}"
        );
    }

    #[test]
    fn least_busy_avoids_the_busy_one() {
        let r = route(Strategy::LeastBusy, &[(0, 1), (0, 1), (0, 1)]);
        let mut cands = all_available(3);
        cands[0].in_flight = 50;
        let counts = first_counts(&r, &cands, 3000);
        // Target 0 only goes first when it is not among the two sampled... never,
        // since any pair containing it has a less busy partner.
        assert_eq!(counts[0], 0);
        assert!(counts[1] > 1000 && counts[2] > 1000);
    }
}
