//! Table-driven tests of the lease-taking rules.

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::lease::Checkpoint;

const ME: &str = "me";
const FAILOVER: Duration = Duration::from_secs(10);

/// How long ago this worker last saw the lease's counter change.
#[derive(Debug, Clone, Copy)]
enum Seen {
    /// Changed a second ago.
    Fresh,
    /// Unchanged for a little more than the failover time, less than the very-old age.
    Expired,
    /// Unchanged for more than 3 × failover.
    VeryOld,
    /// Unchanged for exactly this long.
    Age(Duration),
    /// Never observed before this listing.
    Unobserved,
    /// Observed long ago with a smaller counter: it moved since.
    Moved,
}

#[derive(Debug, Clone, Copy)]
struct L {
    key: &'static str,
    owner: Option<&'static str>,
    seen: Seen,
    shard_end: bool,
}

fn l(key: &'static str, owner: &'static str, seen: Seen) -> L {
    L {
        key,
        owner: Some(owner),
        seen,
        shard_end: false,
    }
}

fn unowned(key: &'static str, seen: Seen) -> L {
    L {
        key,
        owner: None,
        seen,
        shard_end: false,
    }
}

fn ended(lease: L) -> L {
    L {
        shard_end: true,
        ..lease
    }
}

/// What a decision must pick: nothing, exactly these, or `n` of these.
#[derive(Debug, Clone)]
enum Pick {
    Nothing,
    Exactly(Vec<&'static str>),
    AnyOf(usize, Vec<&'static str>),
}

struct Case {
    name: &'static str,
    leases: Vec<L>,
    config: LeaseConfig,
    take: Pick,
    steal: Pick,
    target: Option<usize>,
}

fn case(name: &'static str, leases: Vec<L>, take: Pick, steal: Pick) -> Case {
    Case {
        name,
        leases,
        config: LeaseConfig::default().failover_time(FAILOVER),
        take,
        steal,
        target: None,
    }
}

impl Case {
    fn config(mut self, f: impl FnOnce(LeaseConfig) -> LeaseConfig) -> Self {
        self.config = f(self.config);
        self
    }

    fn target(mut self, target: usize) -> Self {
        self.target = Some(target);
        self
    }
}

/// Builds the leases and observations of a case, as of `now`.
fn setup(leases: &[L], now: Instant) -> (Vec<Lease>, LeaseObservations) {
    let mut observations = LeaseObservations::new();
    let built = leases
        .iter()
        .map(|spec| {
            let checkpoint = if spec.shard_end {
                Checkpoint::ShardEnd
            } else {
                Checkpoint::TrimHorizon
            };
            let mut lease = Lease::new(spec.key.into(), checkpoint);
            lease.lease_owner = spec.owner.map(str::to_owned);
            lease.lease_counter = 7;
            let observation = |counter, ago: Option<Duration>| Observation {
                counter,
                last_change: ago.map(|ago| now - ago),
            };
            let seen = match spec.seen {
                Seen::Fresh => Some(observation(7, Some(Duration::from_secs(1)))),
                Seen::Expired => Some(observation(7, Some(FAILOVER + Duration::from_secs(1)))),
                Seen::VeryOld => Some(observation(7, Some(FAILOVER * 4))),
                Seen::Age(age) => Some(observation(7, Some(age))),
                Seen::Moved => Some(observation(6, Some(FAILOVER * 100))),
                Seen::Unobserved => None,
            };
            if let Some(seen) = seen {
                observations.by_key.insert(lease.lease_key.clone(), seen);
            }
            lease
        })
        .collect();
    (built, observations)
}

fn check(case: &str, what: &str, pick: &Pick, got: &[ShardId]) {
    let got: Vec<&str> = got.iter().map(ShardId::as_str).collect();
    let unique: BTreeSet<&str> = got.iter().copied().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "{case}: {what} has duplicates: {got:?}"
    );
    match pick {
        Pick::Nothing => assert!(
            got.is_empty(),
            "{case}: {what} should be empty, got {got:?}"
        ),
        Pick::Exactly(expected) => {
            let expected: BTreeSet<&str> = expected.iter().copied().collect();
            assert_eq!(unique, expected, "{case}: {what}");
        }
        Pick::AnyOf(n, from) => {
            assert_eq!(
                got.len(),
                *n,
                "{case}: {what} should pick {n} of {from:?}, got {got:?}"
            );
            assert!(
                got.iter().all(|key| from.contains(key)),
                "{case}: {what} should pick from {from:?}, got {got:?}"
            );
        }
    }
}

fn cases() -> Vec<Case> {
    use Pick::*;
    use Seen::*;
    vec![
        case("empty table", vec![], Nothing, Nothing),
        case(
            "alone with new unowned leases: priority takes them all",
            vec![
                unowned("s1", Unobserved),
                unowned("s2", Unobserved),
                unowned("s3", Unobserved),
            ],
            Exactly(vec!["s1", "s2", "s3"]),
            Nothing,
        ),
        case(
            "new unowned leases with priority off: up to the target",
            vec![
                unowned("s1", Unobserved),
                unowned("s2", Unobserved),
                l("s3", "a", Fresh),
                l("s4", "a", Fresh),
            ],
            AnyOf(2, vec!["s1", "s2"]),
            Nothing,
        )
        .config(|c| c.enable_priority_lease_assignment(false))
        .target(2),
        case(
            "a dead worker's expired leases: its worker no longer counts, take all",
            vec![
                l("s1", "dead", Expired),
                l("s2", "dead", Expired),
                l("s3", "dead", Expired),
            ],
            Exactly(vec!["s1", "s2", "s3"]),
            Nothing,
        )
        .target(3),
        case(
            "balanced: nothing to do",
            vec![
                l("s1", "a", Fresh),
                l("s2", "a", Fresh),
                l(".3", ME, Fresh),
                l(".4", ME, Fresh),
            ],
            Nothing,
            Nothing,
        )
        .target(2),
        case(
            "one of three workers died: take my share of its leases",
            vec![
                l("a1", "a", Fresh),
                l("a2", "a", Fresh),
                l("b1", "b", Expired),
                l("b2", "b", Expired),
                l("m1", ME, Fresh),
                l("m2", ME, Fresh),
            ],
            AnyOf(1, vec!["b1", "b2"]),
            Nothing,
        )
        .target(3),
        case(
            "workers are counted from live leases only",
            vec![
                l("a1", "a", Fresh),
                l("a2", "a", Fresh),
                l("b1", "b", Expired),
                l("b2", "b", Expired),
                l("c1", "c", Expired),
                l("c2", "c", Expired),
            ],
            AnyOf(3, vec!["b1", "b2", "c1", "c2"]),
            Nothing,
        )
        .target(3),
        case(
            "very old leases are taken beyond the target",
            vec![
                l("a1", "a", Fresh),
                l("a2", "a", Fresh),
                l("b1", "b", VeryOld),
                l("b2", "b", VeryOld),
                l("b3", "b", VeryOld),
                l("b4", "b", VeryOld),
            ],
            Exactly(vec!["b1", "b2", "b3", "b4"]),
            Nothing,
        )
        .target(3),
        case(
            "very old leases at max_leases_for_worker: nothing, not even a steal",
            vec![
                l("m1", ME, Fresh),
                l("m2", ME, Fresh),
                l("b1", "b", VeryOld),
                l("b2", "b", VeryOld),
                l("a1", "a", Fresh),
                l("a2", "a", Fresh),
                l("a3", "a", Fresh),
                l("a4", "a", Fresh),
            ],
            Nothing,
            Nothing,
        )
        .config(|c| c.max_leases_for_worker(2)),
        case(
            "very old leases with priority off are ordinary expired leases",
            vec![
                l("a1", "a", Fresh),
                l("a2", "a", Fresh),
                l("b1", "b", VeryOld),
                l("b2", "b", VeryOld),
                l("b3", "b", VeryOld),
                l("b4", "b", VeryOld),
            ],
            AnyOf(3, vec!["b1", "b2", "b3", "b4"]),
            Nothing,
        )
        .config(|c| c.enable_priority_lease_assignment(false)),
        case(
            "a new worker joins: steals one lease at a time",
            vec![
                l("a1", "a", Fresh),
                l("a2", "a", Fresh),
                l("a3", "a", Fresh),
                l("a4", "a", Fresh),
            ],
            Nothing,
            AnyOf(1, vec!["a1", "a2", "a3", "a4"]),
        )
        .target(2),
        case(
            "a new worker joins with maxLeasesToStealAtOneTime 3: steals what it needs",
            vec![
                l("a1", "a", Fresh),
                l("a2", "a", Fresh),
                l("a3", "a", Fresh),
                l("a4", "a", Fresh),
            ],
            Nothing,
            AnyOf(2, vec!["a1", "a2", "a3", "a4"]),
        )
        .config(|c| c.max_leases_to_steal_at_one_time(3)),
        case(
            "steals only the excess of the most loaded worker",
            vec![
                l("a1", "a", Fresh),
                l("a2", "a", Fresh),
                l("a3", "a", Fresh),
                l("a4", "a", Fresh),
                l("a5", "a", Fresh),
                l("b1", "b", Fresh),
            ],
            Nothing,
            AnyOf(2, vec!["a1", "a2", "a3", "a4", "a5"]),
        )
        .config(|c| c.max_leases_to_steal_at_one_time(10))
        .target(2),
        case(
            "three workers: steals from the most loaded only",
            vec![
                l("a1", "a", Fresh),
                l("a2", "a", Fresh),
                l("a3", "a", Fresh),
                l("b1", "b", Fresh),
            ],
            Nothing,
            AnyOf(1, vec!["a1", "a2", "a3"]),
        )
        .target(2),
        case(
            "most loaded worker at the target and I need two: steal one",
            vec![
                l("a1", "a", Fresh),
                l("a2", "a", Fresh),
                l("b1", "b", Fresh),
                l("b2", "b", Fresh),
            ],
            Nothing,
            AnyOf(1, vec!["a1", "a2"]),
        )
        .target(2),
        case(
            "most loaded worker at the target and I need one: no steal",
            vec![
                l("a1", "a", Fresh),
                l("b1", "b", Fresh),
                l("c1", "c", Fresh),
            ],
            Nothing,
            Nothing,
        )
        .target(1),
        case(
            "more workers than leases: target 1, no steal from a worker holding 1",
            vec![l("a1", "a", Fresh), l("b1", "b", Fresh)],
            Nothing,
            Nothing,
        )
        .target(1),
        case(
            "max_leases_for_worker caps the target",
            vec![
                l("x1", "x", Expired),
                l("x2", "x", Expired),
                l("x3", "x", Expired),
                l("x4", "x", Expired),
                l("x5", "x", Expired),
            ],
            AnyOf(3, vec!["x1", "x2", "x3", "x4", "x5"]),
            Nothing,
        )
        .config(|c| c.max_leases_for_worker(3))
        .target(3),
        case(
            "max_leases_for_worker caps priority taking of new leases",
            vec![
                unowned("s1", Unobserved),
                unowned("s2", Unobserved),
                unowned("s3", Unobserved),
                unowned("s4", Unobserved),
                l("m1", ME, Fresh),
            ],
            AnyOf(2, vec!["s1", "s2", "s3", "s4"]),
            Nothing,
        )
        .config(|c| c.max_leases_for_worker(3)),
        case(
            "a released lease (unowned, counter just moved) is taken up to the target",
            vec![
                l("a1", "a", Fresh),
                l("a2", "a", Fresh),
                unowned("r1", Fresh),
                l("m1", ME, Fresh),
            ],
            Exactly(vec!["r1"]),
            Nothing,
        )
        .target(2),
        case(
            "at the target, a released lease is left to others",
            vec![
                l("a1", "a", Fresh),
                unowned("r1", Fresh),
                l("m1", ME, Fresh),
                l("m2", ME, Fresh),
            ],
            Nothing,
            Nothing,
        )
        .target(2),
        case(
            "an owned lease seen for the first time counts as just renewed",
            vec![l("a1", "a", Unobserved)],
            Nothing,
            Nothing,
        )
        .target(1),
        case(
            "a counter that moved since the last look counts as just renewed",
            vec![l("a1", "a", Moved)],
            Nothing,
            Nothing,
        ),
        case(
            "expiry is strict: exactly failover_time old is still live",
            vec![l("a1", "a", Age(FAILOVER))],
            Nothing,
            Nothing,
        ),
        case(
            "just past failover_time is expired",
            vec![l("a1", "a", Age(FAILOVER + Duration::from_millis(1)))],
            Exactly(vec!["a1"]),
            Nothing,
        ),
        case(
            "my own expired lease (renewals failed) is taken back",
            vec![l("m1", ME, Expired), l("a1", "a", Fresh)],
            Exactly(vec!["m1"]),
            Nothing,
        ),
        case(
            "SHARD_END leases count like the others, as in KCL 2.x",
            vec![ended(l("a1", "a", Fresh)), ended(l("a2", "a", Fresh))],
            Nothing,
            AnyOf(1, vec!["a1", "a2"]),
        )
        .target(1),
        case(
            "holding more than the target: never steals from itself",
            vec![
                l("m1", ME, Fresh),
                l("m2", ME, Fresh),
                l("m3", ME, Fresh),
                l("a1", "a", Fresh),
            ],
            Nothing,
            Nothing,
        ),
    ]
}

#[test]
fn take_decisions() {
    let now = Instant::now() + Duration::from_secs(3_600);
    for (i, case) in cases().into_iter().enumerate() {
        let (leases, observations) = setup(&case.leases, now);
        // Several seeds: whichever leases are picked at random, the rules hold.
        for seed in 0..8 {
            let mut rng = StdRng::seed_from_u64(seed + 100 * i as u64);
            let decision =
                compute_leases_to_take(&leases, &observations, now, ME, &case.config, &mut rng);
            check(case.name, "take", &case.take, &decision.expired_to_take);
            check(case.name, "steal", &case.steal, &decision.to_steal);
            if let Some(target) = case.target {
                assert_eq!(decision.stats.target, target, "{}: target", case.name);
            }
            assert_eq!(decision.stats.total_leases, leases.len(), "{}", case.name);
            if !decision.to_steal.is_empty() {
                let from = decision.stats.steal_from.clone().expect("a victim");
                assert!(
                    decision.to_steal.iter().all(|key| leases
                        .iter()
                        .any(|l| &l.lease_key == key && l.lease_owner.as_deref() == Some(&from))),
                    "{}: stolen leases belong to {from}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn stats_report_the_java_metrics() {
    let now = Instant::now() + Duration::from_secs(3_600);
    let (leases, observations) = setup(
        &[
            l("a1", "a", Seen::Fresh),
            l("a2", "a", Seen::Fresh),
            l("b1", "b", Seen::Expired),
            l("m1", ME, Seen::Fresh),
        ],
        now,
    );
    let config = LeaseConfig::default().failover_time(FAILOVER);
    let decision = compute_leases_to_take(
        &leases,
        &observations,
        now,
        ME,
        &config,
        &mut StdRng::seed_from_u64(1),
    );
    let stats = decision.stats;
    assert_eq!(
        (stats.total_leases, stats.available_leases, stats.workers),
        (4, 1, 2)
    );
    assert_eq!((stats.target, stats.held, stats.needed), (2, 1, 1));
    assert_eq!(decision.expired_to_take, vec![ShardId::from("b1")]);
}

#[test]
fn the_outcome_depends_on_the_random_source_not_the_listing_order() {
    let now = Instant::now() + Duration::from_secs(3_600);
    let specs: Vec<L> = (0..20)
        .map(|i| {
            l(
                Box::leak(format!("s{i:02}").into_boxed_str()),
                "dead",
                Seen::Expired,
            )
        })
        .collect();
    let (leases, observations) = setup(&specs, now);
    let mut reversed = leases.clone();
    reversed.reverse();
    let config = LeaseConfig::default()
        .failover_time(FAILOVER)
        .max_leases_for_worker(5);
    let decide = |leases: &[Lease], seed| {
        compute_leases_to_take(
            leases,
            &observations,
            now,
            ME,
            &config,
            &mut StdRng::seed_from_u64(seed),
        )
    };
    assert_eq!(decide(&leases, 3), decide(&reversed, 3));
    // And different workers (seeds) spread over different leases.
    let picks: BTreeSet<Vec<ShardId>> = (0..10)
        .map(|seed| decide(&leases, seed).expired_to_take)
        .collect();
    assert!(picks.len() > 1);
}

#[test]
fn observations_follow_the_java_taker() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_secs(5);
    let t2 = t0 + Duration::from_secs(9);
    let lease = |key: &str, owner: Option<&str>, counter| {
        let mut lease = Lease::new(key.into(), Checkpoint::Latest);
        lease.lease_owner = owner.map(str::to_owned);
        lease.lease_counter = counter;
        lease
    };
    let mut observations = LeaseObservations::new();
    observations.update(
        &[
            lease("owned", Some("a"), 1),
            lease("unowned", None, 1),
            lease("gone", Some("a"), 1),
        ],
        t0,
    );
    let seen = |o: &LeaseObservations, key: &str| o.get(&ShardId::from(key)).unwrap();
    assert_eq!(seen(&observations, "owned").last_change, Some(t0));
    assert_eq!(
        seen(&observations, "unowned").last_change,
        None,
        "never renewed"
    );

    observations.update(
        &[lease("owned", Some("a"), 1), lease("unowned", None, 2)],
        t1,
    );
    assert_eq!(
        seen(&observations, "owned").last_change,
        Some(t0),
        "unchanged counter"
    );
    assert_eq!(
        seen(&observations, "unowned").last_change,
        Some(t1),
        "moved counter"
    );
    assert!(
        observations.get(&ShardId::from("gone")).is_none(),
        "deleted leases are forgotten"
    );
    assert_eq!(observations.len(), 2);

    observations.observe(&lease("owned", Some(ME), 2), t2);
    assert_eq!(
        seen(&observations, "owned"),
        Observation {
            counter: 2,
            last_change: Some(t2)
        }
    );
    assert_eq!(
        seen(&observations, "unowned").last_change,
        Some(t1),
        "others kept"
    );
}
