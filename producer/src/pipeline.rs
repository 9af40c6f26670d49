//! The pipeline task: the one owner of the producer's buffers. It aggregates per predicted shard,
//! collects Kinesis records into `PutRecords` requests under the per-shard rate limits, sends them,
//! and retries or resolves every entry from the responses.

use std::collections::{HashMap, VecDeque};

use foldhash::fast::RandomState;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::put_records::{PutRecordsError, PutRecordsOutput};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use kinesis_aggregation::{Aggregator, HashKey, SequenceNumber, ShardId, UserRecord};
use kinesis_sdk_support::{
    CREDENTIALS_ERROR_CODE, MESSAGE_LIMIT, error_text, is_credentials_error, truncate,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::circuit::{Allowance, RequestCircuit};
use crate::completion::Slot;
use crate::config::ProducerConfig;
use crate::entry::{
    Entry, Expired, Ledger, Member, Parts, Payload, Resolution, StreamName, plain_kinesis_record,
    record_size,
};
use crate::limiter::ShardLimiter;
use crate::metrics as m;
use crate::outcome::{Attempt, AttemptError, ErrorClass, PutError, classify};
use crate::shard_map::ShardMap;
use crate::shards;

/// What the producer's handles send the pipeline.
pub(crate) enum Command {
    Put(Incoming),
    /// Send everything now; answer when every record put before is resolved.
    Flush(oneshot::Sender<()>),
    /// Flush, then stop.
    Shutdown,
}

/// A validated user record entering the pipeline.
pub(crate) struct Incoming {
    pub record: UserRecord,
    pub hash_key: HashKey,
    pub arrived: Instant,
    pub size: u32,
    pub slot: Slot,
}

/// The semaphores `put` waits on; the pipeline gives permits back as records resolve.
pub(crate) struct Permits {
    pub records: Semaphore,
    pub bytes: Semaphore,
}

type PutRecordsResult = Result<PutRecordsOutput, SdkError<PutRecordsError>>;

/// A request's answer, with the entries it carried: they travel with the request task, which
/// seals their aggregates.
type Response = (u64, Vec<Entry>, PutRecordsResult);

/// The aggregate of one predicted shard being filled, and the members it holds.
struct ShardBuffer {
    /// Kept from one aggregate to the next, with its buffers' capacity.
    aggregator: Aggregator,
    members: Vec<Member>,
    /// When the pipeline took the aggregate's first record.
    first_arrived: Option<Instant>,
    /// The flush epoch of its records.
    epoch: u64,
    /// Bytes its records count against `MaxOutstandingBytes`.
    size: usize,
}

/// Entries waiting to be sent to one shard.
struct ShardQueue {
    /// The shard's hash-key range in the map the queue was made with (the whole space for the
    /// queue of records put before any map was listed).
    range: (HashKey, HashKey),
    /// Entries of this shard parked until a map knows where they landed ([`Pipeline::parked`]):
    /// the shard is closed, so nothing more goes to it.
    parked: usize,
    /// Failed entries waiting for their backoff; sent before `fresh` ones.
    retries: VecDeque<Entry>,
    fresh: VecDeque<Entry>,
    limiter: Option<ShardLimiter>,
    /// Until when the limiter said no.
    limited_until: Option<Instant>,
    in_flight: usize,
}

type ShardKey = Option<ShardId>;

pub(crate) struct Pipeline {
    config: ProducerConfig,
    stream: StreamName,
    put_client: aws_sdk_kinesis::Client,
    list_client: aws_sdk_kinesis::Client,
    commands: mpsc::Receiver<Command>,
    permits: Arc<Permits>,
    map: Option<Arc<ShardMap>>,
    map_refreshing: bool,
    /// Backoff between failed shard-map listings (1 s doubling to 30 s, as the KPL).
    map_backoff: Option<ExponentialBackoff>,
    /// Aggregates that landed on a shard the map did not predict, in the order their answers came,
    /// waiting for a map that knows the shard they went to: their records go again, grouped by
    /// that map ([`Entry::split_by`]).
    parked: Vec<Entry>,
    next_map_refresh: Instant,
    last_map_request: Option<Instant>,
    map_tx: mpsc::UnboundedSender<Option<ShardMap>>,
    map_rx: mpsc::UnboundedReceiver<Option<ShardMap>>,
    /// Aggregates per shard of the current map (aggregation needs a map).
    buffers: HashMap<ShardId, ShardBuffer, RandomState>,
    queues: HashMap<ShardKey, ShardQueue, RandomState>,
    queued_records: usize,
    queued_bytes: usize,
    /// Requests in flight, with when each was sent and its billed bytes.
    in_flight: HashMap<u64, (Instant, usize)>,
    /// The billed bytes of the requests in flight (bounded by `MaxInFlightBytes`).
    in_flight_bytes: usize,
    next_request: u64,
    responses_tx: mpsc::UnboundedSender<Response>,
    responses_rx: mpsc::UnboundedReceiver<Response>,
    ledger: Ledger,
    epoch: u64,
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
    closing: bool,
    /// Until the command channel is closed and drained: after `close`, a put that had already
    /// reserved its place may still send (tokio lets an outstanding permit send), and
    /// `recv` ends only once every such put has arrived.
    commands_open: bool,
    /// Whether the last request failed for want of credentials: logged once per outage, not per
    /// request or record.
    credentials_failing: bool,
    /// The retry budget of whole-request failures, shared by every shard ([`crate::circuit`]).
    circuit: RequestCircuit,
    /// No queued entry expires before this (a lower bound: entries sent since may have set it);
    /// see [`Pipeline::expire_queued`].
    next_queued_expiry: Instant,
}

/// Messages handled per wake-up before the pipeline looks at its timers and sends.
pub(crate) const BATCH: usize = 1024;
/// The shortest gap between two shard-map refreshes caused by unexpected shards.
const MIN_MAP_REFRESH_GAP: Duration = Duration::from_secs(1);
/// The backoff after a failed shard-map listing: the KPL's 1 s doubling to 30 s.
const MAP_RETRY_MIN: Duration = Duration::from_secs(1);
const MAP_RETRY_MAX: Duration = Duration::from_secs(30);
/// Further than any timer the pipeline sets.
const FAR: Duration = Duration::from_secs(3600);
/// The least time between two sweeps of the queues for expired records (how late a record may
/// expire while nothing can be sent).
const EXPIRY_SWEEP_GAP: Duration = Duration::from_millis(50);
/// The error code of an attempt whose aggregate went to an unexpected shard (the KPL's "Wrong
/// Shard").
pub(crate) const WRONG_SHARD_CODE: &str = "WrongShard";

/// Where [`Pipeline::enqueue_at`] puts an entry in its shard's queue.
enum Place {
    Fresh,
    Retry,
    /// Ahead of everything: entries moved from a closed shard's queue.
    First,
}

impl Pipeline {
    pub fn new(
        config: ProducerConfig,
        stream: StreamName,
        put_client: aws_sdk_kinesis::Client,
        list_client: aws_sdk_kinesis::Client,
        commands: mpsc::Receiver<Command>,
        permits: Arc<Permits>,
        map: Option<ShardMap>,
    ) -> Self {
        let (map_tx, map_rx) = mpsc::unbounded_channel();
        let (responses_tx, responses_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        Pipeline {
            // Without a map, list again at once (then with backoff).
            next_map_refresh: if map.is_some() {
                now + config.shard_map_refresh_interval
            } else {
                now
            },
            config,
            stream,
            put_client,
            list_client,
            commands,
            permits,
            map: map.map(Arc::new),
            map_refreshing: false,
            map_backoff: None,
            parked: Vec::new(),
            last_map_request: None,
            map_tx,
            map_rx,
            buffers: HashMap::default(),
            queues: HashMap::default(),
            queued_records: 0,
            queued_bytes: 0,
            in_flight: HashMap::new(),
            in_flight_bytes: 0,
            next_request: 0,
            responses_tx,
            responses_rx,
            ledger: Ledger::default(),
            epoch: 0,
            flush_waiters: Vec::new(),
            closing: false,
            commands_open: true,
            credentials_failing: false,
            circuit: RequestCircuit::new(),
            next_queued_expiry: now + FAR,
        }
    }

    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let wake = self.next_wakeup(Instant::now());
            tokio::select! {
                received = self.commands.recv_many(&mut batch, BATCH), if self.commands_open => {
                    if received == 0 {
                        // Every producer handle is gone, or the channel is closed and every put
                        // it accepted has arrived: deliver what is buffered, then stop.
                        self.commands_open = false;
                        self.start_closing();
                    }
                    let puts = batch.iter().filter(|c| matches!(c, Command::Put(_))).count();
                    if puts > 0 {
                        metrics::counter!(m::USER_RECORDS_RECEIVED, "stream" => self.stream.to_string())
                            .increment(puts as u64);
                    }
                    let now = Instant::now();
                    for command in batch.drain(..) {
                        self.handle(command, now);
                    }
                }
                Some((id, entries, result)) = self.responses_rx.recv() => self.handle_response(id, entries, result),
                Some(map) = self.map_rx.recv() => self.handle_map(map),
                () = sleep_until(wake) => {}
            }
            while let Ok((id, entries, result)) = self.responses_rx.try_recv() {
                self.handle_response(id, entries, result);
            }
            let now = Instant::now();
            self.expire_parked(now);
            self.expire_queued(now);
            self.flush_due_buffers(now);
            self.refresh_map_if_due(now);
            self.dispatch(now);
            self.settle();
            if self.closing
                && !self.commands_open
                && self.ledger.outstanding() == 0
                && self.in_flight.is_empty()
            {
                return;
            }
        }
    }

    fn handle(&mut self, command: Command, now: Instant) {
        match command {
            Command::Put(incoming) => self.admit(incoming, now),
            Command::Flush(done) => {
                self.flush_waiters.push((self.epoch, done));
                self.epoch += 1;
                self.finish_all_buffers();
            }
            Command::Shutdown => self.start_closing(),
        }
    }

    fn start_closing(&mut self) {
        if self.closing {
            return;
        }
        self.closing = true;
        // Puts already in the channel were accepted: take them. Later sends fail (Closed).
        self.commands.close();
        let now = Instant::now();
        while let Ok(command) = self.commands.try_recv() {
            self.handle(command, now);
        }
        self.finish_all_buffers();
    }

    /// Whether everything queued should go out now rather than wait to fill a request.
    fn flushing(&self) -> bool {
        self.closing || !self.flush_waiters.is_empty()
    }

    /// Takes a record into its shard's aggregate. `RecordMaxBufferedTime` counts from `now`, when
    /// the pipeline takes the record: time spent waiting for a saturated pipeline is not time
    /// to send sooner, and counting it would flush every aggregate nearly empty exactly when the
    /// pipeline can least afford it. `RecordTtl` counts from `put`.
    fn admit(&mut self, incoming: Incoming, now: Instant) {
        let Incoming {
            record,
            hash_key,
            arrived,
            size,
            slot,
        } = incoming;
        self.ledger.admit(self.epoch, 1);
        let expires = arrived + self.config.record_ttl;
        // Without a shard map, records cannot be grouped by shard: they go on their own, within one
        // shard's rate limits (the queue of `None`), until a map is listed.
        let Some(map) = self
            .map
            .as_ref()
            .filter(|_| self.config.aggregation_enabled)
        else {
            let shard = self.map.as_ref().map(|map| map.shard_for(hash_key).clone());
            let parts = Parts {
                payload: Payload::Sealed(plain_kinesis_record(&record)),
                aggregated: false,
                predicted: shard.clone(),
                members: vec![Member::new(slot, expires, now)],
                epoch: self.epoch,
                size: size as usize,
            };
            let entry = Entry::new(parts, now, self.config.record_max_buffered_time);
            self.enqueue(shard, entry, false);
            return;
        };
        let shard = map.shard_for(hash_key);
        let config = &self.config;
        if !self.buffers.contains_key(shard) {
            self.buffers.insert(
                shard.clone(),
                ShardBuffer {
                    aggregator: new_aggregator(config),
                    members: Vec::new(),
                    first_arrived: None,
                    epoch: self.epoch,
                    size: 0,
                },
            );
        }
        let buffer = self.buffers.get_mut(shard).expect("inserted above");
        let mut full = None;
        if buffer.aggregator.try_add(&record).is_err() {
            full = finish_buffer(buffer, Some(shard.clone()), config);
            buffer
                .aggregator
                .try_add(&record)
                .expect("an empty aggregator takes any valid record");
        }
        let oldest = *buffer.first_arrived.get_or_insert(now);
        if buffer.members.is_empty() {
            buffer.epoch = self.epoch;
        }
        buffer.size += size as usize;
        buffer.members.push(Member::new(slot, expires, oldest));
        if let Some(entry) = full {
            let shard = entry.predicted.clone();
            self.enqueue(shard, entry, false);
        }
    }

    fn enqueue(&mut self, shard: ShardKey, entry: Entry, retry: bool) {
        let at = if retry { Place::Retry } else { Place::Fresh };
        self.enqueue_at(shard, entry, at);
    }

    fn enqueue_at(&mut self, shard: ShardKey, entry: Entry, at: Place) {
        self.next_queued_expiry = self.next_queued_expiry.min(entry.earliest_expiry);
        self.queued_records += 1;
        self.queued_bytes += entry.billed_size();
        let queue = self.queue(&shard);
        match at {
            Place::Fresh => queue.fresh.push_back(entry),
            Place::Retry => queue.retries.push_back(entry),
            Place::First => queue.retries.push_front(entry),
        }
    }

    /// The queue of `shard`, made if there is none.
    fn queue(&mut self, shard: &ShardKey) -> &mut ShardQueue {
        let range = shard
            .as_ref()
            .and_then(|s| self.map.as_ref()?.range_of(s))
            .map_or((HashKey(0), HashKey::MAX), |r| (r.start, r.end));
        let rate_limit = self.config.rate_limit;
        self.queues
            .entry(shard.clone())
            .or_insert_with(|| ShardQueue {
                range,
                parked: 0,
                retries: VecDeque::new(),
                fresh: VecDeque::new(),
                limiter: Some(ShardLimiter::new(rate_limit, Instant::now())),
                limited_until: None,
                in_flight: 0,
            })
    }

    /// Finishes the aggregates whose oldest record has waited `RecordMaxBufferedTime`.
    fn flush_due_buffers(&mut self, now: Instant) {
        let max_buffered = self.config.record_max_buffered_time;
        let flushing = self.flushing();
        let due: Vec<ShardId> = self
            .buffers
            .iter()
            .filter(|(_, b)| {
                b.first_arrived
                    .is_some_and(|arrived| flushing || arrived + max_buffered <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for shard in due {
            self.finish_buffer_of(shard);
        }
    }

    fn finish_buffer_of(&mut self, shard: ShardId) {
        let buffer = self.buffers.get_mut(&shard).expect("a buffered shard");
        if let Some(entry) = finish_buffer(buffer, Some(shard.clone()), &self.config) {
            self.enqueue(Some(shard), entry, false);
        }
    }

    fn finish_all_buffers(&mut self) {
        let shards: Vec<ShardId> = self.buffers.keys().cloned().collect();
        for shard in shards {
            self.finish_buffer_of(shard);
        }
    }

    /// When the pipeline must next look at its timers.
    fn next_wakeup(&self, now: Instant) -> Instant {
        let far = now + FAR;
        let mut wake = if self.closing && self.parked.is_empty() {
            far
        } else {
            self.next_map_refresh.min(far)
        };
        if self.queued_records > 0 {
            wake = wake.min(self.next_queued_expiry);
        }
        if let Allowance::WaitUntil(until) = self.circuit.allowance(now) {
            wake = wake.min(until);
        }
        for entry in &self.parked {
            wake = wake.min(entry.earliest_expiry);
        }
        let max_buffered = self.config.record_max_buffered_time;
        for buffer in self.buffers.values() {
            if let Some(first) = buffer.first_arrived {
                wake = wake.min(first + max_buffered);
            }
        }
        if self.can_send(now) {
            let ordered = self.config.ordered_per_shard;
            let waiting_for_closed = if ordered {
                self.closed_ranges_in_flight()
            } else {
                Vec::new()
            };
            for queue in self.queues.values() {
                if let Some(until) = queue.limited_until {
                    wake = wake.min(until);
                    continue;
                }
                // Waiting for an answer or a new map, which wake the pipeline themselves (as
                // `collect` skips these queues, a timer for their past send-by times would
                // fire every millisecond until then).
                let (start, end) = queue.range;
                if queue.parked > 0
                    || (ordered && queue.in_flight > 0)
                    || waiting_for_closed
                        .iter()
                        .any(|&(s, e)| s <= end && start <= e)
                {
                    continue;
                }
                for entry in &queue.retries {
                    wake = wake.min(entry.not_before);
                }
                if let Some(front) = queue.fresh.front() {
                    wake = wake.min(front.send_by);
                }
            }
        }
        wake.max(now)
    }

    /// Whether another request may go: the request circuit allows it, fewer than `MaxConnections`
    /// are in flight, and there is room left under `MaxInFlightBytes` (or nothing in flight).
    fn can_send(&self, now: Instant) -> bool {
        match self.circuit.allowance(now) {
            Allowance::WaitUntil(_) => return false,
            Allowance::One => return self.in_flight.is_empty(),
            Allowance::Unlimited => {}
        }
        if self.in_flight.is_empty() {
            return true;
        }
        // Near the cap, wait for a reasonable request's worth of room rather than send requests
        // of a sliver each.
        let cap = self.config.max_in_flight_bytes;
        let least = cap.min(self.config.collection_max_size) / 4;
        self.in_flight.len() < self.config.max_connections
            && self.in_flight_bytes.saturating_add(least.max(1)) <= cap
    }

    /// Sends as many requests as are due, within `MaxConnections` and `MaxInFlightBytes`.
    fn dispatch(&mut self, now: Instant) {
        while self.can_send(now) && self.queued_records > 0 {
            if !self.request_due(now) {
                return;
            }
            let entries = self.collect(now);
            if entries.is_empty() {
                return;
            }
            self.send(entries, now);
        }
    }

    fn request_due(&self, now: Instant) -> bool {
        if self.flushing()
            || self.queued_records >= self.config.collection_max_count
            || self.queued_bytes >= self.config.collection_max_size
        {
            return true;
        }
        self.queues.values().any(|q| {
            q.retries.iter().any(|e| e.not_before <= now)
                || q.fresh.front().is_some_and(|e| e.send_by <= now)
        })
    }

    /// Takes entries for one request: retries first, then fresh entries, shard by shard (starting
    /// at a rotating shard for fairness), within each shard's rate limit.
    fn collect(&mut self, now: Instant) -> Vec<Entry> {
        let max_count = self.config.collection_max_count;
        // Within what is left of MaxInFlightBytes. A request's first entry goes whatever its size
        // (below), so nothing waits for ever and the bytes in flight exceed MaxInFlightBytes by
        // less than one Kinesis record.
        let max_size = self.config.collection_max_size.min(
            self.config
                .max_in_flight_bytes
                .saturating_sub(self.in_flight_bytes),
        );
        let ordered = self.config.ordered_per_shard;
        let aggregation_max_size = self.config.aggregation_max_size;
        let mut entries: Vec<Entry> = Vec::new();
        let mut size = 0;
        let mut expired: Vec<Expired> = Vec::new();
        let mut shards: Vec<ShardKey> = self.queues.keys().cloned().collect();
        if !shards.is_empty() {
            let start = (self.next_request as usize) % shards.len();
            shards.rotate_left(start);
        }
        let waiting_for_closed = if ordered {
            self.closed_ranges_in_flight()
        } else {
            Vec::new()
        };
        'shards: for shard in shards {
            let queue = self.queues.get_mut(&shard).expect("listed above");
            if queue.limited_until.is_some_and(|until| until > now) {
                continue;
            }
            queue.limited_until = None;
            // A shard that an aggregate went past is closed: its entries wait for the new map.
            if queue.parked > 0 || (ordered && queue.in_flight > 0) {
                continue;
            }
            // In order, a child shard waits for what its closed parent still has in flight.
            let (start, end) = queue.range;
            if waiting_for_closed
                .iter()
                .any(|&(s, e)| s <= end && start <= e)
            {
                continue;
            }
            let mut taken_here = 0;
            loop {
                if entries.len() >= max_count || (ordered && taken_here == 1) {
                    break;
                }
                // Retries go first; in ordered mode a retry that must still wait blocks its shard.
                let from_retries = match queue.retries.iter().position(|e| e.not_before <= now) {
                    Some(i) if !ordered || i == 0 => Some(i),
                    _ if ordered && !queue.retries.is_empty() => break,
                    _ => None,
                };
                let candidate = match from_retries {
                    Some(i) => queue.retries.get(i),
                    None => queue.fresh.front(),
                };
                let Some(candidate) = candidate else { break };
                // Records whose RecordTtl passed while they waited (behind the shard's limit, or
                // for a map) fail now, without taking the shard's tokens: otherwise the records
                // queued behind a limit would expire at the limit's pace, long after their TTL.
                let expired_here = candidate.earliest_expiry <= now;
                let billed = candidate.billed_size();
                if !expired_here {
                    // A record larger than the limit still goes, alone.
                    if !entries.is_empty() && size + billed > max_size {
                        break 'shards;
                    }
                    if let Some(limiter) = &mut queue.limiter
                        && let Err(wait) = limiter.try_acquire(now, billed)
                    {
                        queue.limited_until = Some(now + wait);
                        break;
                    }
                }
                let entry = match from_retries {
                    Some(i) => queue.retries.remove(i),
                    None => queue.fresh.pop_front(),
                }
                .expect("candidate exists");
                self.queued_records -= 1;
                self.queued_bytes -= billed;
                let (alive, dead) = entry.drop_expired(now, aggregation_max_size);
                expired.push(dead);
                let Some(entry) = alive else { continue };
                if expired_here {
                    // The survivors of an aggregate keep its place; none of them has expired, so
                    // the next turn weighs them against the limit.
                    self.queued_records += 1;
                    self.queued_bytes += entry.billed_size();
                    match from_retries {
                        Some(i) => queue.retries.insert(i, entry),
                        None => queue.fresh.push_front(entry),
                    }
                    continue;
                }
                size += entry.billed_size();
                taken_here += 1;
                entries.push(entry);
            }
        }
        for dead in expired {
            self.expire(dead);
        }
        entries
    }

    fn expire(&mut self, dead: Expired) {
        let Expired {
            members,
            attempts,
            epoch,
        } = dead;
        if members.is_empty() {
            return;
        }
        metrics::counter!(m::USER_RECORD_EXPIRED, "stream" => self.stream.to_string())
            .increment(members.len() as u64);
        let shared_attempts: Arc<[Attempt]> = Arc::from(attempts);
        for (member, record) in members {
            self.ledger.release(epoch, 1, record_size(&record) as usize);
            member
                .slot
                .resolve(Resolution::Failed(Box::new(PutError::Expired {
                    record: Box::new(record),
                    attempts: shared_attempts.clone(),
                })));
        }
    }

    fn send(&mut self, mut entries: Vec<Entry>, now: Instant) {
        let id = self.next_request;
        self.next_request += 1;
        let wall = SystemTime::now();
        let mut user_records = 0;
        let bytes: usize = entries.iter().map(Entry::billed_size).sum();
        for entry in &mut entries {
            if entry.attempts.is_empty() {
                metrics::histogram!(m::BUFFERING_TIME, "stream" => self.stream.to_string())
                    .record(now.saturating_duration_since(entry.oldest).as_secs_f64() * 1000.0);
            }
            entry.start_attempt(now, wall);
            user_records += entry.members.len();
            if let Some(queue) = self.queues.get_mut(&entry.predicted) {
                queue.in_flight += 1;
            }
        }
        metrics::histogram!(m::KINESIS_RECORDS_PER_PUT_RECORDS_REQUEST, "stream" => self.stream.to_string())
            .record(entries.len() as f64);
        metrics::histogram!(m::USER_RECORDS_PER_PUT_RECORDS_REQUEST, "stream" => self.stream.to_string())
            .record(user_records as f64);
        let span = tracing::debug_span!("put_records", stream = %self.stream, request = id, kinesis_records = entries.len(), user_records);
        let client = self.put_client.clone();
        let stream = self.stream.clone();
        let responses = self.responses_tx.clone();
        // The entries go with the request and come back with its answer: sealing their aggregates
        // and building the request (copies, MD5) happen here, off the pipeline task.
        tokio::spawn(
            async move {
                let records = entries
                    .iter_mut()
                    .map(|entry| {
                        let record = entry.seal();
                        PutRecordsRequestEntry::builder()
                            .partition_key(record.partition_key.as_str())
                            .set_explicit_hash_key(record.explicit_hash_key.clone())
                            .data(Blob::new(record.data.to_vec()))
                            .build()
                            .expect("partition key and data are set")
                    })
                    .collect();
                let result = client
                    .put_records()
                    .stream_name(&*stream)
                    .set_records(Some(records))
                    .send()
                    .await;
                if let Err(error) = &result {
                    tracing::debug!(error = %error_text(error, MESSAGE_LIMIT), "PutRecords failed");
                }
                let _ = responses.send((id, entries, result));
            }
            .instrument(span),
        );
        self.in_flight.insert(id, (now, bytes));
        self.in_flight_bytes += bytes;
    }

    fn handle_response(&mut self, id: u64, entries: Vec<Entry>, result: PutRecordsResult) {
        let Some((started, bytes)) = self.in_flight.remove(&id) else {
            return;
        };
        self.in_flight_bytes -= bytes;
        let now = Instant::now();
        metrics::histogram!(m::REQUEST_TIME, "stream" => self.stream.to_string())
            .record(now.saturating_duration_since(started).as_secs_f64() * 1000.0);
        for entry in &entries {
            if let Some(queue) = self.queues.get_mut(&entry.predicted) {
                queue.in_flight -= 1;
            }
        }
        let results = match result {
            Ok(output) if output.records().len() == entries.len() => output.records,
            Ok(output) => {
                let error = AttemptError {
                    code: "InternalFailure".into(),
                    message: format!(
                        "PutRecords answered {} results for {} records",
                        output.records().len(),
                        entries.len()
                    ),
                };
                self.note_request_failure(&error, now);
                return self.fail_all(entries, error, now, started);
            }
            Err(error) => {
                let error = request_error(&error);
                self.note_credentials(error.code == CREDENTIALS_ERROR_CODE, &error.message);
                self.note_request_failure(&error, now);
                return self.fail_all(entries, error, now, started);
            }
        };
        self.note_credentials(false, "");
        if self.circuit.record_success() {
            tracing::info!(stream = %self.stream, "PutRecords answered again: the request circuit is closed");
        }
        let mut retries: Vec<(ShardKey, Entry)> = Vec::new();
        let mut astray: Vec<Entry> = Vec::new();
        let mut touched: Vec<ShardKey> = Vec::new();
        for (mut entry, result) in entries.into_iter().zip(results) {
            if !touched.contains(&entry.predicted) {
                touched.push(entry.predicted.clone());
            }
            let placed = match (
                &result.error_code,
                &result.shard_id,
                &result.sequence_number,
            ) {
                (None, Some(shard_id), Some(sequence)) => Some(
                    SequenceNumber::new(sequence)
                        .map(|sequence| (ShardId::from(shard_id.as_str()), sequence))
                        .map_err(|e| e.to_string()),
                ),
                _ => None,
            };
            match placed {
                Some(Ok((shard_id, sequence))) if self.landed_astray(&mut entry, &shard_id) => {
                    entry.landed = Some((shard_id.clone(), sequence.clone()));
                    let error = AttemptError {
                        code: WRONG_SHARD_CODE.into(),
                        message: format!(
                            "the aggregate went to {shard_id} ({sequence}), not to {} as predicted, \
                             and not all its records are in {shard_id}'s range: a KCL drops it \
                             there, so its records go again",
                            entry.predicted.as_ref().map_or("?", ShardId::as_str)
                        ),
                    };
                    entry.end_attempt(now, started, Some(error));
                    astray.push(entry);
                }
                Some(Ok((shard_id, sequence))) => {
                    entry.end_attempt(now, started, None);
                    self.succeed(entry, shard_id, sequence);
                }
                failed => {
                    let error = match failed {
                        // Not retried: the record was stored, a retry would duplicate it.
                        Some(Err(invalid)) => AttemptError {
                            code: "InvalidResponse".into(),
                            message: format!(
                                "PutRecords answered an invalid sequence number: {invalid}"
                            ),
                        },
                        _ => AttemptError {
                            code: result
                                .error_code
                                .unwrap_or_else(|| "InternalFailure".into()),
                            message: result.error_message.unwrap_or_default(),
                        },
                    };
                    entry.end_attempt(now, started, Some(error.clone()));
                    if let Some(entry) = self.handle_failure(entry, &error, now, false) {
                        retries.push((entry.predicted.clone(), entry));
                    }
                }
            }
        }
        for (shard, entry) in retries {
            self.enqueue(shard, entry, true);
        }
        for entry in astray {
            self.park(entry);
        }
        for shard in touched {
            self.reroute_if_closed(&shard);
        }
    }

    /// Whether `entry`, an aggregate put on `shard`, went to a shard other than the one predicted
    /// while holding a record outside that shard's range (or a range the map does not know yet):
    /// a KCL reading `shard` drops such an aggregate whole, so it is not a success.
    fn landed_astray(&self, entry: &mut Entry, shard: &ShardId) -> bool {
        if !entry.aggregated || entry.predicted.as_ref().is_none_or(|p| p == shard) {
            return false;
        }
        match self.map.as_ref().and_then(|map| map.range_of(shard)) {
            Some(range) => !entry.fits_range(range.start, range.end),
            None => true,
        }
    }

    /// Keeps an aggregate that went astray until a map knows the shard it went to.
    fn park(&mut self, entry: Entry) {
        self.queue(&entry.predicted).parked += 1;
        self.parked.push(entry);
        self.request_map_refresh();
    }

    /// When the map no longer has `shard` (closed by a split or merge; `None`: records put before
    /// there was a map), its queue's entries go to the shards the map has now, split by them:
    /// first those parked (sent earliest), then its retries and fresh ones, ahead of anything
    /// those shards hold, so each key's records keep their order. In order, a queue with a
    /// request in flight waits for its answer.
    fn reroute_if_closed(&mut self, shard: &ShardKey) {
        let Some(map) = self.map.clone() else { return };
        if shard.as_ref().is_some_and(|s| map.range_of(s).is_some()) {
            return;
        }
        let ordered = self.config.ordered_per_shard;
        let Some(queue) = self.queues.get_mut(shard) else {
            return;
        };
        if ordered && queue.in_flight > 0 {
            return;
        }
        let mut batch: Vec<Entry> = Vec::new();
        let mut landed_well: Vec<Entry> = Vec::new();
        if queue.parked > 0 {
            queue.parked = 0;
            let (mine, others): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.parked)
                .into_iter()
                .partition(|e| &e.predicted == shard);
            self.parked = others;
            for mut entry in mine {
                // Where the map now shows that the shard it went to owns all its records (after a
                // merge, say), it was a success after all.
                let fits = entry
                    .landed
                    .as_ref()
                    .and_then(|(s, _)| map.range_of(s))
                    .cloned();
                if fits.is_some_and(|range| entry.fits_range(range.start, range.end)) {
                    landed_well.push(entry);
                } else {
                    metrics::counter!(m::WRONG_SHARD, "stream" => self.stream.to_string())
                        .increment(entry.members.len() as u64);
                    metrics::counter!(m::ERRORS_BY_CODE, "stream" => self.stream.to_string(), "shard" => shard.as_ref().map(ToString::to_string).unwrap_or_default(), "code" => WRONG_SHARD_CODE)
                        .increment(1);
                    batch.push(entry);
                }
            }
        }
        let queue = self.queues.get_mut(shard).expect("looked up above");
        let queued: Vec<Entry> = queue
            .retries
            .drain(..)
            .chain(queue.fresh.drain(..))
            .collect();
        if queue.in_flight == 0 {
            self.queues.remove(shard);
        }
        for entry in queued {
            self.queued_records -= 1;
            self.queued_bytes -= entry.billed_size();
            batch.push(entry);
        }
        for mut entry in landed_well {
            let (shard_id, sequence) = entry.landed.take().expect("kept for this");
            entry.clear_last_error();
            self.succeed(entry, shard_id, sequence);
        }
        if batch.is_empty() {
            return;
        }
        let max_size = self.config.aggregation_max_size;
        let mut by_shard: Vec<(ShardId, Vec<Entry>)> = Vec::new();
        for part in batch.into_iter().flat_map(|e| e.split_by(&map, max_size)) {
            let to = part.predicted.clone().expect("split by a map");
            match by_shard.iter_mut().find(|(s, _)| *s == to) {
                Some((_, parts)) => parts.push(part),
                None => by_shard.push((to, vec![part])),
            }
        }
        for (to, parts) in by_shard {
            for part in parts.into_iter().rev() {
                self.enqueue_at(Some(to.clone()), part, Place::First);
            }
        }
    }

    /// The ranges of closed shards (and of the map-less queue) that still have a request in
    /// flight or entries parked: in order, the shards overlapping them wait.
    fn closed_ranges_in_flight(&self) -> Vec<(HashKey, HashKey)> {
        let Some(map) = self.map.as_ref() else {
            return Vec::new();
        };
        self.queues
            .iter()
            .filter(|(shard, q)| {
                shard.as_ref().is_none_or(|s| map.range_of(s).is_none())
                    && (q.in_flight > 0 || q.parked > 0)
            })
            .map(|(_, q)| q.range)
            .collect()
    }

    /// Fails the parked records whose `RecordTtl` has passed; the others wait on.
    fn expire_parked(&mut self, now: Instant) {
        if self.parked.iter().all(|e| e.earliest_expiry > now) {
            return;
        }
        let max_size = self.config.aggregation_max_size;
        for entry in std::mem::take(&mut self.parked) {
            let predicted = entry.predicted.clone();
            let (alive, dead) = entry.drop_expired(now, max_size);
            self.expire(dead);
            match alive {
                Some(entry) => self.parked.push(entry),
                None => {
                    if let Some(queue) = self.queues.get_mut(&predicted) {
                        queue.parked -= 1;
                    }
                }
            }
        }
    }

    /// Fails the queued records whose `RecordTtl` has passed. `collect` expires the records it
    /// meets; this sweep is for the times nothing can be sent (an open request circuit,
    /// `MaxConnections` requests in flight), so that records still fail on time. It runs only when
    /// an entry may have expired, at most every [`EXPIRY_SWEEP_GAP`].
    fn expire_queued(&mut self, now: Instant) {
        if now < self.next_queued_expiry {
            return;
        }
        let max_size = self.config.aggregation_max_size;
        let mut next = now + FAR;
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            for list in [&mut queue.retries, &mut queue.fresh] {
                if list.iter().all(|e| e.earliest_expiry > now) {
                    next = list
                        .iter()
                        .map(|e| e.earliest_expiry)
                        .fold(next, Instant::min);
                    continue;
                }
                for entry in std::mem::take(list) {
                    self.queued_records -= 1;
                    self.queued_bytes -= entry.billed_size();
                    let (alive, dead) = entry.drop_expired(now, max_size);
                    expired.push(dead);
                    if let Some(entry) = alive {
                        next = next.min(entry.earliest_expiry);
                        self.queued_records += 1;
                        self.queued_bytes += entry.billed_size();
                        list.push_back(entry);
                    }
                }
            }
        }
        self.next_queued_expiry = next.max(now + EXPIRY_SWEEP_GAP);
        for dead in expired {
            self.expire(dead);
        }
    }

    /// Logs the start and the end of a credentials outage, once each.
    fn note_credentials(&mut self, failing: bool, message: &str) {
        if failing && !self.credentials_failing {
            tracing::warn!(
                stream = %self.stream,
                error = message,
                "no credentials to sign PutRecords: records are retried until RecordTtl \
                 (attempts fail with CredentialsError; logged once until a request succeeds)"
            );
        } else if !failing && self.credentials_failing {
            tracing::info!(stream = %self.stream, "credentials are back: PutRecords is signed again");
        }
        self.credentials_failing = failing;
    }

    fn fail_all(
        &mut self,
        entries: Vec<Entry>,
        error: AttemptError,
        now: Instant,
        started: Instant,
    ) {
        for mut entry in entries {
            entry.end_attempt(now, started, Some(error.clone()));
            if let Some(entry) = self.handle_failure(entry, &error, now, true) {
                self.enqueue(entry.predicted.clone(), entry, true);
            }
        }
    }

    fn succeed(&mut self, mut entry: Entry, shard_id: ShardId, sequence: SequenceNumber) {
        if entry.predicted.as_ref().is_some_and(|p| p != &shard_id) {
            // After a split the record lands on a child shard: a success, but the map is stale.
            self.request_map_refresh();
        }
        let labels = [
            ("stream", self.stream.to_string()),
            ("shard", shard_id.to_string()),
        ];
        metrics::counter!(m::KINESIS_RECORDS_PUT, &labels).increment(1);
        metrics::counter!(m::KINESIS_RECORDS_DATA_PUT, &labels)
            .increment(entry.seal().data.len() as u64);
        metrics::counter!(m::USER_RECORDS_PUT, &labels).increment(entry.members.len() as u64);
        metrics::histogram!(m::USER_RECORDS_PER_KINESIS_RECORD, &labels)
            .record(entry.members.len() as f64);
        metrics::histogram!(m::RETRIES_PER_RECORD, &labels)
            .record((entry.attempts.len() - 1) as f64);
        metrics::counter!(m::USER_RECORDS_DATA_PUT, &labels).increment(entry.size as u64);
        entry.succeed(shard_id, sequence, &mut self.ledger);
    }

    /// Counts a whole-request failure worth retrying against the request circuit.
    fn note_request_failure(&mut self, error: &AttemptError, now: Instant) {
        let retried = match classify(&error.code) {
            ErrorClass::Transient => true,
            ErrorClass::Throttled => !self.config.fail_if_throttled,
            ErrorClass::Fatal => false,
        };
        if !retried {
            return;
        }
        let was_open = self.circuit.is_open();
        if self.circuit.record_failure(now) && !was_open {
            metrics::counter!(m::REQUEST_CIRCUIT_OPENED, "stream" => self.stream.to_string())
                .increment(1);
            tracing::warn!(
                stream = %self.stream,
                code = %error.code,
                error = %error.message,
                "PutRecords keeps failing: the request circuit is open, one request at a time, \
                 about one a second, until one is answered"
            );
        }
    }

    /// Decides what a failed attempt means for an entry: retry it later (returned), or resolve its
    /// records now. After a whole-request failure (`whole_request`) the entry is due again at
    /// once: the request circuit paces such retries for the whole stream, so that the records go
    /// as soon as the service answers again rather than after a per-record backoff grown during
    /// the outage.
    fn handle_failure(
        &mut self,
        mut entry: Entry,
        error: &AttemptError,
        now: Instant,
        whole_request: bool,
    ) -> Option<Entry> {
        let class = classify(&error.code);
        let shard = entry
            .predicted
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        metrics::counter!(m::ERRORS_BY_CODE, "stream" => self.stream.to_string(), "shard" => shard, "code" => error.code.clone())
            .increment(1);
        metrics::counter!(m::ALL_ERRORS, "stream" => self.stream.to_string()).increment(1);
        let fail_now = match class {
            ErrorClass::Fatal => true,
            ErrorClass::Throttled => self.config.fail_if_throttled,
            ErrorClass::Transient => false,
        };
        if fail_now {
            entry.fail(&mut self.ledger, |record, attempts| match class {
                ErrorClass::Fatal => PutError::Rejected {
                    record,
                    code: error.code.clone(),
                    message: error.message.clone(),
                    attempts,
                },
                _ => PutError::Throttled { record, attempts },
            });
            return None;
        }
        let delay = if whole_request {
            Duration::ZERO
        } else {
            entry.next_backoff(self.config.min_backoff, self.config.max_backoff)
        };
        // Never wait past the first expiry: the record must fail with Expired on time.
        entry.not_before = (now + delay).min(entry.earliest_expiry);
        let (alive, dead) = entry.drop_expired(now, self.config.aggregation_max_size);
        self.expire(dead);
        alive
    }

    /// Lists the shards again soon: now, or `MIN_MAP_REFRESH_GAP` after the last listing.
    fn request_map_refresh(&mut self) {
        let now = Instant::now();
        let earliest = self
            .last_map_request
            .map_or(now, |t| t + MIN_MAP_REFRESH_GAP)
            .max(now);
        self.next_map_refresh = self.next_map_refresh.min(earliest);
    }

    fn refresh_map_if_due(&mut self, now: Instant) {
        // Closing, a map is still needed for parked records.
        if self.map_refreshing
            || now < self.next_map_refresh
            || (self.closing && self.parked.is_empty())
        {
            return;
        }
        self.map_refreshing = true;
        self.last_map_request = Some(now);
        self.next_map_refresh = now + self.config.shard_map_refresh_interval;
        let client = self.list_client.clone();
        let stream = self.stream.clone();
        let tx = self.map_tx.clone();
        tokio::spawn(async move {
            let map = match shards::load_shard_map(&client, &stream).await {
                Ok(map) => Some(map),
                Err(error) => {
                    tracing::warn!(%error, "shard map refresh failed; keeping the previous map");
                    None
                }
            };
            let _ = tx.send(map);
        });
    }

    fn handle_map(&mut self, map: Option<ShardMap>) {
        self.map_refreshing = false;
        let Some(map) = map else {
            // Keep the previous map (and its rate limits); list again after a backoff.
            let delay = self
                .map_backoff
                .get_or_insert_with(|| {
                    ExponentialBuilder::new()
                        .with_min_delay(MAP_RETRY_MIN)
                        .with_max_delay(MAP_RETRY_MAX)
                        .with_jitter()
                        .without_max_times()
                        .build()
                })
                .next()
                .unwrap_or(MAP_RETRY_MAX);
            self.next_map_refresh = Instant::now() + delay;
            return;
        };
        self.map_backoff = None;
        if self.map.as_deref() == Some(&map) {
            if !self.parked.is_empty() {
                // Listed before the shards it went to: ask again.
                self.request_map_refresh();
            }
            return;
        }
        tracing::info!(shards = map.len(), "shard map changed");
        // Aggregates of closed shards are finished and split by the new map below.
        let closed: Vec<ShardId> = self
            .buffers
            .keys()
            .filter(|shard| map.range_of(shard).is_none())
            .cloned()
            .collect();
        for shard in &closed {
            self.finish_buffer_of(shard.clone());
            self.buffers.remove(shard);
        }
        self.map = Some(Arc::new(map));
        let queues: Vec<ShardKey> = self.queues.keys().cloned().collect();
        for shard in queues {
            self.reroute_if_closed(&shard);
        }
        if !self.parked.is_empty() {
            self.request_map_refresh();
        }
    }

    /// Gives resolved records' permits back and answers flushes that are complete.
    fn settle(&mut self) {
        if self.ledger.released_records > 0 {
            self.permits
                .records
                .add_permits(self.ledger.released_records);
            self.permits.bytes.add_permits(self.ledger.released_bytes);
            self.ledger.released_records = 0;
            self.ledger.released_bytes = 0;
            metrics::gauge!(m::USER_RECORDS_PENDING, "stream" => self.stream.to_string())
                .set(self.ledger.outstanding() as f64);
        }
        let (settled, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flush_waiters)
            .into_iter()
            .partition(|(epoch, _)| self.ledger.settled_through(*epoch));
        self.flush_waiters = waiting;
        for (_, done) in settled {
            let _ = done.send(());
        }
    }
}

/// What a shard's aggregator may keep allocated between aggregates (see [`finish_buffer`]).
const RETAINED_AGGREGATOR_CAPACITY: usize = kinesis_aggregation::DEFAULT_MAX_AGGREGATE_SIZE;

fn new_aggregator(config: &ProducerConfig) -> Aggregator {
    Aggregator::new(config.aggregation_max_size, config.aggregation_max_count)
        .expect("validated configuration")
}

/// Takes a shard's aggregate into an entry, copied into a buffer of its exact size but not sealed
/// (the request task adds the digest); `None` when the buffer is empty.
fn finish_buffer(
    buffer: &mut ShardBuffer,
    shard: ShardKey,
    config: &ProducerConfig,
) -> Option<Entry> {
    let oldest = buffer.first_arrived.take()?;
    // The next aggregate will likely hold as many records: size its list once, with room for a
    // few more; this one gives back what it does not use (it may wait long in a queue).
    let capacity = buffer.members.len() + buffer.members.len() / 8;
    let mut members = std::mem::replace(&mut buffer.members, Vec::with_capacity(capacity));
    members.shrink_to_fit();
    let record = buffer
        .aggregator
        .finish_unsealed()
        .expect("a buffer with members has records");
    // The aggregator is kept for the shard's next aggregate, with its buffers; past twice what a
    // default-sized one holds (a large AggregationMaxSize), it starts over rather than pin that
    // much for a shard that may stay quiet.
    if buffer.aggregator.capacity() > 2 * RETAINED_AGGREGATOR_CAPACITY {
        buffer.aggregator = new_aggregator(config);
    }
    let parts = Parts {
        payload: Payload::Unsealed(record),
        aggregated: members.len() > 1,
        predicted: shard,
        members,
        epoch: buffer.epoch,
        size: std::mem::take(&mut buffer.size),
    };
    Some(Entry::new(parts, oldest, config.record_max_buffered_time))
}

/// The code and message of a whole-request failure.
fn request_error(error: &SdkError<PutRecordsError>) -> AttemptError {
    match error {
        SdkError::ServiceError(service) => AttemptError {
            code: service.err().code().unwrap_or("InternalFailure").to_owned(),
            message: truncate(
                service.err().message().unwrap_or_default().to_owned(),
                MESSAGE_LIMIT,
            ),
        },
        SdkError::TimeoutError(_) => AttemptError {
            code: "Timeout".into(),
            message: "PutRecords timed out (RequestTimeout); it may have succeeded".into(),
        },
        // The SDK reports credentials it could not load as a dispatch failure.
        _ if is_credentials_error(error) => AttemptError {
            code: CREDENTIALS_ERROR_CODE.into(),
            message: error_text(error, MESSAGE_LIMIT),
        },
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => AttemptError {
            code: "ConnectionError".into(),
            message: error_text(error, MESSAGE_LIMIT),
        },
        _ => AttemptError {
            code: "ClientError".into(),
            message: error_text(error, MESSAGE_LIMIT),
        },
    }
}

async fn sleep_until(deadline: Instant) {
    tokio::time::sleep_until(deadline).await;
}
