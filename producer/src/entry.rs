//! The units the pipeline moves: a user record waiting for its outcome ([`Member`]), and one
//! Kinesis record to put with the user records it carries ([`Entry`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use kinesis_aggregation::{
    AggregateView, Aggregator, HashKey, KinesisRecord, SequenceNumber, ShardId, UnsealedRecord,
    UserRecord,
};
use tokio::time::Instant;

use crate::completion::Slot;
use crate::outcome::{Attempt, AttemptError, PutError, PutOutcome};
use crate::shard_map::ShardMap;

/// What a record's slot holds once it is resolved. Kept to 16 bytes because there is one per
/// outstanding record: a success points at the outcome its Kinesis record shares with its other
/// user records (the handle builds the [`PutOutcome`]), and the rare error is boxed.
#[derive(Debug)]
pub(crate) enum Resolution {
    /// Put: the outcome shared by the record's Kinesis record, and the record's index in it.
    Placed {
        shared: Arc<SharedOutcome>,
        index: u32,
    },
    Failed(Box<PutError>),
}

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
/// record, so it holds only what differs between the records of one entry: where its outcome goes,
/// and its expiry relative to the entry's `oldest`, kept in the slot (the flush epoch and the
/// arrival time that matters, the oldest, are the entry's; its size is computed again from the
/// record when needed).
#[derive(Debug)]
pub(crate) struct Member {
    pub slot: Slot,
}

impl Member {
    /// The member of `slot` for a record that expires at `expires`, in an entry whose oldest
    /// record arrived at `oldest`. The expiry is kept in whole milliseconds from `oldest`,
    /// rounded up (a record never expires early): 0 when it came earlier, saturating after 49
    /// days (`RecordTtl` is validated below that).
    pub fn new(mut slot: Slot, expires: Instant, oldest: Instant) -> Self {
        let after = expires
            .saturating_duration_since(oldest)
            .as_nanos()
            .div_ceil(1_000_000);
        slot.expires_after = u32::try_from(after).unwrap_or(u32::MAX);
        Member { slot }
    }

    pub fn expires(&self, oldest: Instant) -> Instant {
        oldest + Duration::from_millis(u64::from(self.slot.expires_after))
    }
}

/// The data of an [`Entry`]: a Kinesis record, or an aggregate still without its MD5 trailer.
///
/// The digest is the largest per-byte cost of aggregation; the pipeline is one task, so it leaves
/// that to the request task, which seals its entries just before building the `PutRecords`
/// request ([`Entry::seal`]).
#[derive(Debug)]
pub(crate) enum Payload {
    Sealed(KinesisRecord),
    Unsealed(UnsealedRecord),
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
    /// The `flush` epoch its records were put in (a flush finishes every aggregate, so an entry
    /// never spans two).
    pub epoch: u64,
    /// Bytes its records count against `MaxOutstandingBytes`.
    pub size: usize,
    /// When the oldest record arrived.
    pub oldest: Instant,
    /// The earliest of the members' expiries.
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
    /// Where an aggregate went that the map did not predict (its last attempt): kept while the
    /// pipeline waits for a map that tells whether that shard owns all its records.
    pub landed: Option<(ShardId, SequenceNumber)>,
}

/// What an [`Entry`] is made of, besides its timing.
pub(crate) struct Parts {
    pub payload: Payload,
    pub aggregated: bool,
    pub predicted: Option<ShardId>,
    pub members: Vec<Member>,
    pub epoch: u64,
    pub size: usize,
}

impl Entry {
    /// An entry of `parts`, the oldest record of which arrived at `oldest`.
    pub fn new(parts: Parts, oldest: Instant, max_buffered: Duration) -> Self {
        let Parts {
            payload,
            aggregated,
            predicted,
            members,
            epoch,
            size,
        } = parts;
        let earliest_expiry = earliest_expiry(&members, oldest);
        Entry {
            payload,
            aggregated,
            predicted,
            members,
            epoch,
            size,
            oldest,
            earliest_expiry,
            send_by: oldest + max_buffered,
            not_before: oldest,
            attempts: Vec::new(),
            last_event: oldest,
            backoff: None,
            landed: None,
        }
    }

    /// Marks the last attempt as a success after all.
    pub fn clear_last_error(&mut self) {
        if let Some(attempt) = self.attempts.last_mut() {
            attempt.error = None;
        }
    }

    /// Bytes this entry counts against `CollectionMaxSize` and the shard's byte rate.
    pub fn billed_size(&self) -> usize {
        match &self.payload {
            Payload::Sealed(record) => record.billed_size(),
            Payload::Unsealed(record) => record.billed_size(),
        }
    }

    /// Appends the aggregate's digest if it has none yet, and returns the Kinesis record.
    pub fn seal(&mut self) -> &KinesisRecord {
        if let Payload::Unsealed(_) = &self.payload {
            let placeholder = Payload::Sealed(KinesisRecord::new(String::new(), Bytes::new()));
            let Payload::Unsealed(record) = std::mem::replace(&mut self.payload, placeholder)
            else {
                unreachable!("matched above")
            };
            self.payload = Payload::Sealed(record.seal());
        }
        match &self.payload {
            Payload::Sealed(record) => record,
            Payload::Unsealed(_) => unreachable!("sealed above"),
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
        ledger.release(self.epoch, self.members.len(), self.size);
        // One outcome for every record of the entry: they were all sent together.
        let shared = Arc::new(SharedOutcome {
            shard_id,
            sequence_number,
            aggregated: self.aggregated,
            attempts: Arc::from(self.attempts),
        });
        for (index, member) in self.members.into_iter().enumerate() {
            member.slot.resolve(Resolution::Placed {
                shared: shared.clone(),
                index: index as u32,
            });
        }
    }

    /// Fails every member with the error `fail` makes of its record (given back) and the attempts.
    pub fn fail(
        mut self,
        ledger: &mut Ledger,
        mut fail: impl FnMut(Box<UserRecord>, Arc<[Attempt]>) -> PutError,
    ) {
        ledger.release(self.epoch, self.members.len(), self.size);
        let records = self.user_records();
        // One list for all the records of the entry: a copy each held 1.4 KB per failed record.
        let attempts: Arc<[Attempt]> = Arc::from(std::mem::take(&mut self.attempts));
        for (member, record) in self.members.into_iter().zip(records) {
            let error = fail(Box::new(record), attempts.clone());
            member.slot.resolve(Resolution::Failed(Box::new(error)));
        }
    }

    /// Splits the members into those still alive at `now` and those expired; the expired ones are
    /// returned with their records rebuilt, for the caller to fail with [`PutError::Expired`]. The
    /// survivors are rebuilt into a new entry (or `None` when none is left).
    /// `aggregation_max_size` bounds the rebuilt aggregate, which always fits: a subset of a valid
    /// aggregate is smaller.
    pub fn drop_expired(
        mut self,
        now: Instant,
        aggregation_max_size: usize,
    ) -> (Option<Entry>, Expired) {
        if self.earliest_expiry > now {
            return (Some(self), Expired::default());
        }
        let records = self.user_records();
        let oldest = self.oldest;
        let mut alive = Vec::new();
        let mut dead = Vec::new();
        for (member, record) in std::mem::take(&mut self.members).into_iter().zip(records) {
            if member.expires(oldest) > now {
                alive.push((member, record));
            } else {
                dead.push((member, record));
            }
        }
        let dead = Expired {
            members: dead,
            attempts: self.attempts.clone(),
            epoch: self.epoch,
        };
        if alive.is_empty() {
            return (None, dead);
        }
        let predicted = self.predicted.take();
        let backoff = self.backoff.take();
        let mut entry = self.rebuilt(predicted, alive, aggregation_max_size);
        entry.backoff = backoff;
        (Some(entry), dead)
    }

    /// Splits the entry by the shard `map` gives each of its user records: one entry per shard,
    /// its records in their order here, each with the attempts made so far and due at once (a
    /// record that went to the wrong shard waited for the map, not for a backoff).
    ///
    /// After a split or merge an aggregate built for a closed shard may hold records of two
    /// children; wherever it lands, a KCL drops it whole (a member outside the shard's range), so
    /// its records go again, grouped anew.
    pub fn split_by(mut self, map: &ShardMap, aggregation_max_size: usize) -> Vec<Entry> {
        let records = self.user_records();
        let members = std::mem::take(&mut self.members);
        let mut groups: Vec<(ShardId, Vec<(Member, UserRecord)>)> = Vec::new();
        for (member, record) in members.into_iter().zip(records) {
            let shard = map.shard_for(record.hash_key());
            match groups.iter_mut().find(|(s, _)| s == shard) {
                Some((_, group)) => group.push((member, record)),
                None => groups.push((shard.clone(), vec![(member, record)])),
            }
        }
        self.not_before = self.oldest;
        groups
            .into_iter()
            .map(|(shard, group)| self.rebuilt(Some(shard), group, aggregation_max_size))
            .collect()
    }

    /// An entry of `records` (a subset of this one's, in order) with this entry's flush epoch,
    /// timing and attempts; aggregated when this one was and more than one record is left.
    fn rebuilt(
        &self,
        predicted: Option<ShardId>,
        records: Vec<(Member, UserRecord)>,
        aggregation_max_size: usize,
    ) -> Entry {
        let (members, records): (Vec<Member>, Vec<UserRecord>) = records.into_iter().unzip();
        let size = records.iter().map(|r| record_size(r) as usize).sum();
        let (record, aggregated) = if self.aggregated && records.len() > 1 {
            let mut aggregator =
                Aggregator::new(aggregation_max_size, u64::MAX).expect("valid limits");
            for r in &records {
                aggregator
                    .try_add(r)
                    .expect("a subset of an aggregate fits");
            }
            (aggregator.finish().expect("not empty"), true)
        } else {
            (plain_kinesis_record(&records[0]), false)
        };
        Entry {
            payload: Payload::Sealed(record),
            aggregated,
            predicted,
            earliest_expiry: earliest_expiry(&members, self.oldest),
            members,
            epoch: self.epoch,
            size,
            oldest: self.oldest,
            send_by: self.send_by,
            not_before: self.not_before,
            attempts: self.attempts.clone(),
            last_event: self.last_event,
            backoff: None,
            landed: None,
        }
    }

    /// Whether every user record's hash key is in `start..=end`: where a KCL reading the shard of
    /// that range keeps this Kinesis record.
    pub fn fits_range(&mut self, start: HashKey, end: HashKey) -> bool {
        let aggregated = self.aggregated;
        let record = self.seal();
        if !aggregated {
            return true;
        }
        let view = AggregateView::parse(&record.data).expect("our own aggregates parse");
        view.records().all(|sub| {
            sub.hash_key()
                .is_some_and(|key| (start..=end).contains(&key))
        })
    }
}

fn earliest_expiry(members: &[Member], oldest: Instant) -> Instant {
    let after = members
        .iter()
        .map(|m| m.slot.expires_after)
        .min()
        .expect("an entry has members");
    oldest + Duration::from_millis(u64::from(after))
}

/// Members that expired, with their records rebuilt and the attempts made for them.
#[derive(Debug, Default)]
pub(crate) struct Expired {
    pub members: Vec<(Member, UserRecord)>,
    pub attempts: Vec<Attempt>,
    pub epoch: u64,
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

    /// Accounts for `records` resolved records of `epoch` holding `bytes`.
    pub fn release(&mut self, epoch: u64, records: usize, bytes: usize) {
        self.released_records += records;
        self.released_bytes += bytes;
        if let Some(i) = self
            .outstanding_by_epoch
            .iter()
            .rposition(|(e, _)| *e == epoch)
        {
            self.outstanding_by_epoch[i].1 -= records;
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

/// Bytes a record counts against `MaxOutstandingBytes`: data plus keys.
pub(crate) fn record_size(record: &UserRecord) -> u32 {
    let keys =
        record.partition_key().len() + record.explicit_hash_key().map_or(0, |k| k.as_str().len());
    (record.data().len() + keys) as u32
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
    #[cfg(target_pointer_width = "64")]
    fn a_resolution_stays_small() {
        // One waits in a slot per outstanding record (the memory bound's per-record cost).
        assert_eq!(std::mem::size_of::<Option<Resolution>>(), 16);
        assert_eq!(std::mem::size_of::<Member>(), 16);
    }

    /// Three records aggregated (two with explicit hash keys), two of which expire while the entry
    /// waits: the sizes released for the expired records and the survivor's entry add up to what
    /// was taken at `put`, and the ledger ends settled.
    #[tokio::test]
    async fn partial_expiry_accounts_for_every_byte() {
        let records = [
            UserRecord::new("first", vec![1u8; 40]).unwrap(),
            UserRecord::new("second", vec![2u8; 7])
                .unwrap()
                .with_explicit_hash_key("340282366920938463463374607431768211455")
                .unwrap(),
            UserRecord::new("third", vec![3u8; 300])
                .unwrap()
                .with_explicit_hash_key("12345")
                .unwrap(),
        ];
        let taken: usize = records.iter().map(|r| record_size(r) as usize).sum();
        let mut aggregator = Aggregator::default();
        for r in &records {
            aggregator.try_add(r).unwrap();
        }
        let oldest = Instant::now();
        let ttl = [10, 60_000, 10].map(Duration::from_millis);
        let mut handles = Vec::new();
        let members = ttl
            .iter()
            .map(|ttl| {
                let (slot, handle) = crate::completion::slot();
                handles.push(handle);
                Member::new(slot, oldest + *ttl, oldest)
            })
            .collect();
        let mut ledger = Ledger::default();
        ledger.admit(7, 3);
        let entry = Entry::new(
            Parts {
                payload: Payload::Unsealed(aggregator.finish_unsealed().unwrap()),
                aggregated: true,
                predicted: None,
                members,
                epoch: 7,
                size: taken,
            },
            oldest,
            Duration::from_millis(100),
        );
        assert_eq!(entry.earliest_expiry, oldest + Duration::from_millis(10));

        let (alive, dead) = entry.drop_expired(oldest + Duration::from_secs(1), 51_200);
        let alive = alive.expect("the second record lives");
        assert_eq!(dead.epoch, 7);
        let dead_records: Vec<&UserRecord> = dead.members.iter().map(|(_, r)| r).collect();
        assert_eq!(dead_records, [&records[0], &records[2]]);
        for (_, record) in &dead.members {
            ledger.release(dead.epoch, 1, record_size(record) as usize);
        }
        // The survivor goes on alone, as the plain record it was.
        assert!(!alive.aggregated);
        assert_eq!(alive.members.len(), 1);
        assert_eq!(alive.size, record_size(&records[1]) as usize);
        assert_eq!(alive.earliest_expiry, oldest + Duration::from_secs(60));
        let mut alive = alive;
        assert_eq!(alive.user_records(), [records[1].clone()]);
        alive.succeed(
            ShardId::from("shardId-000000000000"),
            SequenceNumber::new("1").unwrap(),
            &mut ledger,
        );
        assert_eq!(ledger.released_bytes, taken);
        assert_eq!(ledger.released_records, 3);
        assert!(ledger.settled_through(7));
        assert_eq!(ledger.outstanding(), 0);
        drop(dead);
        let outcomes: Vec<_> = await_all(handles).await;
        // The expired ones were dropped unresolved here (the pipeline resolves them as Expired).
        assert!(matches!(outcomes[0], Err(PutError::Aborted { .. })));
        assert_eq!(outcomes[1].as_ref().unwrap().sub_sequence_number, None);
    }

    async fn await_all(handles: Vec<crate::PutHandle>) -> Vec<Result<PutOutcome, PutError>> {
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await);
        }
        out
    }
}
