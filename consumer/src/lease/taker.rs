//! Which leases this worker should take, and from whom it should steal: the Java KCL 2.x
//! `DynamoDBLeaseTaker` rules, as a pure function of the leases, this worker's observations of
//! their counters, the time, and the configuration.
//!
//! The rules, in order:
//! 1. A lease is *available* when it has no owner, or when its counter has not changed for more
//!    than `failover_time` on this worker's clock (no clocks of other machines are compared).
//!    A lease seen for the first time counts as changed just now, unless it has no owner:
//!    then it counts as never renewed.
//! 2. Workers are the owners of unavailable leases, plus this worker. The target is
//!    `ceil(leases / workers)` (1 when there are at least as many workers as leases), capped at
//!    `max_leases_for_worker`. Every lease counts, `SHARD_END` ones included.
//! 3. Priority (`enable_priority_lease_assignment`, on by default): if any lease is *very old*
//!    (unchanged for `very_old_lease_multiplier × failover_time`, or never renewed: new
//!    unowned leases), take very old leases, at random, up to `max_leases_for_worker` minus
//!    the leases held, ignoring the target; and nothing else this round.
//! 4. Otherwise, below the target: take available leases at random up to the target.
//! 5. With nothing available and still below the target, steal from the most loaded worker, if
//!    it holds at least the target: `min(needed, its leases − target)` leases, or 1 when that
//!    is 0 and more than one is needed, at most `max_leases_to_steal_at_one_time`, at random.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kinesis_aggregation::ShardId;
use rand::Rng;
use rand::seq::SliceRandom;

use super::config::LeaseConfig;
use super::lease::Lease;

/// What this worker last saw of one lease's counter, and when it saw it change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The counter last seen.
    pub counter: u64,
    /// When the counter was last seen to change; `None` for an unowned lease never seen
    /// renewed (it is available and, for the priority rule, very old).
    pub last_change: Option<Instant>,
}

/// This worker's observations of every lease's counter: the clock that expiry is measured on.
///
/// ```
/// use std::time::{Duration, Instant};
/// use kinesis_consumer::lease::{Checkpoint, Lease, LeaseObservations};
///
/// let mut lease = Lease::new("shardId-1".into(), Checkpoint::TrimHorizon);
/// lease.lease_owner = Some("worker-2".into());
/// let t0 = Instant::now();
/// let mut observations = LeaseObservations::new();
/// observations.update([&lease], t0);
/// observations.update([&lease], t0 + Duration::from_secs(5)); // counter unchanged
/// assert_eq!(observations.get(&lease.lease_key).unwrap().last_change, Some(t0));
/// ```
#[derive(Debug, Clone, Default)]
pub struct LeaseObservations {
    by_key: HashMap<ShardId, Observation>,
}

impl LeaseObservations {
    /// No observations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in a full listing of the table made at `now`: counters that moved are stamped
    /// `now`, unchanged ones keep their time, new leases follow rule 1, and leases no longer
    /// listed are forgotten.
    pub fn update<'a>(&mut self, leases: impl IntoIterator<Item = &'a Lease>, now: Instant) {
        let previous = std::mem::take(&mut self.by_key);
        for lease in leases {
            let observation = next_observation(previous.get(&lease.lease_key), lease, now);
            self.by_key.insert(lease.lease_key.clone(), observation);
        }
    }

    /// Takes in one lease seen at `now` (e.g. returned by this worker's own take or renewal),
    /// keeping the other observations.
    pub fn observe(&mut self, lease: &Lease, now: Instant) {
        let observation = next_observation(self.by_key.get(&lease.lease_key), lease, now);
        self.by_key.insert(lease.lease_key.clone(), observation);
    }

    /// The observation of one lease.
    pub fn get(&self, lease_key: &ShardId) -> Option<Observation> {
        self.by_key.get(lease_key).copied()
    }

    /// How many leases are observed.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no lease is observed.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// When the lease's counter last changed, as of `now`; leases not (or differently)
    /// observed are treated as [`LeaseObservations::update`] would treat them now.
    fn last_change(&self, lease: &Lease, now: Instant) -> Option<Instant> {
        next_observation(self.by_key.get(&lease.lease_key), lease, now).last_change
    }
}

fn next_observation(previous: Option<&Observation>, lease: &Lease, now: Instant) -> Observation {
    let last_change = match previous {
        Some(seen) if seen.counter == lease.lease_counter => seen.last_change,
        Some(_) => Some(now),
        None if lease.lease_owner.is_none() => None,
        None => Some(now),
    };
    Observation {
        counter: lease.lease_counter,
        last_change,
    }
}

/// The figures behind a [`TakeDecision`] (the Java taker's metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TakeStats {
    /// Leases in the table (`TotalLeases`).
    pub total_leases: usize,
    /// Unowned or expired leases (`ExpiredLeases`).
    pub available_leases: usize,
    /// Owners of unexpired leases, plus this worker (`NumWorkers`).
    pub workers: usize,
    /// Leases each worker should hold.
    pub target: usize,
    /// Unexpired leases this worker holds.
    pub held: usize,
    /// `target − held` (`NeededLeases`).
    pub needed: usize,
    /// How far the uncapped target exceeded `max_leases_for_worker` (`LeaseSpillover`).
    pub spillover: usize,
    /// Very old leases chosen by the priority rule (`VeryOldLeases`).
    pub very_old_leases: usize,
    /// The worker stolen from, if any.
    pub steal_from: Option<String>,
}

/// What the taker should try this round. Every entry is a lease key of the listing given to
/// [`compute_leases_to_take`]; take each with [`LeaseStore::take`] and the lease as listed.
///
/// [`LeaseStore::take`]: super::LeaseStore::take
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TakeDecision {
    /// Unowned, expired or very old leases to take.
    pub expired_to_take: Vec<ShardId>,
    /// Live leases to take from [`TakeStats::steal_from`] to balance the load.
    pub to_steal: Vec<ShardId>,
    /// The figures the decision rests on.
    pub stats: TakeStats,
}

impl TakeDecision {
    /// Whether there is nothing to take.
    pub fn is_empty(&self) -> bool {
        self.expired_to_take.is_empty() && self.to_steal.is_empty()
    }
}

/// Decides which leases `worker_id` should take, following the module's rules. `leases` is a
/// listing of the table (malformed items left out), `observations` this worker's view of the
/// counters (normally updated with the same listing), and `rng` picks among equal candidates,
/// so that workers do not all go for the same leases.
pub fn compute_leases_to_take<R: Rng + ?Sized>(
    leases: &[Lease],
    observations: &LeaseObservations,
    now: Instant,
    worker_id: &str,
    config: &LeaseConfig,
    rng: &mut R,
) -> TakeDecision {
    // Sorted, so that the outcome depends on the random source only, not on the listing order.
    let mut leases: Vec<&Lease> = leases.iter().collect();
    leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    leases.dedup_by(|a, b| a.lease_key == b.lease_key);

    let ages: Vec<(&Lease, Option<Duration>)> = leases
        .iter()
        .map(|&lease| {
            let age = observations
                .last_change(lease, now)
                .map(|changed| now.saturating_duration_since(changed));
            (lease, age)
        })
        .collect();
    let failover = config.get_failover_time();
    let (available, live): (Vec<_>, Vec<_>) = ages.iter().partition(|(lease, age)| {
        lease.lease_owner.is_none() || age.is_none_or(|age| age > failover)
    });

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (lease, _) in &live {
        if let Some(owner) = lease.lease_owner.as_deref() {
            *counts.entry(owner).or_default() += 1;
        }
    }
    counts.entry(worker_id).or_default();

    let mut decision = TakeDecision::default();
    let stats = &mut decision.stats;
    stats.total_leases = leases.len();
    stats.available_leases = available.len();
    stats.workers = counts.len();
    if leases.is_empty() {
        return decision;
    }

    let max_for_worker = config.get_max_leases_for_worker();
    let mut target = if stats.workers >= leases.len() {
        1
    } else {
        leases.len().div_ceil(stats.workers)
    };
    stats.spillover = target.saturating_sub(max_for_worker);
    target = target.min(max_for_worker);
    stats.target = target;
    stats.held = counts[worker_id];
    stats.needed = target.saturating_sub(stats.held);

    if config.get_enable_priority_lease_assignment() {
        let very_old_age = config.very_old_lease_age();
        let mut very_old: Vec<&Lease> = ages
            .iter()
            .filter(|(_, age)| age.is_none_or(|age| age > very_old_age))
            .map(|(lease, _)| *lease)
            .collect();
        if !very_old.is_empty() {
            very_old.shuffle(rng);
            let count = max_for_worker
                .saturating_sub(stats.held)
                .min(very_old.len());
            stats.very_old_leases = count;
            decision.expired_to_take = keys(&very_old[..count]);
            return decision;
        }
    }

    if stats.needed == 0 {
        return decision;
    }
    if !available.is_empty() {
        let mut available: Vec<&Lease> = available.iter().map(|(lease, _)| *lease).collect();
        available.shuffle(rng);
        let count = stats.needed.min(available.len());
        decision.expired_to_take = keys(&available[..count]);
        return decision;
    }

    // Most leases first; among equals the smallest id, so the choice does not depend on a
    // hash map's order.
    let (&busiest, &busiest_count) = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .expect("this worker is always counted");
    let mut count = 0;
    if busiest_count >= target {
        count = stats.needed.min(busiest_count - target);
        if stats.needed > 1 && count == 0 {
            count = 1;
        }
        count = count.min(config.get_max_leases_to_steal_at_one_time());
    }
    if count == 0 || busiest == worker_id {
        return decision;
    }
    let mut candidates: Vec<&Lease> = live
        .iter()
        .map(|(lease, _)| *lease)
        .filter(|lease| lease.lease_owner.as_deref() == Some(busiest))
        .collect();
    candidates.shuffle(rng);
    candidates.truncate(count);
    decision.to_steal = keys(&candidates);
    decision.stats.steal_from = Some(busiest.to_owned());
    decision
}

fn keys(leases: &[&Lease]) -> Vec<ShardId> {
    leases.iter().map(|lease| lease.lease_key.clone()).collect()
}

#[cfg(test)]
#[path = "taker_tests.rs"]
mod tests;
