//! Routing: the table of rules and resolved policies, target selection, and the
//! attempt plan (retry, fall back, re-route or return).

pub mod plan;
pub mod select;
pub mod table;

pub use select::Balancer;
pub use table::Table;

#[cfg(test)]
pub(crate) mod tests_support {
    use std::time::Duration;

    use crate::config::*;

    /// A route with the documented defaults and the given targets.
    pub fn route_with(strategy: Strategy, targets: Vec<Target>) -> Route {
        Route {
            name: "r".into(),
            matcher: RouteMatch::default(),
            strategy,
            targets,
            retry: RetryPolicy {
                attempts: 2,
                backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                on_status: vec![429, 500, 502, 503, 504],
                budget_ratio: 0.2,
                budget_min_per_sec: 10,
                max_retry_after: Duration::from_secs(10),
                wait_retry_after_up_to: Duration::ZERO,
            },
            fallback: FallbackPolicy {
                on_status: vec![429, 500, 502, 503, 504, 529],
                on_timeout: true,
                on_connect_error: true,
                on_context_length: None,
                on_content_policy: false,
            },
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                first_byte: Duration::from_secs(15),
                first_token: FirstToken::Auto,
                between_chunks: Duration::from_secs(20),
                total: Duration::from_secs(120),
            },
            stream: StreamPolicy {
                continue_after_commit: false,
                hold_until_content: true,
            },
            hedge: None,
            forward_headers: ForwardHeaders::default(),
        }
    }
}
