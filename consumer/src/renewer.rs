//! Renewing the held leases on a task of their own, as the Java KCL's renewer runs on a thread of
//! its own at failoverTime/3: a slow lease-table scan, lease take, shard sync or write, or a
//! graceful shutdown waiting for its processors, never delays a renewal, so no lease held by a
//! live worker looks expired to the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kinesis_aggregation::ShardId;
use tokio::task::{JoinHandle, JoinSet};

use crate::checkpointer::HeldLease;
use crate::metrics as m;

/// The leases a worker holds, renewed every `renew_interval` until [`Renewer::stop`].
pub(crate) struct Renewer {
    leases: Arc<Mutex<HashMap<ShardId, Arc<HeldLease>>>>,
    stopping: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Renewer {
    /// Starts renewing (nothing held yet).
    pub fn start(renew_interval: Duration, failover: Duration, worker: String) -> Self {
        let leases: Arc<Mutex<HashMap<ShardId, Arc<HeldLease>>>> = Arc::default();
        let held = leases.clone();
        let (stopping, mut stop_requested) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut timer = tokio::time::interval(renew_interval);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = timer.tick() => {}
                    _ = stop_requested.wait_for(|stop| *stop) => break,
                }
                let current: Vec<Arc<HeldLease>> = held
                    .lock()
                    .expect("not poisoned")
                    .values()
                    .cloned()
                    .collect();
                // All at once: one slow write must not delay the other leases past failoverTime.
                let mut renewals = JoinSet::new();
                for lease in current {
                    renewals.spawn(renew_one(lease, failover, renew_interval, worker.clone()));
                }
                while renewals.join_next().await.is_some() {}
            }
        });
        Renewer {
            leases,
            stopping,
            task,
        }
    }

    /// Renews `lease` from now on.
    pub fn hold(&self, lease: Arc<HeldLease>) {
        self.leases
            .lock()
            .expect("not poisoned")
            .insert(lease.shard.clone(), lease);
    }

    /// Stops renewing `shard`'s lease.
    pub fn forget(&self, shard: &ShardId) {
        self.leases.lock().expect("not poisoned").remove(shard);
    }

    /// Stops renewing altogether, once the renewals under way have ended.
    ///
    /// Waited for, not aborted: an aborted renewal may still have reached the table and moved the
    /// counter without this worker learning the new one, and the release that follows (conditional
    /// on the counter) would then fail and leave the lease held until it expires.
    pub async fn stop(&mut self) {
        self.stopping.send_replace(true);
        if let Err(error) = (&mut self.task).await {
            tracing::warn!(%error, "the lease renewer ended abnormally");
        }
        self.leases.lock().expect("not poisoned").clear();
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Renews one held lease, unless a checkpoint moved its counter within the last half renew
/// interval (it renewed the lease as well); a refused renewal, or none for failoverTime, gives the
/// lease up.
///
/// Half, not a whole interval: the last renewal itself ended a little less than one interval
/// before this tick, and skipping on it would renew only every other tick, leaving one failed
/// renewal about failoverTime from looking expired.
async fn renew_one(
    held: Arc<HeldLease>,
    failover: Duration,
    renew_interval: Duration,
    worker: String,
) {
    if held.last_written.lock().expect("not poisoned").elapsed() < renew_interval / 2 {
        return;
    }
    match held.renew().await {
        Ok(()) => metrics::counter!(m::RENEW_LEASE_SUCCESS, "worker" => worker).increment(1),
        Err(error) => {
            metrics::counter!(m::RENEW_LEASE_FAILURE, "worker" => worker.clone()).increment(1);
            if error.is_condition_failed() {
                tracing::warn!(shard = %held.shard, %worker, "lease lost: another worker took it");
                metrics::counter!(m::LEASES_LOST, "worker" => worker).increment(1);
            } else if held.last_written.lock().expect("not poisoned").elapsed() > failover {
                tracing::warn!(shard = %held.shard, %error, "lease not renewed for failoverTime; giving it up");
                metrics::counter!(m::LEASES_LOST, "worker" => worker).increment(1);
                let mut lease = held.lease.lock().await;
                held.mark_lost(&mut lease);
            }
        }
    }
}
