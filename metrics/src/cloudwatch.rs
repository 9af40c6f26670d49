//! The CloudWatch publisher: a `metrics` recorder that sums samples into statistic sets per key,
//! and a task that, every upload period, turns them into datums ([`crate::rollup`]) and sends them
//! with batched `PutMetricData` calls.
//!
//! Recording never waits for CloudWatch: a sample takes one uncontended lock on its key's cell.
//! The task owns the network. When CloudWatch is slow or down, datums wait in a bounded queue
//! (oldest dropped first past [`CloudWatchBuilder::max_queued_datums`], counted in
//! [`PublisherStats::datums_dropped`]) and are sent again at the next period.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet as CwSet};
use kinesis_sdk_support::{MESSAGE_LIMIT, error_text};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::catalog::{self, Family};
use crate::config::{KPL_DEFAULT_UPLOAD_DELAY, KclMetrics, KplMetrics};
use crate::rollup::{self, Datum, Sample};
use crate::stats::{Cell, CellStorage};

/// Datums per `PutMetricData` call (CloudWatch takes up to 1,000 and 1 MB).
pub const DATUMS_PER_REQUEST: usize = 500;
/// The default bound of datums waiting to be sent.
pub const DEFAULT_MAX_QUEUED_DATUMS: usize = 20_000;
/// The default time a `PutMetricData` call may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The recorder: install it (alone, or in a fan-out with others) as the `metrics` recorder.
#[derive(Clone)]
pub struct CloudWatchRecorder {
    registry: Arc<Registry<Key, CellStorage>>,
}

impl std::fmt::Debug for CloudWatchRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchRecorder").finish_non_exhaustive()
    }
}

impl Recorder for CloudWatchRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.registry.get_or_create_counter(key, Arc::clone))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.registry.get_or_create_gauge(key, Arc::clone))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.registry.get_or_create_histogram(key, Arc::clone))
    }
}

impl CloudWatchRecorder {
    /// Takes the period's samples of the families due, leaving their cells empty.
    fn take(&self, kpl_due: bool, kcl_due: bool) -> Vec<(Key, crate::stats::StatisticSet)> {
        let mut taken = Vec::new();
        let mut visit = |key: &Key, cell: &Arc<Cell>| {
            let due = match catalog::lookup(key.name()).map(|e| e.family) {
                Some(Family::Kpl) => kpl_due,
                Some(Family::Kcl { .. }) => kcl_due,
                None => false,
            };
            if due && let Some(set) = cell.take() {
                taken.push((key.clone(), set));
            }
        };
        self.registry.visit_counters(&mut visit);
        self.registry.visit_gauges(&mut visit);
        self.registry.visit_histograms(&mut visit);
        taken
    }
}

/// What the publisher has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// `PutMetricData` calls answered with success.
    pub requests_sent: u64,
    /// `PutMetricData` calls that failed (their datums were kept to send again, unless rejected).
    pub requests_failed: u64,
    /// Datums CloudWatch accepted.
    pub datums_sent: u64,
    /// Datums dropped: past the queue's bound while CloudWatch could not be reached, or in a
    /// call CloudWatch rejected as invalid (not retried).
    pub datums_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests_sent: AtomicU64,
    requests_failed: AtomicU64,
    datums_sent: AtomicU64,
    datums_dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> PublisherStats {
        PublisherStats {
            requests_sent: self.requests_sent.load(Ordering::Relaxed),
            requests_failed: self.requests_failed.load(Ordering::Relaxed),
            datums_sent: self.datums_sent.load(Ordering::Relaxed),
            datums_dropped: self.datums_dropped.load(Ordering::Relaxed),
        }
    }
}

/// Builds a CloudWatch publisher. At least one of [`kpl`](Self::kpl) and [`kcl`](Self::kcl) says
/// what to publish; without either nothing is.
#[derive(Debug, Clone)]
pub struct CloudWatchBuilder {
    client: aws_sdk_cloudwatch::Client,
    kpl: Option<KplMetrics>,
    kcl: Option<KclMetrics>,
    upload_delay: Duration,
    max_queued_datums: usize,
    request_timeout: Duration,
}

impl CloudWatchBuilder {
    /// A publisher sending through `client`.
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        CloudWatchBuilder {
            client,
            kpl: None,
            kcl: None,
            upload_delay: KPL_DEFAULT_UPLOAD_DELAY,
            max_queued_datums: DEFAULT_MAX_QUEUED_DATUMS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Publishes the producer's metrics so (the KPL's `MetricsNamespace`, `MetricsLevel`,
    /// `MetricsGranularity`).
    pub fn kpl(mut self, config: KplMetrics) -> Self {
        self.kpl = Some(config);
        self
    }

    /// Publishes the consumer's metrics so (the KCL's application namespace, `metricsLevel`,
    /// `metricsEnabledDimensions`, `metricsBufferTimeMillis`).
    pub fn kcl(mut self, config: KclMetrics) -> Self {
        self.kcl = Some(config);
        self
    }

    /// The KPL's `MetricsUploadDelay`: how long the producer's samples are summed before they
    /// are sent (default 60 s; at least 1 ms).
    pub fn upload_delay(mut self, delay: Duration) -> Self {
        self.upload_delay = delay.max(Duration::from_millis(1));
        self
    }

    /// How many datums may wait while CloudWatch cannot be reached (default 20,000); past it
    /// the oldest are dropped and counted.
    pub fn max_queued_datums(mut self, max: usize) -> Self {
        self.max_queued_datums = max.max(1);
        self
    }

    /// How long one `PutMetricData` call may take (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The recorder to install, and the handle of the publishing task, spawned on the current
    /// Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn build(self) -> (CloudWatchRecorder, PublisherHandle) {
        let recorder = CloudWatchRecorder {
            registry: Arc::new(Registry::new(CellStorage)),
        };
        let counters = Arc::new(Counters::default());
        let (commands, receiver) = mpsc::channel(8);
        let publisher = Publisher {
            recorder: recorder.clone(),
            client: self.client,
            kpl_period: self.upload_delay,
            kcl_period: self.kcl.as_ref().map_or(Duration::MAX, |c| {
                c.buffer_time.max(Duration::from_millis(1))
            }),
            kpl: self.kpl,
            kcl: self.kcl,
            max_queued: self.max_queued_datums,
            request_timeout: self.request_timeout,
            queue: VecDeque::new(),
            counters: counters.clone(),
        };
        let task = tokio::spawn(publisher.run(receiver));
        (
            recorder,
            PublisherHandle {
                commands,
                counters,
                task: Some(task),
            },
        )
    }
}

enum Command {
    Flush(oneshot::Sender<()>),
}

/// The publishing task's handle. Dropping it stops the task after a last upload.
#[derive(Debug)]
pub struct PublisherHandle {
    commands: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PublisherHandle {
    /// What has been sent and dropped so far.
    pub fn stats(&self) -> PublisherStats {
        self.counters.snapshot()
    }

    /// Sums up and sends everything recorded so far now, whatever the periods; returns once the
    /// calls have been answered (or failed: see [`stats`](Self::stats)).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Sends what is recorded, then stops the task.
    pub async fn shutdown(self) {
        let PublisherHandle { commands, task, .. } = self;
        // The task sends what is left when its command channel closes.
        drop(commands);
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

struct Publisher {
    recorder: CloudWatchRecorder,
    client: aws_sdk_cloudwatch::Client,
    kpl: Option<KplMetrics>,
    kcl: Option<KclMetrics>,
    kpl_period: Duration,
    kcl_period: Duration,
    max_queued: usize,
    request_timeout: Duration,
    queue: VecDeque<(String, MetricDatum)>,
    counters: Arc<Counters>,
}

impl Publisher {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let start = Instant::now();
        let mut next_kpl = start + self.kpl_period;
        let mut next_kcl = start.checked_add(self.kcl_period).unwrap_or(next_kpl);
        loop {
            let wake = next_kpl.min(next_kcl);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Flush(done)) => {
                        self.collect(true, true);
                        self.send_queued().await;
                        let _ = done.send(());
                    }
                    None => {
                        self.collect(true, true);
                        self.send_queued().await;
                        return;
                    }
                },
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    let (kpl_due, kcl_due) = (now >= next_kpl, now >= next_kcl);
                    if kpl_due {
                        next_kpl = now + self.kpl_period;
                    }
                    if kcl_due {
                        next_kcl = now.checked_add(self.kcl_period).unwrap_or(next_kpl);
                    }
                    self.collect(kpl_due, kcl_due);
                    self.send_queued().await;
                }
            }
        }
    }

    /// Takes the period's samples into datums at the end of the queue, dropping the oldest past
    /// the bound.
    fn collect(&mut self, kpl_due: bool, kcl_due: bool) {
        let taken = self.recorder.take(kpl_due, kcl_due);
        let samples = taken.iter().map(|(key, set)| Sample {
            name: key.name(),
            labels: key.labels().map(|l| (l.key(), l.value())).collect(),
            set: *set,
        });
        let timestamp = aws_smithy_types::DateTime::from(SystemTime::now());
        for datum in rollup::rollup(samples, self.kpl.as_ref(), self.kcl.as_ref()) {
            let namespace = datum.namespace.clone();
            self.queue
                .push_back((namespace, to_metric_datum(datum, timestamp)));
        }
        let excess = self.queue.len().saturating_sub(self.max_queued);
        if excess > 0 {
            self.queue.drain(..excess);
            self.counters
                .datums_dropped
                .fetch_add(excess as u64, Ordering::Relaxed);
            tracing::warn!(
                dropped = excess,
                bound = self.max_queued,
                "CloudWatch metrics could not be sent in time: the oldest datums were dropped"
            );
        }
    }

    /// Sends the queue in batches of one namespace each, oldest first; stops at the first call
    /// that fails for a reason worth retrying (the rest waits for the next period).
    async fn send_queued(&mut self) {
        while let Some((namespace, _)) = self.queue.front() {
            let namespace = namespace.clone();
            let mut batch = Vec::with_capacity(DATUMS_PER_REQUEST.min(self.queue.len()));
            while batch.len() < DATUMS_PER_REQUEST
                && self.queue.front().is_some_and(|(n, _)| *n == namespace)
            {
                batch.push(self.queue.pop_front().expect("checked").1);
            }
            let count = batch.len() as u64;
            let call = self
                .client
                .put_metric_data()
                .namespace(&namespace)
                .set_metric_data(Some(batch.clone()))
                .send();
            let outcome = tokio::time::timeout(self.request_timeout, call).await;
            match outcome {
                Ok(Ok(_)) => {
                    self.counters.requests_sent.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .datums_sent
                        .fetch_add(count, Ordering::Relaxed);
                }
                Ok(Err(error)) if !worth_retrying(&error) => {
                    self.counters
                        .requests_failed
                        .fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .datums_dropped
                        .fetch_add(count, Ordering::Relaxed);
                    tracing::warn!(
                        namespace,
                        datums = count,
                        error = %error_text(&error, MESSAGE_LIMIT),
                        "CloudWatch rejected PutMetricData: its datums are dropped"
                    );
                }
                failed => {
                    self.counters
                        .requests_failed
                        .fetch_add(1, Ordering::Relaxed);
                    let reason = match failed {
                        Ok(Err(error)) => error_text(&error, MESSAGE_LIMIT),
                        _ => format!("no answer within {:?}", self.request_timeout),
                    };
                    tracing::debug!(namespace, datums = count, error = %reason, "PutMetricData failed; sent again at the next period");
                    for datum in batch.into_iter().rev() {
                        self.queue.push_front((namespace.clone(), datum));
                    }
                    return;
                }
            }
        }
    }
}

/// Throttling, 5xx, timeouts and connection failures are retried; other answers (an invalid
/// datum, access denied) would fail again.
fn worth_retrying<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            code.contains("Throttl")
                || code.contains("InternalFailure")
                || code.contains("InternalService")
                || code.contains("ServiceUnavailable")
                || code.is_empty()
        }
        _ => true,
    }
}

fn to_metric_datum(datum: Datum, timestamp: aws_smithy_types::DateTime) -> MetricDatum {
    let unit = match datum.unit {
        catalog::Unit::Count => StandardUnit::Count,
        catalog::Unit::Bytes => StandardUnit::Bytes,
        catalog::Unit::Milliseconds => StandardUnit::Milliseconds,
    };
    let dimensions = datum
        .dimensions
        .into_iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect();
    MetricDatum::builder()
        .metric_name(datum.name)
        .set_dimensions(Some(dimensions))
        .timestamp(timestamp)
        .unit(unit)
        .statistic_values(
            CwSet::builder()
                .sample_count(datum.set.count as f64)
                .sum(datum.set.sum)
                .minimum(datum.set.min)
                .maximum(datum.set.max)
                .build(),
        )
        .build()
}
