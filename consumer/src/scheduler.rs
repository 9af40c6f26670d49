//! The worker: keeps the lease table in step with the stream's shards, takes and renews leases,
//! and runs one shard consumer per lease it holds, parents before children.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_kinesis::types::{ShardFilter, ShardFilterType};
use kinesis_aggregation::ShardId;
use kinesis_sdk_support::{
    CREDENTIALS_CHECK_TIMEOUT, CredentialsCheckError, StopOnceSigned, check_credentials,
};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::checkpointer::HeldLease;
use crate::lease::{
    Checkpoint, DynamoLeaseStore, Lease, LeaseConfig, LeaseObservations, LeaseStore,
    LeaseStoreError, compute_leases_to_take,
};
use crate::metrics as m;
use crate::processor::RecordProcessorFactory;
use crate::renewer::Renewer;
use crate::retrieval::{
    ChildShard, PollingConfig, RegistrationError, Retrieval, RetrievalConfig,
    register_stream_consumer,
};
use crate::shard_consumer::{ShardConsumer, ShardOutcome, signalled};
use crate::shards::{ShardInfo, list_shards, list_shards_filtered};

/// Where new leases start when the stream has no checkpoint for a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    /// The oldest record of each shard.
    TrimHorizon,
    /// Only records put after the lease is first processed.
    Latest,
    /// Records from this time on.
    AtTimestamp(SystemTime),
}

impl InitialPosition {
    fn checkpoint(self) -> Checkpoint {
        match self {
            InitialPosition::TrimHorizon => Checkpoint::TrimHorizon,
            InitialPosition::Latest => Checkpoint::Latest,
            InitialPosition::AtTimestamp(_) => Checkpoint::AtTimestamp,
        }
    }

    /// The `ListShards` filter for the shards a new application starts on.
    fn shard_filter(self) -> Option<ShardFilter> {
        let filter = match self {
            InitialPosition::TrimHorizon => return None,
            InitialPosition::Latest => ShardFilter::builder().r#type(ShardFilterType::AtLatest),
            InitialPosition::AtTimestamp(at) => ShardFilter::builder()
                .r#type(ShardFilterType::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from(at)),
        };
        filter.build().ok()
    }
}

/// The shards a new application (empty lease table) gets leases for at `position`, from a
/// listing made with its `shard_filter`. Servers that ignore the filter return every shard, so
/// LATEST keeps the open ones here; AT_TIMESTAMP cannot be checked without shard times and
/// keeps them all, which stays correct: every lease starts at the timestamp, parents first, and
/// a shard closed before it ends at once.
fn shards_to_start(mut shards: Vec<ShardInfo>, position: InitialPosition) -> Vec<ShardInfo> {
    if matches!(position, InitialPosition::Latest) {
        shards.retain(|s| s.open);
    }
    shards
}

/// Why the scheduler could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// The lease table could not be created or read.
    #[error("lease table: {0}")]
    LeaseTable(#[from] LeaseStoreError),
    /// The stream's shards could not be listed.
    #[error("listing the shards of {stream}: {message}")]
    ListShards {
        /// The stream.
        stream: String,
        /// What went wrong.
        message: String,
    },
    /// The lease configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::lease::ConfigError),
    /// The enhanced fan-out stream consumer could not be registered.
    #[error("enhanced fan-out: {0}")]
    FanOut(#[from] RegistrationError),
    /// No credentials could be loaded for the Kinesis or the DynamoDB client
    /// ([`SchedulerBuilder::verify_credentials`]).
    #[error("the {client} client has no AWS credentials: {source}")]
    Credentials {
        /// `Kinesis` or `DynamoDB`.
        client: &'static str,
        /// Why.
        source: CredentialsCheckError,
    },
    /// The worker's task panicked (a bug, or a panicking [`LeaseStore`] of the application):
    /// its leases were not released and expire after failoverTime.
    #[error("the worker panicked: {0}")]
    Panicked(String),
}

/// [`check_credentials`] of one client's request, as a [`SchedulerError`].
async fn credentials_of<T, E: std::error::Error + 'static>(
    client: &'static str,
    signed_request: impl std::future::Future<Output = Result<T, E>>,
) -> Result<(), SchedulerError> {
    check_credentials(signed_request, CREDENTIALS_CHECK_TIMEOUT)
        .await
        .map_err(|source| SchedulerError::Credentials { client, source })
}

/// Builds a [`Scheduler`].
pub struct SchedulerBuilder {
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    stream: String,
    application: String,
    worker_id: Option<String>,
    initial_position: InitialPosition,
    lease: LeaseConfig,
    retrieval: RetrievalConfig,
    shard_sync_interval: Duration,
    parent_poll_interval: Duration,
    deliver_outside_shard_range: bool,
    graceful_shutdown_timeout: Duration,
    kinesis_call_timeout: Duration,
    dynamodb_call_timeout: Duration,
    store: Option<Arc<dyn LeaseStore>>,
    verify_credentials: bool,
}

impl SchedulerBuilder {
    /// This worker's id (default: a random one). Must be unique among the application's workers.
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = Some(worker_id.into());
        self
    }

    /// `initialPositionInStream` for shards without a lease (default TRIM_HORIZON).
    pub fn initial_position(mut self, position: InitialPosition) -> Self {
        self.initial_position = position;
        self
    }

    /// Lease options (`failoverTimeMillis`, `maxLeasesForWorker`, …).
    pub fn lease_config(mut self, config: LeaseConfig) -> Self {
        self.lease = config;
        self
    }

    /// Reads by polling with these options (`maxRecords`, `idleTimeBetweenReadsInMillis`, …).
    /// Polling is the default.
    pub fn polling_config(mut self, config: PollingConfig) -> Self {
        self.retrieval = RetrievalConfig::Polling(config);
        self
    }

    /// How shards are read: polling (the default) or enhanced fan-out. With fan-out, `build`
    /// registers the stream consumer (named after the application unless configured) or reuses
    /// it, and waits until it is ACTIVE.
    pub fn retrieval(mut self, config: RetrievalConfig) -> Self {
        self.retrieval = config;
        self
    }

    /// `shardSyncIntervalMillis` (default 60 s): how often the shards are listed for new ones.
    pub fn shard_sync_interval(mut self, interval: Duration) -> Self {
        self.shard_sync_interval = interval;
        self
    }

    /// `parentShardPollIntervalMillis` (default 10 s): how often a child shard checks whether its
    /// parents are finished.
    pub fn parent_poll_interval(mut self, interval: Duration) -> Self {
        self.parent_poll_interval = interval;
        self
    }

    /// The longest one Kinesis call may take (default 30 s): `GetRecords`, `GetShardIterator`,
    /// `ListShards`, the start of a `SubscribeToShard` (its events are watched by
    /// `FanOutConfig::event_timeout`). The SDK has no response timeout of its own, so without one
    /// a hung call would stall its shard for good. Set as the client's operation attempt timeout
    /// unless the client given to [`Scheduler::builder`] already sets one.
    pub fn kinesis_call_timeout(mut self, timeout: Duration) -> Self {
        self.kinesis_call_timeout = timeout;
        self
    }

    /// The longest one lease-table call may take (default 60 s): a hung renewal, scan or
    /// checkpoint fails and is retried rather than stalling the worker. As
    /// [`SchedulerBuilder::kinesis_call_timeout`], unless the client sets one.
    pub fn dynamodb_call_timeout(mut self, timeout: Duration) -> Self {
        self.dynamodb_call_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for the processors to finish (`shutdown_requested`
    /// and its checkpoints) while the leases stay renewed (default 60 s). Processors still
    /// running then are stopped; the leases are released either way.
    pub fn graceful_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.graceful_shutdown_timeout = timeout;
        self
    }

    /// Delivers the records of aggregates that hold a user record outside the shard's hash-key
    /// range (default false: such an aggregate is dropped whole, as the Java KCL drops it).
    ///
    /// After a split or merge, an aggregate built for the parent may land on a child that does not
    /// own all its records. The KPL and `kinesis-producer` put those records again, so delivering
    /// the stale aggregate would deliver them twice; a producer that does not put them again
    /// (hand-made aggregates, `aws-kinesis-agg` with explicit hash keys of its own) needs this
    /// set, or its records are lost to every KCL. Dropped records are counted in
    /// [`metrics::RECORDS_OUTSIDE_SHARD_RANGE`](crate::metrics::RECORDS_OUTSIDE_SHARD_RANGE) and
    /// logged once per shard. The check needs the lease's hash-key range (written by shard sync,
    /// as the Java KCL writes it); a lease without one is read unchecked.
    pub fn deliver_aggregates_outside_shard_range(mut self, deliver: bool) -> Self {
        self.deliver_outside_shard_range = deliver;
        self
    }

    /// Whether [`build`](Self::build) resolves the clients' credentials once (Kinesis, and
    /// DynamoDB unless a [`lease_store`](Self::lease_store) replaces the table) and fails with
    /// [`SchedulerError::Credentials`] when none can be had within 4 s (default: true). Turn it
    /// off for a provider whose credentials come only later.
    pub fn verify_credentials(mut self, verify: bool) -> Self {
        self.verify_credentials = verify;
        self
    }

    /// Uses this lease store instead of the DynamoDB table named after the application.
    pub fn lease_store(mut self, store: Arc<dyn LeaseStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Creates the lease table if absent and returns the scheduler, ready to run.
    pub async fn build<F: RecordProcessorFactory>(
        self,
        factory: F,
    ) -> Result<Scheduler<F>, SchedulerError> {
        self.lease.validate()?;
        if self.verify_credentials {
            let kinesis = self.kinesis.describe_limits().customize();
            credentials_of("Kinesis", kinesis.interceptor(StopOnceSigned).send()).await?;
            if self.store.is_none() {
                let dynamodb = self.dynamodb.describe_limits().customize();
                credentials_of("DynamoDB", dynamodb.interceptor(StopOnceSigned).send()).await?;
            }
        }
        let kinesis = kinesis_with_timeout(&self.kinesis, self.kinesis_call_timeout);
        let dynamodb = dynamodb_with_timeout(&self.dynamodb, self.dynamodb_call_timeout);
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(DynamoLeaseStore::new(dynamodb, self.application.clone())));
        store.create_table_if_absent().await?;
        let retrieval = match self.retrieval {
            RetrievalConfig::Polling(config) => Retrieval::Polling(config),
            RetrievalConfig::FanOut(config) => {
                let name = config
                    .consumer_name
                    .clone()
                    .unwrap_or_else(|| self.application.clone());
                let consumer = register_stream_consumer(
                    &kinesis,
                    &self.stream,
                    &name,
                    config.registration_timeout,
                )
                .await?;
                Retrieval::FanOut {
                    listing: config.shared_listing(),
                    config,
                    consumer_arn: Arc::from(consumer.arn),
                }
            }
        };
        let worker_id = self
            .worker_id
            .unwrap_or_else(|| format!("worker-{:016x}", rand::random::<u64>()));
        Ok(Scheduler {
            kinesis,
            stream: Arc::from(self.stream.as_str()),
            worker_id,
            initial_position: self.initial_position,
            lease: self.lease,
            retrieval,
            shard_sync_interval: self.shard_sync_interval,
            parent_poll_interval: self.parent_poll_interval,
            deliver_outside_shard_range: self.deliver_outside_shard_range,
            graceful_shutdown_timeout: self.graceful_shutdown_timeout,
            store,
            factory: Arc::new(factory),
        })
    }
}

/// A KCL-compatible worker. Build it with [`Scheduler::builder`], then [`Scheduler::run`] it or
/// [`Scheduler::spawn`] it.
pub struct Scheduler<F> {
    kinesis: aws_sdk_kinesis::Client,
    stream: Arc<str>,
    worker_id: String,
    initial_position: InitialPosition,
    lease: LeaseConfig,
    retrieval: Retrieval,
    shard_sync_interval: Duration,
    parent_poll_interval: Duration,
    deliver_outside_shard_range: bool,
    graceful_shutdown_timeout: Duration,
    store: Arc<dyn LeaseStore>,
    factory: Arc<F>,
}

/// Controls a spawned scheduler.
pub struct SchedulerHandle {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), SchedulerError>>,
    worker_id: String,
}

impl SchedulerHandle {
    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Graceful shutdown: every processor gets `shutdown_requested` (and may checkpoint), then
    /// the worker releases its leases so other workers take them at once.
    pub async fn shutdown(self) -> Result<(), SchedulerError> {
        self.shutdown.send_replace(true);
        match self.task.await {
            Ok(result) => result,
            Err(error) => Err(SchedulerError::Panicked(panic_message(error))),
        }
    }

    /// Stops the worker abruptly, as a crash would: nothing is released; other workers take its
    /// leases once they expire (`failoverTime`).
    pub fn abort(self) {
        self.task.abort();
    }
}

/// What a task that panicked said.
fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into()),
        Err(error) => error.to_string(),
    }
}

struct Running {
    held: Arc<HeldLease>,
    /// `None` while the shard waits for its parents.
    started: bool,
}

impl Scheduler<()> {
    /// Starts building a worker for `stream` in `application` (the lease table's name).
    pub fn builder(
        kinesis: aws_sdk_kinesis::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        stream: impl Into<String>,
        application: impl Into<String>,
    ) -> SchedulerBuilder {
        SchedulerBuilder {
            kinesis,
            dynamodb,
            stream: stream.into(),
            application: application.into(),
            worker_id: None,
            initial_position: InitialPosition::TrimHorizon,
            lease: LeaseConfig::default(),
            retrieval: RetrievalConfig::default(),
            shard_sync_interval: Duration::from_secs(60),
            parent_poll_interval: Duration::from_secs(10),
            deliver_outside_shard_range: false,
            graceful_shutdown_timeout: Duration::from_secs(60),
            kinesis_call_timeout: Duration::from_secs(30),
            dynamodb_call_timeout: Duration::from_secs(60),
            store: None,
            verify_credentials: true,
        }
    }
}

impl<F: RecordProcessorFactory> Scheduler<F> {
    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Runs the worker on a task of its own.
    pub fn spawn(self) -> SchedulerHandle {
        let (shutdown, receiver) = watch::channel(false);
        let worker_id = self.worker_id.clone();
        let task = tokio::spawn(self.run_until(receiver));
        SchedulerHandle {
            shutdown,
            task,
            worker_id,
        }
    }

    /// Runs the worker until Ctrl-C, then shuts down gracefully.
    pub async fn run(self) -> Result<(), SchedulerError> {
        let (shutdown, receiver) = watch::channel(false);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.send_replace(true);
        });
        self.run_until(receiver).await
    }

    async fn run_until(self, mut stop: watch::Receiver<bool>) -> Result<(), SchedulerError> {
        let mut worker = Worker {
            observations: LeaseObservations::new(),
            adopted: false,
            renewer: Renewer::start(
                self.lease.renew_interval(),
                self.lease.get_failover_time(),
                self.worker_id.clone(),
            ),
            last_listing: None,
            rng: rand::make_rng::<rand::rngs::StdRng>(),
            held: HashMap::new(),
            consumers: JoinSet::new(),
            consumer_tasks: HashMap::new(),
            consumer_shutdown: watch::channel(false).0,
            scheduler: &self,
        };
        worker.sync_shards().await;
        // Renewals run on the renewer's own task; this timer only forgets what it gave up.
        let mut renew = tokio::time::interval(self.lease.renew_interval());
        let mut sync = tokio::time::interval(self.shard_sync_interval);
        let mut parents = tokio::time::interval(self.parent_poll_interval);
        for timer in [&mut renew, &mut sync, &mut parents] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let mut next_take = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = signalled(&mut stop) => break,
                _ = renew.tick() => worker.forget_lost(),
                () = tokio::time::sleep_until(next_take) => {
                    next_take = tokio::time::Instant::from_std(worker.take().await);
                    worker.clean_up_finished_parents().await;
                    worker.start_ready().await;
                }
                _ = sync.tick() => worker.sync_shards().await,
                _ = parents.tick() => worker.start_ready().await,
                Some(done) = worker.consumers.join_next_with_id() => {
                    if let Some((shard, outcome)) = worker.consumer_ended(done) {
                        worker.finished(shard, outcome).await;
                    }
                }
            }
        }
        worker.shutdown().await;
        Ok(())
    }
}

/// `client` with `timeout` as its operation attempt timeout, unless its configuration has one.
fn kinesis_with_timeout(
    client: &aws_sdk_kinesis::Client,
    timeout: Duration,
) -> aws_sdk_kinesis::Client {
    let config = client.config();
    let current = config.timeout_config();
    if current
        .and_then(|t| t.operation_attempt_timeout())
        .is_some()
    {
        return client.clone();
    }
    let timeouts = current
        .map(|t| t.to_builder())
        .unwrap_or_default()
        .operation_attempt_timeout(timeout)
        .build();
    aws_sdk_kinesis::Client::from_conf(config.to_builder().timeout_config(timeouts).build())
}

/// [`kinesis_with_timeout`] for the lease table's client.
fn dynamodb_with_timeout(
    client: &aws_sdk_dynamodb::Client,
    timeout: Duration,
) -> aws_sdk_dynamodb::Client {
    let config = client.config();
    let current = config.timeout_config();
    if current
        .and_then(|t| t.operation_attempt_timeout())
        .is_some()
    {
        return client.clone();
    }
    let timeouts = current
        .map(|t| t.to_builder())
        .unwrap_or_default()
        .operation_attempt_timeout(timeout)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config.to_builder().timeout_config(timeouts).build())
}

/// The shards with each one's listed parents before it (`ListShards` promises no order), so a
/// shard sync that stops at a failed write never leaves a child with a lease and its parent
/// without one.
fn parents_first(shards: &[ShardInfo]) -> Vec<&ShardInfo> {
    let by_id: HashMap<&ShardId, &ShardInfo> = shards.iter().map(|s| (&s.shard_id, s)).collect();
    let mut placed: HashSet<&ShardId> = HashSet::new();
    let mut ordered = Vec::with_capacity(shards.len());
    for shard in shards {
        // Depth-first through unplaced parents; a shard is placed after all of them.
        let mut stack = vec![(shard, false)];
        while let Some((current, parents_done)) = stack.pop() {
            if placed.contains(&current.shard_id) {
                continue;
            }
            if parents_done {
                placed.insert(&current.shard_id);
                ordered.push(current);
                continue;
            }
            stack.push((current, true));
            for parent in &current.parents {
                if let Some(parent) = by_id.get(parent)
                    && !placed.contains(&parent.shard_id)
                {
                    stack.push((parent, false));
                }
            }
        }
    }
    ordered
}

/// Shards without a lease that have a leased descendant: already processed (a child starts only
/// once its parents are finished, and a finished parent's lease is deleted only after that).
fn finished_ancestors<'a>(
    shards: &'a [ShardInfo],
    known: &HashSet<&ShardId>,
) -> HashSet<&'a ShardId> {
    let mut finished: HashSet<&ShardId> = HashSet::new();
    // Walk up from every leased shard through parents that have no lease themselves.
    let parents: HashMap<&ShardId, &[ShardId]> = shards
        .iter()
        .map(|s| (&s.shard_id, s.parents.as_slice()))
        .collect();
    let mut stack: Vec<&ShardId> = shards
        .iter()
        .map(|s| &s.shard_id)
        .filter(|id| known.contains(id))
        .collect();
    while let Some(shard) = stack.pop() {
        for parent in parents.get(shard).copied().unwrap_or_default() {
            if let Some((listed, _)) = parents.get_key_value(parent)
                && !known.contains(parent)
                && finished.insert(listed)
            {
                stack.push(listed);
            }
        }
    }
    finished
}

/// A listing of the lease table and when it was read.
struct Listing {
    read_at: Instant,
    leases: Vec<Lease>,
}

struct Worker<'a, F> {
    observations: LeaseObservations,
    /// Whether the leases this worker owned before a restart were taken back (first take).
    adopted: bool,
    renewer: Renewer,
    /// The last listing of the table (the taker's, each taker run), which shard sync, parent
    /// clean-up and the parent check reuse instead of scanning again: every decision taken from
    /// it is made by a conditional write, so an old item costs at most a refused write, and the
    /// states read from it (SHARD_END, a child started) do not go back. Kept up to date with
    /// this worker's own creations and deletions.
    last_listing: Option<Listing>,
    rng: rand::rngs::StdRng,
    held: HashMap<ShardId, Running>,
    consumers: JoinSet<(ShardId, ShardOutcome)>,
    /// The shard of each consumer task, to know which one a task that panicked was.
    consumer_tasks: HashMap<tokio::task::Id, ShardId>,
    consumer_shutdown: watch::Sender<bool>,
    scheduler: &'a Scheduler<F>,
}

impl<F: RecordProcessorFactory> Worker<'_, F> {
    fn store(&self) -> &dyn LeaseStore {
        &*self.scheduler.store
    }

    /// Every readable lease; a malformed item is logged with its name and left out.
    async fn list(&self) -> Option<Vec<Lease>> {
        match self.store().list().await {
            Ok(items) => Some(
                items
                    .into_iter()
                    .filter_map(|item| {
                        item.map_err(
                            |error| tracing::error!(%error, "unreadable lease item skipped"),
                        )
                        .ok()
                    })
                    .collect(),
            ),
            Err(error) => {
                tracing::warn!(%error, "listing the lease table failed");
                None
            }
        }
    }

    /// Holds a lease: the renewer renews it from now on.
    fn hold(&mut self, shard: ShardId, held: Arc<HeldLease>) {
        self.renewer.hold(held.clone());
        self.held.insert(
            shard,
            Running {
                held,
                started: false,
            },
        );
    }

    /// Stops holding a lease (its consumer ended, or it was lost before it started).
    fn forget(&mut self, shard: &ShardId) -> Option<Running> {
        self.renewer.forget(shard);
        self.held.remove(shard)
    }

    /// Forgets the leases the renewer gave up (refused, or not renewed for failoverTime) whose
    /// consumers never started; started ones end through their consumer (`lease_lost`).
    fn forget_lost(&mut self) {
        let lost: Vec<ShardId> = self
            .held
            .iter()
            .filter(|(_, r)| r.held.is_lost() && !r.started)
            .map(|(s, _)| s.clone())
            .collect();
        for shard in lost {
            self.forget(&shard);
        }
        metrics::gauge!(m::CURRENT_LEASES, "worker" => self.scheduler.worker_id.clone())
            .set(self.held.len() as f64);
    }

    /// Takes expired and unowned leases up to a balanced share, or steals one. Returns when to
    /// run again: after the taker interval (2 × failoverTime, as the Java KCL), or as soon as a
    /// lease another worker holds could have expired, if that is sooner. A crashed worker's
    /// counter is seen to stop at the first run after the crash; looking again failoverTime later
    /// takes its leases about failoverTime + one taker interval after the crash at worst, where
    /// the Java KCL's fixed schedule can take two taker intervals.
    async fn take(&mut self) -> Instant {
        let regular = Instant::now() + self.scheduler.lease.take_interval();
        let Some(leases) = self.list().await else {
            return regular;
        };
        let now = Instant::now();
        self.observations.update(&leases, now);
        self.last_listing = Some(Listing {
            read_at: now,
            leases: leases.clone(),
        });
        if !std::mem::replace(&mut self.adopted, true) {
            self.adopt_own(&leases).await;
        }
        let config = &self.scheduler.lease;
        let me = self.scheduler.worker_id.as_str();
        let could_expire = leases
            .iter()
            .filter(|l| l.lease_owner.as_deref().is_some_and(|owner| owner != me))
            .filter(|l| !l.checkpoint.is_shard_end())
            .filter_map(|l| self.observations.get(&l.lease_key)?.last_change)
            .map(|changed| changed + config.get_failover_time() + config.get_epsilon())
            .filter(|at| *at > now)
            .min();
        let next = could_expire.map_or(regular, |at| at.min(regular));
        // Finished shards are not work to balance.
        let active: Vec<Lease> = leases
            .iter()
            .filter(|l| !l.checkpoint.is_shard_end())
            .cloned()
            .collect();
        let worker_id = &self.scheduler.worker_id;
        let decision = compute_leases_to_take(
            &active,
            &self.observations,
            now,
            worker_id,
            &self.scheduler.lease,
            &mut self.rng,
        );
        for shard in decision.expired_to_take.iter().chain(&decision.to_steal) {
            if self.held.contains_key(shard) {
                continue;
            }
            let Some(lease) = active.iter().find(|l| &l.lease_key == shard) else {
                continue;
            };
            match self.store().take(lease, worker_id).await {
                Ok(taken) => {
                    tracing::info!(%shard, worker = %worker_id, "lease taken");
                    metrics::counter!(m::LEASES_TAKEN, "worker" => worker_id.clone()).increment(1);
                    let held = HeldLease::new(self.scheduler.store.clone(), taken);
                    self.hold(shard.clone(), held);
                }
                Err(error) if error.is_condition_failed() => {
                    tracing::debug!(%shard, "another worker took the lease first");
                }
                Err(error) => tracing::warn!(%shard, %error, "taking the lease failed"),
            }
        }
        metrics::gauge!(m::CURRENT_LEASES, "worker" => self.scheduler.worker_id.clone())
            .set(self.held.len() as f64);
        next
    }

    /// At start, takes back the leases the table says this worker owns (a restart with the same
    /// worker id): renewed at once, so they are read now rather than after they expire, as the
    /// Java KCL's renewer starts with them. A lease another worker took in between refuses the
    /// renewal and is left to it.
    async fn adopt_own(&mut self, leases: &[Lease]) {
        let me = self.scheduler.worker_id.as_str();
        for lease in leases {
            if lease.lease_owner.as_deref() != Some(me)
                || lease.checkpoint.is_shard_end()
                || self.held.contains_key(&lease.lease_key)
            {
                continue;
            }
            let held = HeldLease::new(self.scheduler.store.clone(), lease.clone());
            match held.renew().await {
                Ok(()) if !held.is_lost() => {
                    tracing::info!(shard = %lease.lease_key, worker = %me, "own lease taken back at start");
                    self.hold(lease.lease_key.clone(), held);
                }
                Ok(()) => {}
                Err(error) => {
                    tracing::debug!(shard = %lease.lease_key, %error, "own lease not taken back")
                }
            }
        }
    }

    /// Starts the consumers of held leases whose parents are finished.
    async fn start_ready(&mut self) {
        if self.held.values().all(|r| r.started) {
            return;
        }
        let Some(leases) = self.listing(self.scheduler.lease.take_interval()).await else {
            return;
        };
        let by_key: HashMap<ShardId, Lease> = leases
            .into_iter()
            .map(|l| (l.lease_key.clone(), l))
            .collect();
        let mut parents_read: HashMap<ShardId, bool> = HashMap::new();
        let waiting: Vec<ShardId> = self
            .held
            .iter()
            .filter(|(_, r)| !r.started)
            .map(|(s, _)| s.clone())
            .collect();
        for shard in waiting {
            let lease = self.held[&shard].held.lease.lock().await.clone();
            let Some(lease) = lease else {
                self.forget(&shard);
                continue;
            };
            // Parent before child: every parent must be at SHARD_END, or gone (cleaned up).
            let mut parents_done = true;
            for parent in &lease.parent_shard_ids {
                if !self
                    .parent_finished(parent, &by_key, &mut parents_read)
                    .await
                {
                    parents_done = false;
                    break;
                }
            }
            let running = self.held.get_mut(&shard).expect("listed above");
            if !parents_done {
                tracing::debug!(%shard, "waiting for the parent shards to finish");
                continue;
            }
            running.started = true;
            let consumer = ShardConsumer {
                processor: self.scheduler.factory.create(&shard),
                held: running.held.clone(),
                kinesis: self.scheduler.kinesis.clone(),
                stream: self.scheduler.stream.clone(),
                retrieval: self.scheduler.retrieval.clone(),
                check_shard_range: !self.scheduler.deliver_outside_shard_range,
                initial_timestamp: match self.scheduler.initial_position {
                    InitialPosition::AtTimestamp(at) => Some(at),
                    _ => None,
                },
                shutdown: self.consumer_shutdown.subscribe(),
            };
            let shard_id = shard.clone();
            let task = self
                .consumers
                .spawn(async move { (shard_id, consumer.run().await) });
            self.consumer_tasks.insert(task.id(), shard);
        }
    }

    /// Whether `parent` is finished (SHARD_END, or its lease gone) by the listing, or, where the
    /// listing shows it unfinished, by its lease read alone (as the Java KCL's parent check
    /// does: cheaper than a scan, and current), once per `start_ready`.
    async fn parent_finished(
        &self,
        parent: &ShardId,
        listed: &HashMap<ShardId, Lease>,
        read: &mut HashMap<ShardId, bool>,
    ) -> bool {
        match listed.get(parent) {
            None => return true,
            Some(lease) if lease.checkpoint.is_shard_end() => return true,
            Some(_) => {}
        }
        if let Some(done) = read.get(parent) {
            return *done;
        }
        let done = match self.store().get(parent).await {
            Ok(lease) => lease.is_none_or(|l| l.checkpoint.is_shard_end()),
            Err(error) => {
                tracing::debug!(%parent, %error, "reading the parent lease failed");
                false
            }
        };
        read.insert(parent.clone(), done);
        done
    }

    /// The shard and outcome of a consumer task that ended; a task that panicked (processor
    /// callbacks' panics are caught, so this would be our own bug) ends as `Failed`, so its
    /// lease is released and retried rather than held, renewed and never read.
    fn consumer_ended(
        &mut self,
        done: Result<(tokio::task::Id, (ShardId, ShardOutcome)), tokio::task::JoinError>,
    ) -> Option<(ShardId, ShardOutcome)> {
        match done {
            Ok((id, ended)) => {
                self.consumer_tasks.remove(&id);
                Some(ended)
            }
            Err(error) => {
                let shard = self.consumer_tasks.remove(&error.id())?;
                Some((
                    shard,
                    ShardOutcome::Failed(format!("its task ended: {error}")),
                ))
            }
        }
    }

    async fn finished(&mut self, shard: ShardId, outcome: ShardOutcome) {
        let Some(running) = self.forget(&shard) else {
            return;
        };
        tracing::info!(%shard, ?outcome, "shard consumer finished");
        match outcome {
            ShardOutcome::Ended(children) => {
                self.create_children(&shard, children).await;
                self.release(&running.held).await;
            }
            ShardOutcome::LeaseLost => {}
            ShardOutcome::Failed(reason) => {
                tracing::warn!(%shard, reason, "shard processing failed; the lease is given up to be retried");
                self.release(&running.held).await;
            }
            ShardOutcome::ShutDown | ShardOutcome::EndNotCheckpointed => {
                // Given up so that it is taken again (by this worker or another) and retried.
                self.release(&running.held).await;
            }
        }
        metrics::gauge!(m::CURRENT_LEASES, "worker" => self.scheduler.worker_id.clone())
            .set(self.held.len() as f64);
    }

    async fn release(&self, held: &HeldLease) {
        let mut guard = held.lease.lock().await;
        if let Some(lease) = guard.as_ref() {
            match self.store().release(lease).await {
                Ok(_) => *guard = None,
                Err(error) => {
                    tracing::warn!(shard = %held.shard, %error, "releasing the lease failed; it will expire")
                }
            }
        }
    }

    /// Creates the leases of an ended shard's children (from `ChildShards`, or `ListShards` when the
    /// server did not name them) and records them on the parent.
    async fn create_children(&mut self, parent: &ShardId, children: Vec<ChildShard>) {
        let children: Vec<ChildShard> = if children.is_empty() {
            match list_shards(&self.scheduler.kinesis, &self.scheduler.stream).await {
                Ok(shards) => shards
                    .into_iter()
                    .filter(|s| s.parents.contains(parent))
                    .map(|s| ChildShard {
                        shard_id: s.shard_id,
                        parent_shards: s.parents,
                        hash_key_range: s.hash_key_range,
                    })
                    .collect(),
                Err(error) => {
                    tracing::warn!(%parent, %error, "children not found now; the shard sync will add them");
                    return;
                }
            }
        } else {
            children
        };
        let mut created_leases = Vec::new();
        for ChildShard {
            shard_id: child,
            parent_shards: parents,
            hash_key_range,
        } in &children
        {
            let mut lease =
                Lease::new(child.clone(), Checkpoint::TrimHorizon).with_parents(parents.clone());
            lease.hash_key_range = *hash_key_range;
            match self.store().create_if_absent(&lease).await {
                Ok(created) => {
                    tracing::info!(%child, %parent, "child lease created");
                    created_leases.push(created);
                }
                Err(error) if error.is_condition_failed() => {}
                Err(error) => {
                    tracing::warn!(%child, %error, "creating the child lease failed; the shard sync will retry")
                }
            }
        }
        self.remember_created(created_leases);
        let ids: Vec<ShardId> = children.into_iter().map(|c| c.shard_id).collect();
        if let Err(error) = self.store().update_child_shards(parent, &ids).await {
            tracing::debug!(%parent, %error, "recording the child shards failed");
        }
    }

    /// Deletes finished parent leases once all their children have started (been taken or
    /// checkpointed), so the table does not grow with every reshard. Runs after each taker run,
    /// on its listing.
    async fn clean_up_finished_parents(&mut self) {
        let Some(listing) = &self.last_listing else {
            return;
        };
        let leases = &listing.leases;
        let mut deleted = Vec::new();
        let by_key: HashMap<&ShardId, &Lease> = leases.iter().map(|l| (&l.lease_key, l)).collect();
        for lease in leases.iter().filter(|l| l.checkpoint.is_shard_end()) {
            let children: Vec<&&Lease> = leases
                .iter()
                .filter(|c| c.parent_shard_ids.contains(&lease.lease_key))
                .filter_map(|c| by_key.get(&c.lease_key))
                .collect();
            let started = |c: &Lease| {
                c.lease_owner.is_some() || !matches!(c.checkpoint, Checkpoint::TrimHorizon)
            };
            if !children.is_empty() && children.iter().all(|c| started(c)) {
                match self.store().delete(lease).await {
                    Ok(()) => {
                        tracing::info!(shard = %lease.lease_key, "finished parent lease deleted");
                        deleted.push(lease.lease_key.clone());
                    }
                    Err(error) => {
                        tracing::debug!(shard = %lease.lease_key, %error, "parent lease not deleted yet")
                    }
                }
            }
        }
        if let Some(listing) = &mut self.last_listing {
            listing.leases.retain(|l| !deleted.contains(&l.lease_key));
        }
    }

    /// Creates leases for shards that have none: at the initial position, or TRIM_HORIZON for
    /// children of a shard this application knows (their parents' records come first).
    async fn sync_shards(&mut self) {
        let Some(leases) = self.listing(self.scheduler.lease.take_interval()).await else {
            return;
        };
        // As the Java KCL: a new application (empty table) starts at LATEST or AT_TIMESTAMP
        // only on the shards open at that position; their closed ancestors get no lease, and a
        // child of a listed parent does not go back to TRIM_HORIZON (records put before the
        // start would be delivered).
        let first_sync = leases.is_empty();
        let position = self.scheduler.initial_position;
        let filter = if first_sync {
            position.shard_filter()
        } else {
            None
        };
        let shards =
            match list_shards_filtered(&self.scheduler.kinesis, &self.scheduler.stream, filter)
                .await
            {
                Ok(shards) if first_sync => shards_to_start(shards, position),
                Ok(shards) => shards,
                Err(error) => {
                    tracing::warn!(%error, "shard sync: listing the shards failed");
                    return;
                }
            };
        let known: HashSet<&ShardId> = leases.iter().map(|l| &l.lease_key).collect();
        let listed: HashSet<&ShardId> = shards.iter().map(|s| &s.shard_id).collect();
        let finished = finished_ancestors(&shards, &known);
        // A parent whose records this application reads: leased, or getting its lease in this
        // pass (listed, and not an unleased ancestor of a leased shard).
        let read_parent =
            |p: &ShardId| known.contains(p) || (listed.contains(p) && !finished.contains(p));
        let mut created_leases = Vec::new();
        for ShardInfo {
            shard_id,
            parents,
            hash_key_range,
            ..
        } in parents_first(&shards)
        {
            // A closed shard stays listed for the retention period after its finished lease was
            // deleted: a lease made for it again would deliver its records a second time.
            if known.contains(shard_id) || finished.contains(shard_id) {
                continue;
            }
            let checkpoint = if !first_sync && parents.iter().any(read_parent) {
                Checkpoint::TrimHorizon
            } else {
                position.checkpoint()
            };
            let mut lease = Lease::new(shard_id.clone(), checkpoint).with_parents(
                parents
                    .iter()
                    .filter(|p| read_parent(p))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            // As the Java KCL: the range is what the shard's aggregates are checked against.
            lease.hash_key_range = *hash_key_range;
            match self.store().create_if_absent(&lease).await {
                Ok(created) => {
                    tracing::info!(shard = %shard_id, "lease created");
                    created_leases.push(created);
                }
                Err(error) if error.is_condition_failed() => {}
                Err(error) => {
                    // Stop here, as the Java shard syncer does: a child created without its
                    // parent's lease would make the parent look finished (see
                    // `finished_ancestors`) and its records would never be read.
                    tracing::warn!(shard = %shard_id, %error, "creating a lease failed; the next shard sync goes on from here");
                    break;
                }
            }
        }
        self.remember_created(created_leases);
    }

    /// The last listing if it is younger than `max_age`, else a new one (kept as the last).
    async fn listing(&mut self, max_age: Duration) -> Option<Vec<Lease>> {
        if let Some(listing) = &self.last_listing
            && listing.read_at.elapsed() < max_age
        {
            return Some(listing.leases.clone());
        }
        let read_at = Instant::now();
        let leases = self.list().await?;
        self.last_listing = Some(Listing {
            read_at,
            leases: leases.clone(),
        });
        Some(leases)
    }

    /// Adds leases this worker created to the last listing, so that a sync before the next
    /// listing does not write them again.
    fn remember_created(&mut self, created: Vec<Lease>) {
        if let Some(listing) = &mut self.last_listing {
            for lease in created {
                if !listing
                    .leases
                    .iter()
                    .any(|l| l.lease_key == lease.lease_key)
                {
                    listing.leases.push(lease);
                }
            }
        }
    }

    /// Graceful shutdown: processors are told and may checkpoint; then every lease is released.
    /// The leases stay renewed while the processors finish (`shutdown_requested`, their last
    /// checkpoints), for at most `graceful_shutdown_timeout`; processors still running then are
    /// stopped where they are (what they checkpointed stands).
    async fn shutdown(&mut self) {
        self.consumer_shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + self.scheduler.graceful_shutdown_timeout;
        loop {
            let done = tokio::select! {
                done = self.consumers.join_next_with_id() => done,
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        left = self.consumers.len(),
                        timeout = ?self.scheduler.graceful_shutdown_timeout,
                        "processors still running at the shutdown time limit: stopped"
                    );
                    self.consumers.abort_all();
                    while self.consumers.join_next().await.is_some() {}
                    break;
                }
            };
            let Some(done) = done else { break };
            if let Some((shard, outcome)) = self.consumer_ended(done) {
                tracing::info!(%shard, ?outcome, "shard consumer stopped");
            }
        }
        self.renewer.stop().await;
        for running in self.held.values() {
            self.release(&running.held).await;
        }
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], open: bool) -> ShardInfo {
        ShardInfo {
            shard_id: ShardId::from(id),
            parents: parents.iter().map(|p| ShardId::from(*p)).collect(),
            open,
            hash_key_range: None,
        }
    }

    #[test]
    fn parents_are_put_before_their_children_whatever_the_listing_order() {
        // 0 split into 2 and 3; 3 merged with 1 into 4; listed children first.
        let shards = [
            shard("4", &["3", "1"], true),
            shard("2", &["0"], true),
            shard("3", &["0"], false),
            shard("1", &[], false),
            shard("0", &[], false),
            shard("5", &["gone"], true),
        ];
        let order: Vec<&str> = parents_first(&shards)
            .iter()
            .map(|s| s.shard_id.as_str())
            .collect();
        assert_eq!(order.len(), shards.len());
        let at = |id: &str| order.iter().position(|s| *s == id).unwrap();
        for (child, parent) in [("4", "3"), ("4", "1"), ("2", "0"), ("3", "0")] {
            assert!(at(parent) < at(child), "{parent} before {child}: {order:?}");
        }
    }

    #[test]
    fn closed_ancestors_of_leased_shards_are_finished() {
        // 0 split into 2 and 3; 3 merged with 1 into 4. Leases are left for 2 and 4 only.
        let shards = [
            shard("0", &[], false),
            shard("1", &[], false),
            shard("2", &["0"], true),
            shard("3", &["0"], false),
            shard("4", &["3", "1"], true),
            shard("5", &[], true),
        ];
        let two = ShardId::from("2");
        let four = ShardId::from("4");
        let known: HashSet<&ShardId> = [&two, &four].into_iter().collect();
        let mut finished: Vec<&str> = finished_ancestors(&shards, &known)
            .into_iter()
            .map(ShardId::as_str)
            .collect();
        finished.sort();
        assert_eq!(finished, ["0", "1", "3"]);
    }

    #[test]
    fn without_leases_nothing_is_finished() {
        let shards = [shard("0", &[], false), shard("1", &["0"], true)];
        assert!(finished_ancestors(&shards, &HashSet::new()).is_empty());
    }
}
