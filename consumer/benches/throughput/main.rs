//! The consumer's throughput, CPU per record, failover time and DynamoDB calls, against the local
//! servers (`scripts/servers start`), in release builds.
//!
//! `cargo bench -p kinesis-consumer --bench throughput -- <MODE> [options]`
//!
//! - `throughput [--records N] [--runs R] [--idle-ms I] [--max-records M1,M2,…]`: a 4-shard
//!   kinesalite stream is pre-filled, untimed, with N (default 1,000,000) user records of 100
//!   random bytes with 16-character random keys, KPL-aggregated by `kinesis-producer` with its
//!   rate limit lifted. Then, for each `maxRecords` M (default 10,000, then 200), R times
//!   (default 3), each with a new lease table on dynalite: one worker with a no-op processor (it
//!   counts; no checkpoints), `PollingConfig` idle time I ms (default 200), from TRIM_HORIZON;
//!   timed from `build()` (which creates the lease table) to the processor receiving the last
//!   record. Reports user records/s (the median run) and CPU per record: this process (user +
//!   system, `/proc/self/stat`) and kinesalite's and dynalite's processes (`/proc/<pid>/stat`,
//!   pids from `.local/run/`). Then reads the stream's raw Kinesis records once with the SDK and
//!   times deaggregation alone over them, to show its share. Last line (the first M):
//!   `consumer_rps=<n> cpu_us_per_record=<x> kinesalite_cpu_us_per_record=<x>
//!   deagg_ns_per_record=<x> deagg_share_of_cpu=<x>`.
//! - `failover [--trials N] [--rate P]`: two workers, A and B, in this process on a 2-shard
//!   stream while a background producer puts P records/s (default 300); lease table on DynamoDB
//!   Local. A starts and holds both leases; B starts and steals one; once A has seen that loss,
//!   A is killed (`SchedulerHandle::abort`: nothing released) at N (default 4) evenly spread
//!   points of B's taker interval, and the time from the kill until B's processor receives its
//!   first record of the shard A held at the kill is measured. N trials with failoverTime 10 s
//!   and N with 3 s, all at once. Last line: `failover_ms=<n> failover_time_ms=10000
//!   bound_ms=<n> failover_3s_ms=<n> bound_3s_ms=<n>` (the worst trial of each).
//! - `ddb [--seconds S] [--idle-ms I] [--rate P]`: one worker on a 4-shard stream, failoverTime
//!   10 s, records trickling in (P records/s, default 40), `PollingConfig` idle time I ms (default
//!   the KCL's 1,500); every DynamoDB request goes through `kinesis_test_support`'s `FaultProxy`
//!   (no faults), which counts them by operation over S seconds of steady state (default 18
//!   renewal intervals, 59.5 s, so the count of renewals does not depend on the phase).
//!   Two workers at once, on their own streams and tables: one checkpoints after every batch,
//!   the other every 10 s. Last line: `ddb_calls_per_shard_minute=<x>` (checkpoint every 10 s)
//!   `ddb_calls_per_shard_minute_every_batch=<x> java_kcl_schedule_per_shard_minute=<x>`.
//!
//! - `latency [--records N] [--rate P] [--idle-ms I]`: two 2-shard kinesis-mock streams (the one
//!   local server with `SubscribeToShard`), one worker each, one reading by polling (idle time I
//!   ms, default 200), one by enhanced fan-out; N (default 300) `PutRecord` calls into each at P
//!   per second (default 20), each record carrying its send time; the processor records the time
//!   from the call to `process_records`. Last line: `polling_p50_ms=<n> polling_p99_ms=<n>
//!   fanout_p50_ms=<n> fanout_p99_ms=<n>`.
//!
//! `scripts/bench-consumer` runs the first three; `scripts/bench-fanout` runs `latency`.

mod common;
mod ddb;
mod failover;
mod latency;
mod throughput;
mod usage;

use std::process::ExitCode;

/// Command-line options; each mode uses some.
pub struct Options {
    mode: String,
    records: Option<usize>,
    runs: usize,
    trials: usize,
    seconds: Option<u64>,
    idle_ms: Option<u64>,
    max_records: Vec<i32>,
    rate: Option<u32>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        mode: String::new(),
        records: None,
        runs: 3,
        trials: 4,
        seconds: None,
        idle_ms: None,
        max_records: Vec::new(),
        rate: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| {
            args.next()
                .and_then(|v| v.replace('_', "").parse::<u64>().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            // `cargo bench` passes this to every bench binary.
            "--bench" => {}
            "--records" => options.records = Some(number("--records")?.max(1) as usize),
            "--runs" => options.runs = number("--runs")?.max(1) as usize,
            "--trials" => options.trials = number("--trials")?.max(1) as usize,
            "--seconds" => options.seconds = Some(number("--seconds")?.max(1)),
            "--idle-ms" => options.idle_ms = Some(number("--idle-ms")?),
            "--max-records" => {
                let list = args.next().unwrap_or_default();
                options.max_records = list
                    .split(',')
                    .map(|v| v.trim().replace('_', "").parse::<i32>())
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
                    .filter(|l| l.iter().all(|n| (1..=10_000).contains(n)))
                    .ok_or("--max-records needs numbers in 1..=10000, comma-separated")?;
            }
            "--rate" => options.rate = Some(number("--rate")?.clamp(1, 10_000) as u32),
            "throughput" | "failover" | "ddb" | "latency" if options.mode.is_empty() => {
                options.mode = arg
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if options.mode.is_empty() {
        return Err("which mode: throughput, failover, ddb or latency?".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("consumer bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = common::runtime();
    let result = runtime.block_on(async {
        match options.mode.as_str() {
            "throughput" => throughput::run(&options).await,
            "failover" => failover::run(&options).await,
            "latency" => latency::run(&options).await,
            _ => ddb::run(&options).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer bench ({}): {e}", options.mode);
            ExitCode::FAILURE
        }
    }
}
