//! The producer's request circuit: a retry budget for whole-request failures, shared by every
//! shard of the stream.
//!
//! Per-entry failures (`FailedRecordCount`) say a shard is busy and back off per record. A failed
//! *request* (5xx, request throttling, a timeout, a reset, no credentials) says the service or the
//! path to it is in trouble, and retrying each request on its own would keep up to
//! `MaxConnections` requests going at every backoff step of every record: 357 requests in 30 s
//! for one producer during an outage, measured before this existed. So request failures are
//! counted here, for the whole stream:
//!
//! - **Closed**: no failure since the last success; requests go as the pipeline pleases.
//! - **Cautious**: one or two failures in a row; one request at a time, at once. A single 500 in
//!   a healthy stream costs one round trip of reduced concurrency.
//! - **Open**: [`TRIP_AFTER`] failures in a row; nothing is sent until a delay has passed, then one
//!   request (a probe, a full request of queued records) goes. The delay starts at
//!   [`FIRST_DELAY`] and doubles to [`MAX_DELAY`], each jittered down to at most
//!   [`JITTER`] less, so a fleet of producers does not probe in step. A failed probe opens the
//!   circuit again for the next delay.
//!
//! Any success closes it: the next turn of the pipeline sends at full speed. During a full
//! outage a producer sends about one request per second, 60 in 40 s at most, and resumes within
//! [`MAX_DELAY`] (plus a round trip) of the service answering again.

use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

/// Request failures in a row (no success between) that open the circuit.
pub const TRIP_AFTER: u32 = 3;
/// The first wait of an open circuit before its probe.
pub const FIRST_DELAY: Duration = Duration::from_millis(200);
/// The longest wait between probes: also how long after the service recovers the producer may
/// take to notice.
pub const MAX_DELAY: Duration = Duration::from_secs(1);
/// The largest share of a delay the jitter takes off.
pub const JITTER: f64 = 0.2;

/// How many requests may be in flight now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// As many as the pipeline's own limits allow.
    Unlimited,
    /// One at a time (counting those already in flight).
    One,
    /// None until then.
    WaitUntil(Instant),
}

/// The state of whole-request failures of one producer (one stream).
#[derive(Debug, Default)]
pub struct RequestCircuit {
    /// Request failures since the last success.
    failures: u32,
    /// When an open circuit lets its next probe go.
    open_until: Option<Instant>,
    /// How many times in a row the circuit has opened (the delay's exponent).
    openings: u32,
}

impl RequestCircuit {
    /// A closed circuit.
    pub fn new() -> Self {
        RequestCircuit::default()
    }

    /// What may be sent at `now`.
    pub fn allowance(&self, now: Instant) -> Allowance {
        match (self.failures, self.open_until) {
            (0, _) => Allowance::Unlimited,
            (_, Some(until)) if now < until => Allowance::WaitUntil(until),
            _ => Allowance::One,
        }
    }

    /// Whether the circuit is open (waiting or probing), for metrics and logs.
    pub fn is_open(&self) -> bool {
        self.failures >= TRIP_AFTER
    }

    /// A request got an answer from the service (whatever its entries' results): closes the
    /// circuit. Returns whether it was open.
    pub fn record_success(&mut self) -> bool {
        let was_open = self.is_open();
        *self = RequestCircuit::default();
        was_open
    }

    /// A whole request failed with an error worth retrying. Returns whether this failure opened
    /// the circuit (or opened it again after a failed probe).
    ///
    /// Failures of requests that were already in flight while the circuit waits do not push the
    /// wait further: only the first failure past the threshold, and each failure once the wait is
    /// over (a probe's), open it for the next delay.
    pub fn record_failure(&mut self, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        if self.failures < TRIP_AFTER || self.open_until.is_some_and(|until| now < until) {
            return false;
        }
        let delay = jittered(delay_for(self.openings), rand::rng().random::<f64>());
        self.openings = self.openings.saturating_add(1);
        self.open_until = Some(now + delay);
        true
    }
}

/// The un-jittered wait after the circuit has opened `openings` times in a row.
fn delay_for(openings: u32) -> Duration {
    FIRST_DELAY
        .saturating_mul(1u32.checked_shl(openings.min(16)).unwrap_or(u32::MAX))
        .min(MAX_DELAY)
}

/// `delay` less up to [`JITTER`] of it, by `unit` in `0.0..1.0`.
fn jittered(delay: Duration, unit: f64) -> Duration {
    delay.mul_f64(1.0 - JITTER * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_circuit(now: Instant) -> RequestCircuit {
        let mut circuit = RequestCircuit::new();
        for _ in 0..TRIP_AFTER {
            circuit.record_failure(now);
        }
        circuit
    }

    #[test]
    fn one_failure_makes_it_cautious_and_a_success_closes_it() {
        let now = Instant::now();
        let mut circuit = RequestCircuit::new();
        assert_eq!(circuit.allowance(now), Allowance::Unlimited);
        assert!(!circuit.record_failure(now));
        assert_eq!(circuit.allowance(now), Allowance::One);
        assert!(!circuit.record_success());
        assert_eq!(circuit.allowance(now), Allowance::Unlimited);
    }

    #[test]
    fn it_opens_after_the_threshold_and_lets_one_probe_go_after_the_delay() {
        let now = Instant::now();
        let mut circuit = RequestCircuit::new();
        for _ in 1..TRIP_AFTER {
            assert!(!circuit.record_failure(now));
        }
        assert!(circuit.record_failure(now));
        assert!(circuit.is_open());
        let Allowance::WaitUntil(until) = circuit.allowance(now) else {
            panic!("open: {:?}", circuit.allowance(now));
        };
        let wait = until - now;
        assert!(
            wait <= FIRST_DELAY && wait >= FIRST_DELAY.mul_f64(1.0 - JITTER),
            "{wait:?}"
        );
        assert_eq!(circuit.allowance(until), Allowance::One);
        assert!(circuit.record_success());
        assert_eq!(circuit.allowance(until), Allowance::Unlimited);
    }

    #[test]
    fn stragglers_failing_while_it_waits_do_not_push_the_probe_back() {
        let now = Instant::now();
        let mut circuit = open_circuit(now);
        let first = circuit.allowance(now);
        for _ in 0..20 {
            assert!(!circuit.record_failure(now + Duration::from_millis(10)));
        }
        assert_eq!(circuit.allowance(now), first);
    }

    #[test]
    fn failed_probes_double_the_delay_up_to_the_cap() {
        let mut now = Instant::now();
        let mut circuit = open_circuit(now);
        let mut waits = Vec::new();
        for _ in 0..8 {
            let Allowance::WaitUntil(until) = circuit.allowance(now) else {
                panic!("open")
            };
            waits.push(until - now);
            now = until;
            assert_eq!(circuit.allowance(now), Allowance::One);
            assert!(circuit.record_failure(now), "a failed probe opens it again");
        }
        for (i, wait) in waits.iter().enumerate() {
            let nominal = delay_for(i as u32);
            assert!(
                *wait <= nominal && *wait >= nominal.mul_f64(1.0 - JITTER),
                "{i}: {wait:?}"
            );
        }
        assert_eq!(delay_for(0), FIRST_DELAY);
        assert_eq!(delay_for(1), FIRST_DELAY * 2);
        assert_eq!(delay_for(7), MAX_DELAY);
        assert_eq!(delay_for(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn a_full_outage_allows_at_most_sixty_requests_in_forty_seconds() {
        // Every request fails, one in flight at a time, answered at once: the worst case for the
        // budget (a real outage answers slower, so fewer go).
        let start = Instant::now();
        let end = start + Duration::from_secs(40);
        let mut now = start;
        let mut circuit = RequestCircuit::new();
        let mut sent = 0;
        while now < end {
            match circuit.allowance(now) {
                Allowance::WaitUntil(until) => now = until,
                Allowance::Unlimited | Allowance::One => {
                    sent += 1;
                    circuit.record_failure(now);
                    now += Duration::from_millis(1);
                }
            }
        }
        assert!((40..=60).contains(&sent), "{sent} requests in 40 s");
    }

    #[test]
    fn jitter_takes_off_at_most_its_share() {
        let delay = Duration::from_secs(1);
        assert_eq!(jittered(delay, 0.0), delay);
        assert_eq!(jittered(delay, 1.0), delay.mul_f64(1.0 - JITTER));
        assert_eq!(jittered(delay, 7.0), delay.mul_f64(1.0 - JITTER));
    }
}
