//! The open-loop schedule: which request a free connection sends next, and when it
//! was *intended* to leave — independent of how fast responses come back.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::LoadSpec;

/// Sends later than this after their intended time count as late starts.
pub(crate) const LATE_START: Duration = Duration::from_millis(1);

/// The run's clock, shared by all threads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    /// First intended send (warmup begins).
    pub start: Instant,
    /// Recording begins: requests intended from here on are measured.
    pub warm_end: Instant,
    /// No request is intended at or after this.
    pub end: Instant,
    /// Open loop only: backlogged requests not sent by now are given up (and counted).
    pub hard_stop: Instant,
}

impl Timeline {
    pub(crate) fn new(spec: &LoadSpec, start: Instant) -> Self {
        let warm_end = start + spec.warmup;
        let end = warm_end + spec.duration;
        Timeline {
            start,
            warm_end,
            end,
            hard_stop: end + spec.timeout,
        }
    }

    /// Whether a request intended at `t` belongs to the measured window.
    pub(crate) fn measures(&self, t: Instant) -> bool {
        t >= self.warm_end && t < self.end
    }
}

/// When the claimed request should be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Open loop: at this intended time (possibly already past).
    At(Instant),
    /// Closed loop: right away.
    Now,
}

/// One thread's share of the arrivals: thread `j` of `T` at total rate `r` owns the
/// times `start + (j + i·T) / r`, so the threads together are evenly spaced.
#[derive(Debug)]
pub(crate) struct Schedule {
    timeline: Timeline,
    pacing: Option<Pacing>,
    next: Cell<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Pacing {
    phase_s: f64,
    interval_s: f64,
}

impl Schedule {
    pub(crate) fn new(timeline: Timeline, rate: Option<f64>, index: usize, threads: usize) -> Self {
        let pacing = rate.map(|r| Pacing {
            phase_s: index as f64 / r,
            interval_s: threads as f64 / r,
        });
        Schedule {
            timeline,
            pacing,
            next: Cell::new(0),
        }
    }

    pub(crate) fn open_loop(&self) -> bool {
        self.pacing.is_some()
    }

    /// The next request for a connection that is free at `now`; `None` when the run is over.
    pub(crate) fn claim(&self, now: Instant) -> Option<Slot> {
        let Some(pacing) = self.pacing else {
            return (now < self.timeline.end).then_some(Slot::Now);
        };
        if now >= self.timeline.hard_stop {
            return None;
        }
        let at = self.slot_time(pacing, self.next.get())?;
        self.next.set(self.next.get() + 1);
        Some(Slot::At(at))
    }

    /// Measured requests that were scheduled but never claimed (open loop past `hard_stop`).
    pub(crate) fn unsent_in_window(&self) -> u64 {
        let Some(pacing) = self.pacing else { return 0 };
        let mut index = self.next.get();
        let mut unsent = 0;
        while let Some(at) = self.slot_time(pacing, index) {
            unsent += u64::from(self.timeline.measures(at));
            index += 1;
        }
        unsent
    }

    fn slot_time(&self, pacing: Pacing, index: u64) -> Option<Instant> {
        let offset = pacing.phase_s + index as f64 * pacing.interval_s;
        let at = self.timeline.start + Duration::try_from_secs_f64(offset).ok()?;
        (at < self.timeline.end).then_some(at)
    }
}

/// Waits until `t` on the runtime's timer (1 ms resolution, never early).
///
/// No busy-waiting: a task that yields in a loop keeps the executor from polling
/// I/O, which delays every other connection's responses and inflates their measured
/// latency (seen as a constant ~7 ms at 1k req/s over 8 connections). Timer
/// lateness (< 1 ms) is part of the measured latency for direct and gateway runs
/// alike, and shows up in `late_starts`.
pub(crate) async fn wait_until(t: Instant) {
    for _ in 0..4 {
        if Instant::now() >= t {
            return;
        }
        monoio::time::sleep_until(monoio::time::Instant::from_std(t)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(warmup_ms: u64, duration_ms: u64) -> Timeline {
        let start = Instant::now();
        let warm_end = start + Duration::from_millis(warmup_ms);
        let end = warm_end + Duration::from_millis(duration_ms);
        Timeline {
            start,
            warm_end,
            end,
            hard_stop: end + Duration::from_secs(1),
        }
    }

    fn drain(schedule: &Schedule, now: Instant) -> Vec<Instant> {
        let mut times = Vec::new();
        while let Some(Slot::At(t)) = schedule.claim(now) {
            times.push(t);
            assert!(times.len() < 10_000, "schedule does not end");
        }
        times
    }

    #[test]
    fn one_thread_gets_rate_times_span_slots() {
        let tl = timeline(0, 2000);
        let s = Schedule::new(tl, Some(100.0), 0, 1);
        let times = drain(&s, tl.start);
        assert_eq!(times.len(), 200);
        assert_eq!(times[1] - times[0], Duration::from_millis(10));
        assert_eq!(s.unsent_in_window(), 0);
    }

    #[test]
    fn threads_interleave_evenly() {
        let tl = timeline(0, 1000);
        let a = drain(&Schedule::new(tl, Some(100.0), 0, 2), tl.start);
        let b = drain(&Schedule::new(tl, Some(100.0), 1, 2), tl.start);
        assert_eq!(a.len() + b.len(), 100);
        assert_eq!(b[0] - a[0], Duration::from_millis(10));
        assert_eq!(a[1] - b[0], Duration::from_millis(10));
    }

    #[test]
    fn past_hard_stop_the_rest_is_counted_unsent() {
        let tl = timeline(500, 1000);
        let s = Schedule::new(tl, Some(10.0), 0, 1);
        assert!(s.claim(tl.start).is_some());
        assert_eq!(s.claim(tl.hard_stop), None);
        assert_eq!(s.unsent_in_window(), 10);
    }

    #[test]
    fn closed_loop_runs_until_end() {
        let tl = timeline(0, 1000);
        let s = Schedule::new(tl, None, 0, 1);
        assert_eq!(s.claim(tl.start), Some(Slot::Now));
        assert_eq!(s.claim(tl.end), None);
        assert_eq!(s.unsent_in_window(), 0);
    }
}
