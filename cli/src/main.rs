//! `kinesis`: a command-line tool for Kinesis streams built on this SDK.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod agg;
mod stream;

#[derive(Parser)]
#[command(name = "kinesis", version, about = "Tools for Amazon Kinesis Data Streams", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connection: stream::Connection,
}

#[derive(Subcommand)]
enum Command {
    /// Encode and decode KPL aggregated records (no network).
    #[command(subcommand)]
    Agg(AggCommand),
    /// Put lines (or JSON lines) from stdin into a stream through the producer.
    Put(stream::PutArgs),
    /// Print a stream's records as they arrive, deaggregated.
    Tail(stream::TailArgs),
    /// Show an application's lease table: owner, counter, checkpoint and parents per shard.
    Leases(stream::LeasesArgs),
}

#[derive(Subcommand)]
enum AggCommand {
    /// Aggregate user records into Kinesis records.
    ///
    /// Reads JSON lines `{"partition_key": "...", "explicit_hash_key": "..." (optional), "data": "<base64>"}`
    /// and writes one JSON line per Kinesis record: `{"partition_key", "explicit_hash_key", "data"}`.
    /// Records are packed in input order; an aggregate holding a single record is written as that
    /// plain record. Every input line is checked before anything is written: on any bad line, each
    /// problem is reported with its line number and nothing is written.
    Encode(EncodeArgs),
    /// Split Kinesis records into user records.
    ///
    /// Reads JSON lines `{"data": "<base64>", "partition_key": "..." (optional), "sequence_number": "..." (optional)}`
    /// and writes one JSON line per user record: `{"partition_key", "explicit_hash_key", "data",
    /// "sequence_number", "sub_sequence_number", "aggregated"}`. A record that is not an aggregate is
    /// written as one plain record; one that carries the aggregate magic but is corrupt is also
    /// written as a plain record, with a warning naming its line on stderr.
    Decode,
}

#[derive(Args)]
struct EncodeArgs {
    /// Largest encoded aggregate in bytes (KPL `AggregationMaxSize`, 64..=1048576).
    #[arg(long, default_value_t = kinesis_aggregation::DEFAULT_MAX_AGGREGATE_SIZE)]
    max_size: usize,
    /// Most user records in one aggregate (KPL `AggregationMaxCount`).
    #[arg(long, default_value_t = kinesis_aggregation::DEFAULT_MAX_AGGREGATE_COUNT)]
    max_count: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let network = match cli.command {
        Command::Put(args) => Some(run(stream::put(args, &cli.connection))),
        Command::Tail(args) => Some(run(stream::tail(args, &cli.connection))),
        Command::Leases(args) => Some(run(stream::leases(args, &cli.connection))),
        Command::Agg(command) => return agg_main(command),
    };
    network.unwrap_or(ExitCode::SUCCESS)
}

/// Runs a network subcommand on a Tokio runtime; one clear line and a non-zero exit on failure.
fn run(command: impl std::future::Future<Output = Result<(), stream::Failure>>) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`kinesis tail | head`): that is how a pipe ends, not a failure.
        Err(error)
            if error
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kinesis: {error}");
            ExitCode::FAILURE
        }
    }
}

fn agg_main(command: AggCommand) -> ExitCode {
    let stdin = io::stdin().lock();
    let mut stdout = BufWriter::new(io::stdout().lock());
    let result = match command {
        AggCommand::Encode(args) => agg::encode(stdin, &mut stdout, args.max_size, args.max_count)
            .map(|summary| {
                eprintln!(
                    "{} user records → {} Kinesis records",
                    summary.user_records, summary.kinesis_records
                )
            }),
        AggCommand::Decode => agg::decode(stdin, &mut stdout, &mut io::stderr()).map(|summary| {
            eprintln!(
                "{} Kinesis records ({} aggregates, {} plain, {} corrupt) → {} user records",
                summary.kinesis_records,
                summary.aggregates,
                summary.plain,
                summary.corrupt,
                summary.user_records
            )
        }),
    };
    match result.and_then(|()| stdout.flush().map_err(agg::Error::from)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kinesis: {error}");
            ExitCode::FAILURE
        }
    }
}
