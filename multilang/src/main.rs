//! `kinesis-multilang-daemon`: runs a KCL MultiLangDaemon application (an amazon-kclpy app, for
//! example) from its `.properties` file, without a JVM.
//!
//! ```text
//! kinesis-multilang-daemon [--properties-file] FILE.properties
//! ```
//!
//! Logs go to stderr (`RUST_LOG` filters them); each child's stderr is forwarded there too,
//! prefixed with its shard. SIGTERM or Ctrl-C shuts down gracefully (every child gets
//! `shutdownRequested` and may checkpoint); a second signal exits at once.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kinesis_multilang::{Daemon, IgnoredKey};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "kinesis-multilang-daemon",
    about = "Run a KCL MultiLangDaemon app (e.g. amazon-kclpy) from its .properties file, without a JVM"
)]
struct Args {
    /// The KCL properties file (executableName, streamName, applicationName, …).
    #[arg(value_name = "FILE", required_unless_present = "properties_file")]
    file: Option<PathBuf>,
    /// The KCL properties file, as the Java MultiLangDaemon's option names it.
    #[arg(short = 'p', long, value_name = "FILE", conflicts_with = "file")]
    properties_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "warn,kinesis_multilang=info,kinesis_consumer=info",
                )
            }),
        )
        .init();
    let args = Args::parse();
    let path = args
        .properties_file
        .or(args.file)
        .expect("clap requires one");
    let (daemon, ignored) = match Daemon::from_file(&path) {
        Ok(read) => read,
        Err(error) => {
            eprintln!("kinesis-multilang-daemon: {error}");
            return ExitCode::from(2);
        }
    };
    for IgnoredKey { key, reason } in &ignored {
        tracing::warn!(key, reason, "ignoring property");
    }
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("kinesis-multilang-daemon: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let stop = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping");
        // A second signal means "now": the children see their stdin close and exit.
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::warn!("second signal: exiting without waiting for the children");
            std::process::exit(130);
        });
    };
    match daemon.run(stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kinesis-multilang-daemon: {error}");
            ExitCode::FAILURE
        }
    }
}
