//! The Erlang binding of `kinesis-producer`: the NIF library behind the Erlang module
//! `kinesis_producer` (see `bindings/erlang/README.md` for the Erlang API; the Erlang modules are in `bindings/erlang/src`).
//!
//! ```text
//!  Erlang process                      NIF (scheduler thread, microseconds)        Tokio runtime (own threads)
//!  kinesis_producer:put(P, K, D) ──► put/7: validate, try_put ──────────────────► delivery task: await outcome
//!      ◄── {ok, Ref} / {error, {invalid, M}}        │ full: put_when_room ───────► wait for room, then as above
//!      ◄──────────────────────────── {kinesis_put, Ref, {ok, Shard, Seq} | {error, Reason}} (enif_send)
//!  flush/stop ──► flush/2, stop/2 (return at once) ─────────────────────────────► flush / shutdown, then wait
//!      ◄──────────────────────────── {kinesis_flushed | kinesis_stopped, Ref, _}    until every outcome is sent
//! ```
//!
//! No NIF blocks a scheduler: each returns at once, and whatever waits (building the producer,
//! waiting for room, flushing, shutting down, outcomes) runs on one Tokio runtime per VM, which
//! answers with messages. References are made in Erlang (`make_ref/0`) so that its `receive`
//! only scans messages that arrived after the call.

mod deliveries;
mod options;
mod resource;
mod runtime;
mod terms;

use bytes::Bytes;
use kinesis_producer::kinesis_aggregation::validate_data;
use kinesis_producer::{SubmitError, UserRecord};
use rustler::{Atom, Binary, Encoder, Env, ResourceArc, Term};

use crate::options::Settings;
use crate::resource::{ProducerResource, SubmitReason, submit_error};
use crate::runtime::runtime;
use crate::terms::Reply;

mod atoms {
    rustler::atoms! {
        ok,
        error,
        undefined,
        wait,
        accepted,
        full,
        closed,
        invalid,
        other,
        config,
        stream_not_found,
        expired,
        throttled,
        rejected,
        aborted,
        delay_ms,
        duration_ms,
        result,
        already_owned,
        kinesis_put,
        kinesis_flushed,
        kinesis_stopped,
        kinesis_producer_started,
    }
}

/// `start(Pairs, Ref) -> ok`; later `{kinesis_producer_started, Ref, {ok, Producer} | {error, Reason}}`.
#[rustler::nif]
fn start<'a>(env: Env<'a>, options: Vec<(String, String)>, reference: Term<'a>) -> Atom {
    let reply = Reply::new(env, reference);
    let settings = Settings::from_pairs(&options);
    runtime().spawn(async move {
        let started = match settings {
            Ok(settings) => settings.start().await,
            Err(error) => Err(error),
        };
        let started = started.map(|producer| ResourceArc::new(ProducerResource::new(producer)));
        reply.send(atoms::kinesis_producer_started(), started);
    });
    atoms::ok()
}

/// `put(Producer, Ref, PartitionKey, ExplicitHashKey | undefined, Data, Wait)`:
/// `ok` (the outcome will come as `{kinesis_put, Ref, _}`), `wait` (no room: taken once there
/// is, announced by `{kinesis_put, Ref, accepted}`), or `{error, full | closed | {invalid, Msg}}`.
#[rustler::nif]
fn put<'a>(
    env: Env<'a>,
    producer: ResourceArc<ProducerResource>,
    reference: Term<'a>,
    partition_key: Term<'a>,
    explicit_hash_key: Term<'a>,
    data: Term<'a>,
    wait: bool,
) -> Term<'a> {
    let record = match user_record(partition_key, explicit_hash_key, data) {
        Ok(record) => record,
        Err(message) => return SubmitReason::Invalid(message).encode(env),
    };
    match producer.try_put(record, Reply::new(env, reference)) {
        Ok(()) => atoms::ok().encode(env),
        Err((SubmitError::Full(record), reply)) if wait => {
            producer.put_when_room(*record, reply);
            atoms::wait().encode(env)
        }
        Err((error, _)) => submit_error(&error).encode(env),
    }
}

/// Builds the record; the message says what Kinesis would refuse.
fn user_record(
    partition_key: Term<'_>,
    explicit_hash_key: Term<'_>,
    data: Term<'_>,
) -> Result<UserRecord, String> {
    let key = Binary::from_term(partition_key)
        .map_err(|_| "partition key must be a binary or a string".to_owned())?;
    let key = std::str::from_utf8(key.as_slice())
        .map_err(|_| "partition key is not valid UTF-8".to_owned())?;
    let data = Binary::from_iolist(data).map_err(|_| "data must be iodata".to_owned())?;
    // Refuse oversized data before copying it on a scheduler thread.
    validate_data(data.as_slice()).map_err(|e| e.to_string())?;
    let record =
        UserRecord::new(key, Bytes::copy_from_slice(data.as_slice())).map_err(|e| e.to_string())?;
    if explicit_hash_key.decode::<Atom>().ok() == Some(atoms::undefined()) {
        return Ok(record);
    }
    let hash_key = Binary::from_term(explicit_hash_key)
        .ok()
        .and_then(|b| std::str::from_utf8(b.as_slice()).ok().map(str::to_owned))
        .ok_or_else(|| {
            "explicit hash key must be a decimal binary, string or integer".to_owned()
        })?;
    record
        .with_explicit_hash_key(&hash_key)
        .map_err(|e| e.to_string())
}

/// `flush(Producer, Ref) -> ok`; later `{kinesis_flushed, Ref, ok | {error, closed}}`.
#[rustler::nif]
fn flush<'a>(env: Env<'a>, producer: ResourceArc<ProducerResource>, reference: Term<'a>) -> Atom {
    producer.flush(Reply::new(env, reference));
    atoms::ok()
}

/// `stop(Producer, Ref) -> ok`; later `{kinesis_stopped, Ref, ok}`. Idempotent.
#[rustler::nif]
fn stop<'a>(env: Env<'a>, producer: ResourceArc<ProducerResource>, reference: Term<'a>) -> Atom {
    producer.stop(Reply::new(env, reference));
    atoms::ok()
}

/// `set_owner(Producer) -> ok | {error, already_owned}`: the calling process becomes the owner,
/// monitored by the resource, so that its death stops the producer.
#[rustler::nif]
fn set_owner<'a>(env: Env<'a>, producer: ResourceArc<ProducerResource>) -> Term<'a> {
    let pid = env.pid();
    if !producer.set_owner(pid) {
        return (atoms::error(), atoms::already_owned()).encode(env);
    }
    if env.monitor(&producer, &pid).is_none() {
        // `enif_monitor_process` fails only for a process that is already gone: that cannot be
        // the caller, so this is unreachable in practice; stop rather than leak a producer.
        return (atoms::error(), atoms::closed()).encode(env);
    }
    atoms::ok().encode(env)
}

/// `owner(Producer) -> pid() | undefined`.
#[rustler::nif]
fn owner<'a>(env: Env<'a>, producer: ResourceArc<ProducerResource>) -> Term<'a> {
    match producer.owner() {
        Some(pid) => pid.encode(env),
        None => atoms::undefined().encode(env),
    }
}

/// `info(Producer) -> #{stream, outstanding_records}`.
#[rustler::nif]
fn info<'a>(env: Env<'a>, producer: ResourceArc<ProducerResource>) -> Term<'a> {
    let producer = producer.producer();
    let pairs = [
        ("stream", producer.stream().encode(env)),
        (
            "outstanding_records",
            producer.outstanding_records().encode(env),
        ),
    ];
    let pairs: Vec<(Atom, Term<'a>)> = pairs
        .into_iter()
        .map(|(key, value)| (Atom::from_str(env, key).expect("an atom"), value))
        .collect();
    Term::map_from_pairs(env, &pairs).expect("distinct atom keys make a map")
}

rustler::init!("kinesis_producer_nif");
