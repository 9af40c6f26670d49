//! The producer as an Erlang resource: shared by every process that holds the term.

use std::sync::{Arc, Mutex};

use kinesis_producer::{Producer, PutHandle, SubmitError, UserRecord};
use rustler::{Encoder, Env, LocalPid, Monitor, Resource};

use crate::atoms;
use crate::deliveries::Deliveries;
use crate::runtime::runtime;
use crate::terms::{PutResult, Reply};

/// What `start_link/1` returns as `Producer`. Garbage-collecting it without `stop/1` still
/// delivers what is buffered (the pipeline drains when its last handle goes), but `stop/1` is
/// the way to know when that is done.
pub struct ProducerResource {
    shared: Arc<Shared>,
    /// The process whose death stops the producer (the `kinesis_producer` gen_server).
    owner: Mutex<Option<LocalPid>>,
}

struct Shared {
    producer: Producer,
    deliveries: Deliveries,
    stopped: tokio::sync::OnceCell<()>,
}

#[rustler::resource_impl]
impl Resource for ProducerResource {
    const IMPLEMENTS_DOWN: bool = true;

    /// The owner died (even by `kill`, when `terminate/2` does not run): stop the producer.
    /// Records already taken still resolve and their outcomes still go to their callers.
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        let shared = self.shared.clone();
        runtime().spawn(async move { shared.stop().await });
    }
}

impl Shared {
    /// Shuts the producer down once (concurrent callers wait for the same shutdown), then waits
    /// until every outcome message has been sent.
    async fn stop(&self) {
        self.stopped
            .get_or_init(|| async {
                // `Closed` only means the pipeline had already stopped: nothing is left to do.
                let _ = self.producer.clone().shutdown().await;
            })
            .await;
        self.deliveries.settled().await;
    }
}

impl ProducerResource {
    /// A resource for a started producer.
    pub fn new(producer: Producer) -> Self {
        ProducerResource {
            shared: Arc::new(Shared {
                producer,
                deliveries: Deliveries::default(),
                stopped: tokio::sync::OnceCell::new(),
            }),
            owner: Mutex::new(None),
        }
    }

    /// The producer.
    pub fn producer(&self) -> &Producer {
        &self.shared.producer
    }

    /// The owner, if one was set.
    pub fn owner(&self) -> Option<LocalPid> {
        *self.owner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `pid` as the owner; returns false when there already is one.
    pub fn set_owner(&self, pid: LocalPid) -> bool {
        let mut owner = self.owner.lock().unwrap_or_else(|e| e.into_inner());
        if owner.is_some() {
            return false;
        }
        *owner = Some(pid);
        true
    }

    /// Takes `record` if there is room now: `Ok` means its outcome will reach `reply`.
    pub fn try_put(&self, record: UserRecord, reply: Reply) -> Result<(), (SubmitError, Reply)> {
        match self.shared.producer.try_put(record) {
            Ok(handle) => {
                self.deliver(handle, reply);
                Ok(())
            }
            Err(error) => Err((error, reply)),
        }
    }

    /// Waits on the runtime for room, then takes `record`: sends `{kinesis_put, Ref, accepted}`
    /// when taken (the caller's `put/3` waits for it) and later its outcome, or
    /// `{kinesis_put, Ref, {error, closed}}` if the producer stops first.
    pub fn put_when_room(&self, record: UserRecord, reply: Reply) {
        let shared = self.shared.clone();
        let token = shared.deliveries.token();
        runtime().spawn(async move {
            match shared.producer.put(record).await {
                Ok(handle) => {
                    reply
                        .duplicate()
                        .send(atoms::kinesis_put(), atoms::accepted());
                    let result = handle.await;
                    reply.send(atoms::kinesis_put(), PutResult(result));
                }
                Err(error) => reply.send(atoms::kinesis_put(), submit_error(&error)),
            }
            drop(token);
        });
    }

    fn deliver(&self, handle: PutHandle, reply: Reply) {
        let token = self.shared.deliveries.token();
        runtime().spawn(async move {
            let result = handle.await;
            reply.send(atoms::kinesis_put(), PutResult(result));
            drop(token);
        });
    }

    /// Sends everything buffered now; answers `{kinesis_flushed, Ref, ok | {error, closed}}` once
    /// every record put before this call is resolved and its outcome message sent.
    pub fn flush(&self, reply: Reply) {
        let shared = self.shared.clone();
        // Switch generations now: the puts made before this call are the ones to wait for.
        let settled = shared.deliveries.settled();
        runtime().spawn(async move {
            let flushed = shared.producer.flush().await;
            settled.await;
            match flushed {
                Ok(()) => reply.send(atoms::kinesis_flushed(), atoms::ok()),
                Err(_) => reply.send(atoms::kinesis_flushed(), (atoms::error(), atoms::closed())),
            }
        });
    }

    /// Flushes and shuts down (once); answers `{kinesis_stopped, Ref, ok}` when every outcome
    /// message has been sent.
    pub fn stop(&self, reply: Reply) {
        let shared = self.shared.clone();
        runtime().spawn(async move {
            shared.stop().await;
            reply.send(atoms::kinesis_stopped(), atoms::ok());
        });
    }
}

/// `{error, Reason}` for a record `put` did not take.
pub fn submit_error(error: &SubmitError) -> SubmitReason {
    match error {
        SubmitError::Invalid(e) => SubmitReason::Invalid(e.to_string()),
        SubmitError::Full(_) => SubmitReason::Full,
        SubmitError::Closed(_) => SubmitReason::Closed,
        other => SubmitReason::Other(other.to_string()),
    }
}

/// Why a record was not taken, as `{error, full | closed | {invalid, Msg} | {other, Msg}}`.
pub enum SubmitReason {
    /// `{invalid, Message}`: a bad partition key, explicit hash key or data.
    Invalid(String),
    /// `full`: `try_put` found no room.
    Full,
    /// `closed`: the producer is stopped.
    Closed,
    /// `{other, Message}`.
    Other(String),
}

impl Encoder for SubmitReason {
    fn encode<'a>(&self, env: Env<'a>) -> rustler::Term<'a> {
        let reason = match self {
            SubmitReason::Invalid(message) => (atoms::invalid(), message.as_str()).encode(env),
            SubmitReason::Full => atoms::full().encode(env),
            SubmitReason::Closed => atoms::closed().encode(env),
            SubmitReason::Other(message) => (atoms::other(), message.as_str()).encode(env),
        };
        (atoms::error(), reason).encode(env)
    }
}
