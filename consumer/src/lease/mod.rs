//! Leases: which worker processes which shard, and how far it got. KCL-compatible: the table,
//! its attributes and the rules are the Java KCL 2.x's, so a Java application's lease table is
//! adopted as it is, and the other way round.
//!
//! ```text
//!             list (Scan)                       take / renew / release / checkpoint
//!   lease table ───────────▶ LeaseObservations ──▶ compute_leases_to_take ──▶ LeaseStore
//!   (DynamoDB)                (counter changes on    (pure: leases, observations,  (conditional
//!       ▲                      this worker's clock)    now, worker, config, rng)     writes)
//!       └──────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! - [`Lease`], [`Checkpoint`]: the model and its DynamoDB item form ([`attribute`] names).
//! - [`LeaseStore`]: the table behind a trait, with [`DynamoLeaseStore`] (the official SDK) and
//!   [`InMemoryLeaseStore`] (same semantics, for tests). Every write is conditional on the lease
//!   counter; a refused condition is [`LeaseStoreError::ConditionFailed`].
//! - [`compute_leases_to_take`]: the taker's decision as a pure function; [`LeaseObservations`]
//!   keeps the counter timings it rests on.
//! - [`LeaseConfig`]: failover time, renew and take intervals, balancing limits.

mod config;
mod dynamo;
#[allow(clippy::module_inception)] // `lease::lease` is the lease model; the name says it best.
mod lease;
mod memory;
mod store;
mod taker;
mod write;

pub use config::{ConfigError, LeaseConfig};
pub use dynamo::DynamoLeaseStore;
pub use lease::{Checkpoint, HashKeyRange, InvalidCheckpoint, Item, Lease, LeaseError, attribute};
pub use memory::InMemoryLeaseStore;
pub use store::{BoxFuture, LeaseStore, LeaseStoreError, ListedLease, Result};
pub use taker::{LeaseObservations, Observation, TakeDecision, TakeStats, compute_leases_to_take};
