//! The units the pipeline moves: a user record waiting for its outcome ([`Member`]), and one
//! Kinesis record to put with the user records it carries ([`Entry`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use kinesis_aggregation::{
    AggregateView, Aggregator, KinesisRecord, SequenceNumber, ShardId, UserRecord,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::outcome::{Attempt, AttemptError, PutError, PutOutcome};

/// What a `put`'s channel carries. Kept to 16 bytes because there is one channel per outstanding
/// record: a success points at the outcome its Kinesis record shares with its other user records
/// (the handle builds the [`PutOutcome`]), and the rare error is boxed.
#[derive(Debug)]
pub(crate) enum Resolution {
    /// Put: the outcome shared by the record's Kinesis record, and the record's index in it.
    Placed {
        shared: Arc<SharedOutcome>,
        index: u32,
    },
    Failed(Box<PutError>),
}

/// The channel a `put` waits on.
pub(crate) type Reply = oneshot::Sender<Resolution>;

/// What every user record of one Kinesis record has in common once it is put.
#[derive(Debug)]
pub(crate) struct SharedOutcome {
    pub shard_id: ShardId,
    pub sequence_number: SequenceNumber,
    pub aggregated: bool,
    pub attempts: Arc<[Attempt]>,
}

impl Resolution {
    /// What the record's handle resolves to.
    pub fn into_result(self) -> Result<PutOutcome, PutError> {
        match self {
            Resolution::Placed { shared, index } => Ok(PutOutcome {
                shard_id: shared.shard_id.clone(),
                sequence_number: shared.sequence_number.clone(),
                sub_sequence_number: shared.aggregated.then_some(u64::from(index)),
                attempts: shared.attempts.clone(),
            }),
            Resolution::Failed(error) => Err(*error),
        }
    }
}

/// A user record on its way, once its data sits in an [`Entry`]'s Kinesis record. The data is not
/// kept twice: on failure the record is rebuilt from the entry. There is one per outstanding
/// record, so it holds only what differs between the records of one entry (the arrival time that
/// matters, the oldest, is the entry's).
#[derive(Debug)]
pub(crate) struct Member {
    pub reply: Reply,
    /// `put` time plus `RecordTtl`.
    pub expires: Instant,
    /// Bytes counted against `MaxOutstandingBytes`.
    pub size: u32,
    pub epoch: u64,
}

/// The data of an [`Entry`]: a Kinesis record, or an aggregate not encoded yet.
///
/// Sealing an aggregate (the MD5 of its body and the copy into one buffer) is the largest per-byte
/// cost of aggregation; the pipeline is one task, so it leaves that to the request task, which
/// seals its entries just before building the `PutRecords` request ([`Entry::seal`]).
#[derive(Debug)]
pub(crate) enum Payload {
    Sealed(KinesisRecord),
    Open {
        aggregator: Box<Aggregator>,
        /// Length of the first record's partition key: the aggregate's, which Kinesis bills.
        partition_key_len: usize,
    },
}

/// One Kinesis record to put, with the user records it carries, in order.
#[derive(Debug)]
pub(crate) struct Entry {
    pub payload: Payload,
    /// True when `record` is an aggregate (even of one record it is sent plain, so false then).
    pub aggregated: bool,
    /// The shard the map predicts; `None` without a shard map.
    pub predicted: Option<ShardId>,
    pub members: Vec<Member>,
    /// When the oldest record arrived.
    pub oldest: Instant,
    /// The earliest of the members' `expires`.
    pub earliest_expiry: Instant,
    /// When the entry must be sent at the latest: its oldest record's arrival plus
    /// `RecordMaxBufferedTime`.
    pub send_by: Instant,
    /// Not sent again before this (backoff).
    pub not_before: Instant,
    pub attempts: Vec<Attempt>,
    /// When the last attempt ended (or the oldest record arrived): the origin of the next
    /// attempt's `delay`.
    pub last_event: Instant,
    pub backoff: Option<ExponentialBackoff>,
}

impl Entry {
    /// An entry of `members`, the oldest of which arrived at `oldest`.
    pub fn new(
        payload: Payload,
        aggregated: bool,
        predicted: Option<ShardId>,
        members: Vec<Member>,
        oldest: Instant,
        max_buffered: Duration,
    ) -> Self {
        let earliest_expiry = members
            .iter()
            .map(|m| m.expires)
            .min()
            .expect("an entry has members");
        Entry {
            payload,
            aggregated,
            predicted,
            members,
            oldest,
            earliest_expiry,
            send_by: oldest + max_buffered,
            not_before: oldest,
            attempts: Vec::new(),
            last_event: oldest,
            backoff: None,
        }
    }

    /// Bytes this entry counts against `CollectionMaxSize` and the shard's byte rate.
    pub fn billed_size(&self) -> usize {
        match &self.payload {
            Payload::Sealed(record) => record.billed_size(),
            Payload::Open {
                aggregator,
                partition_key_len,
            } => partition_key_len + aggregator.encoded_size(),
        }
    }

    /// Encodes the aggregate if it is not yet, and returns the Kinesis record.
    pub fn seal(&mut self) -> &KinesisRecord {
        if let Payload::Open { aggregator, .. } = &mut self.payload {
            let record = aggregator.finish().expect("an entry has members");
            self.payload = Payload::Sealed(record);
        }
        match &self.payload {
            Payload::Sealed(record) => record,
            Payload::Open { .. } => unreachable!("sealed above"),
        }
    }

    /// The user records this entry carries, rebuilt from the Kinesis record.
    pub fn user_records(&mut self) -> Vec<UserRecord> {
        let aggregated = self.aggregated;
        let record = self.seal();
        if !aggregated {
            return vec![plain_user_record(record)];
        }
        let view = AggregateView::parse(&record.data).expect("our own aggregates parse");
        view.records()
            .map(|sub| {
                let record = UserRecord::new(sub.partition_key, record.data.slice_ref(sub.data))
                    .expect("records were validated on put");
                match sub.explicit_hash_key {
                    Some(key) => record
                        .with_explicit_hash_key(key)
                        .expect("validated on put"),
                    None => record,
                }
            })
            .collect()
    }

    /// Records the start of an attempt; returns its index.
    pub fn start_attempt(&mut self, now: Instant, wall: SystemTime) -> usize {
        self.attempts.push(Attempt {
            started: wall,
            delay: now.saturating_duration_since(self.last_event),
            duration: Duration::ZERO,
            error: None,
        });
        self.attempts.len() - 1
    }

    /// Records the end of the last attempt.
    pub fn end_attempt(&mut self, now: Instant, started: Instant, error: Option<AttemptError>) {
        if let Some(attempt) = self.attempts.last_mut() {
            attempt.duration = now.saturating_duration_since(started);
            attempt.error = error;
        }
        self.last_event = now;
    }

    /// The delay before the next retry, from a jittered exponential backoff.
    pub fn next_backoff(&mut self, min: Duration, max: Duration) -> Duration {
        self.backoff
            .get_or_insert_with(|| {
                ExponentialBuilder::new()
                    .with_min_delay(min)
                    .with_max_delay(max)
                    .with_jitter()
                    .without_max_times()
                    .build()
            })
            .next()
            .unwrap_or(max)
    }

    /// Resolves every member as put.
    pub fn succeed(self, shard_id: ShardId, sequence_number: SequenceNumber, ledger: &mut Ledger) {
        // One outcome for every record of the entry: they were all sent together.
        let shared = Arc::new(SharedOutcome {
            shard_id,
            sequence_number,
            aggregated: self.aggregated,
            attempts: Arc::from(self.attempts),
        });
        for (index, member) in self.members.into_iter().enumerate() {
            let placed = Resolution::Placed {
                shared: shared.clone(),
                index: index as u32,
            };
            ledger.resolve(member, placed);
        }
    }

    /// Splits the members into those still alive at `now` and those expired; the expired ones are
    /// failed with [`PutError::Expired`] and returned with the dead ones. The survivors are rebuilt
    /// into a new entry (or `None` when none is left). `aggregation_max_size` bounds the rebuilt
    /// aggregate, which always fits: a subset of a valid aggregate is smaller.
    pub fn drop_expired(
        mut self,
        now: Instant,
        aggregation_max_size: usize,
    ) -> (Option<Entry>, Expired) {
        if self.earliest_expiry > now {
            return (Some(self), Expired::default());
        }
        let records = self.user_records();
        let Entry {
            aggregated,
            predicted,
            members,
            oldest,
            attempts,
            last_event,
            backoff,
            send_by,
            not_before,
            ..
        } = self;
        let mut alive = Vec::new();
        let mut dead = Vec::new();
        for (member, record) in members.into_iter().zip(records) {
            if member.expires > now {
                alive.push((member, record));
            } else {
                dead.push((member, record));
            }
        }
        let dead = Expired {
            members: dead,
            attempts: attempts.clone(),
        };
        if alive.is_empty() {
            return (None, dead);
        }
        let (members, records): (Vec<Member>, Vec<UserRecord>) = alive.into_iter().unzip();
        let earliest_expiry = members
            .iter()
            .map(|m| m.expires)
            .min()
            .expect("some are alive");
        let (record, aggregated) = if aggregated {
            let mut aggregator =
                Aggregator::new(aggregation_max_size, u64::MAX).expect("valid limits");
            for r in &records {
                aggregator
                    .try_add(r)
                    .expect("a subset of an aggregate fits");
            }
            let sole = records.len() == 1;
            (aggregator.finish().expect("not empty"), !sole)
        } else {
            (plain_kinesis_record(&records[0]), false)
        };
        let entry = Entry {
            payload: Payload::Sealed(record),
            aggregated,
            predicted,
            members,
            oldest,
            earliest_expiry,
            send_by,
            not_before,
            attempts,
            last_event,
            backoff,
        };
        (Some(entry), dead)
    }
}

/// Members that expired, with their records rebuilt and the attempts made for them.
#[derive(Debug, Default)]
pub(crate) struct Expired {
    pub members: Vec<(Member, UserRecord)>,
    pub attempts: Vec<Attempt>,
}

/// Accounts for resolved records: what to give back to the backpressure semaphores, and which
/// `flush` epochs still have records outstanding.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub released_records: usize,
    pub released_bytes: usize,
    /// Unresolved records per flush epoch, oldest first (epochs only grow, and few are open).
    pub outstanding_by_epoch: std::collections::VecDeque<(u64, usize)>,
}

impl Ledger {
    pub fn admit(&mut self, epoch: u64, records: usize) {
        match self.outstanding_by_epoch.back_mut() {
            Some((last, count)) if *last == epoch => *count += records,
            _ => self.outstanding_by_epoch.push_back((epoch, records)),
        }
    }

    /// Delivers `result` to the member's `put` handle and accounts for it.
    pub fn resolve(&mut self, member: Member, result: Resolution) {
        // The caller may have dropped its handle; the outcome stands all the same.
        let _ = member.reply.send(result);
        self.released_records += 1;
        self.released_bytes += member.size as usize;
        if let Some(i) = self
            .outstanding_by_epoch
            .iter()
            .rposition(|(e, _)| *e == member.epoch)
        {
            self.outstanding_by_epoch[i].1 -= 1;
            if self.outstanding_by_epoch[i].1 == 0 {
                self.outstanding_by_epoch.remove(i);
            }
        }
    }

    /// Whether every record admitted in `epoch` or before is resolved.
    pub fn settled_through(&self, epoch: u64) -> bool {
        self.outstanding_by_epoch
            .front()
            .is_none_or(|(oldest, _)| *oldest > epoch)
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding_by_epoch.iter().map(|(_, n)| n).sum()
    }
}

/// A user record sent on its own.
pub(crate) fn plain_kinesis_record(record: &UserRecord) -> KinesisRecord {
    KinesisRecord {
        partition_key: record.partition_key().to_owned(),
        explicit_hash_key: record.explicit_hash_key().map(|k| k.to_string()),
        data: record.data().clone(),
    }
}

fn plain_user_record(record: &KinesisRecord) -> UserRecord {
    let user = UserRecord::new(record.partition_key.as_str(), record.data.clone())
        .expect("validated on put");
    match &record.explicit_hash_key {
        Some(key) => user.with_explicit_hash_key(key).expect("validated on put"),
        None => user,
    }
}

/// Shared, cheaply cloned stream name for labels and requests.
pub(crate) type StreamName = Arc<str>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolution_stays_small() {
        // One waits in a channel per outstanding record (the memory bound's per-record cost).
        assert_eq!(std::mem::size_of::<Option<Resolution>>(), 16);
    }
}
