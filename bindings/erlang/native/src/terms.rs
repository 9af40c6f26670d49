//! How outcomes and errors look in Erlang, and the messages that carry them.

use kinesis_producer::{Attempt, PutError, PutOutcome};
use rustler::env::SavedTerm;
use rustler::{Encoder, Env, LocalPid, OwnedEnv, Term};

use crate::atoms;
use crate::options::StartError;

/// Where a message goes: the calling process, tagged with the reference it passed.
pub struct Reply {
    pid: LocalPid,
    env: OwnedEnv,
    reference: SavedTerm,
}

impl Reply {
    /// A reply to the process calling the NIF, carrying `reference` (copied out of its heap).
    pub fn new(env: Env<'_>, reference: Term<'_>) -> Reply {
        let owned = OwnedEnv::new();
        let reference = owned.save(reference);
        Reply {
            pid: env.pid(),
            env: owned,
            reference,
        }
    }

    /// Another reply to the same process with the same reference (a reply is used up by `send`).
    pub fn duplicate(&self) -> Reply {
        let owned = OwnedEnv::new();
        let reference = self.env.run(|env| owned.save(self.reference.load(env)));
        Reply {
            pid: self.pid,
            env: owned,
            reference,
        }
    }

    /// Sends `{Tag, Reference, Payload}`. Must run on a non-BEAM thread (the Tokio runtime).
    /// A receiver that has exited is not an error: nobody is waiting for the answer.
    pub fn send(self, tag: rustler::Atom, payload: impl Encoder) {
        let Reply {
            pid,
            mut env,
            reference,
        } = self;
        let _ = env.send_and_clear(&pid, |env| (tag, reference.load(env), payload).encode(env));
    }
}

/// `{ok, ShardId, SequenceNumber, SubSequenceNumber | undefined}` or `{error, Reason}`: what
/// `{kinesis_put, Ref, _}` carries. The sub-sequence number is the record's index in its KPL
/// aggregate, `undefined` when it was sent on its own.
pub struct PutResult(pub Result<PutOutcome, PutError>);

impl Encoder for PutResult {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match &self.0 {
            Ok(outcome) => (
                atoms::ok(),
                outcome.shard_id.as_str(),
                outcome.sequence_number.as_str(),
                match outcome.sub_sequence_number {
                    Some(index) => index.encode(env),
                    None => atoms::undefined().encode(env),
                },
            )
                .encode(env),
            Err(error) => (atoms::error(), put_error(env, error)).encode(env),
        }
    }
}

/// `{expired, Attempts}`, `{throttled, Attempts}`, `{rejected, Code, Message}`,
/// `{aborted, Message}` or `{other, Message}`.
fn put_error<'a>(env: Env<'a>, error: &PutError) -> Term<'a> {
    match error {
        PutError::Expired { attempts, .. } => {
            (atoms::expired(), attempt_list(env, attempts)).encode(env)
        }
        PutError::Throttled { attempts, .. } => {
            (atoms::throttled(), attempt_list(env, attempts)).encode(env)
        }
        PutError::Rejected { code, message, .. } => {
            (atoms::rejected(), code.as_str(), message.as_str()).encode(env)
        }
        PutError::Aborted { reason } => (atoms::aborted(), reason.as_str()).encode(env),
        other => (atoms::other(), other.to_string()).encode(env),
    }
}

/// Each attempt as `#{delay_ms, duration_ms, result => ok | {error, Code, Message}}`.
fn attempt_list<'a>(env: Env<'a>, attempts: &[Attempt]) -> Term<'a> {
    let items: Vec<Term<'a>> = attempts
        .iter()
        .map(|attempt| {
            let result = match &attempt.error {
                None => atoms::ok().encode(env),
                Some(e) => (atoms::error(), e.code.as_str(), e.message.as_str()).encode(env),
            };
            let pairs = [
                (atoms::delay_ms(), millis(attempt.delay).encode(env)),
                (atoms::duration_ms(), millis(attempt.duration).encode(env)),
                (atoms::result(), result),
            ];
            Term::map_from_pairs(env, &pairs).expect("distinct atom keys make a map")
        })
        .collect();
    items.encode(env)
}

fn millis(duration: std::time::Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

impl Encoder for StartError {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            StartError::Config(message) => (atoms::config(), message.as_str()).encode(env),
            StartError::StreamNotFound(stream) => {
                (atoms::stream_not_found(), stream.as_str()).encode(env)
            }
            StartError::Other(message) => (atoms::other(), message.as_str()).encode(env),
        }
    }
}
