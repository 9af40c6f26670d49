//! A record processor's child process: started from `executableName` in the properties file's
//! directory, spoken to over stdin/stdout one JSON line at a time; its stderr is forwarded to the
//! daemon's stderr with the shard as prefix.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use kinesis_aggregation::ShardId;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::protocol::{Action, ChildLine, ChildMessage, DaemonMessage, parse_child_line};

/// How long a child may take to exit once its stdin is closed before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// A partial stderr line (amazon-kclpy's sample writes without newlines) is forwarded once the
/// child has been quiet this long, or once it grows past [`PARTIAL_LINE_MAX`].
const PARTIAL_LINE_FLUSH: Duration = Duration::from_millis(200);
const PARTIAL_LINE_MAX: usize = 64 * 1024;

/// What went wrong with a child process. Any of these fails the shard's current call; the child
/// is killed and started again for the next one.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ChildError {
    /// `executableName`'s program was not found.
    #[error(
        "executable {program:?} not found (searched PATH and {working_dir}); check executableName"
    )]
    NotFound {
        /// The program as written.
        program: String,
        /// The directory relative names are also looked up in.
        working_dir: PathBuf,
    },
    /// The process could not be started.
    #[error("starting {program} failed: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing to the child's stdin failed (it exited, or closed stdin).
    #[error("shard {shard}: writing to the child failed: {source}")]
    Write {
        /// The shard.
        shard: ShardId,
        /// Why.
        source: std::io::Error,
    },
    /// The child closed its stdout (exited) while the daemon waited for `action`'s answer.
    #[error("shard {shard}: the child exited ({status}) while handling {action}")]
    Exited {
        /// The shard.
        shard: ShardId,
        /// The action being handled.
        action: &'static str,
        /// The exit status, if known.
        status: String,
    },
    /// The child sent a malformed protocol message.
    #[error("shard {shard}: {source}")]
    Malformed {
        /// The shard.
        shard: ShardId,
        /// What was wrong.
        source: crate::protocol::MalformedMessage,
    },
    /// The child answered with a status for another action.
    #[error("shard {shard}: expected status for {expected}, got status for {got:?}")]
    WrongStatus {
        /// The shard.
        shard: ShardId,
        /// The action being handled.
        expected: &'static str,
        /// The child's `responseFor`.
        got: String,
    },
    /// The child did not answer within `timeoutInSeconds`.
    #[error("shard {shard}: no answer to {action} within {after:?}")]
    Timeout {
        /// The shard.
        shard: ShardId,
        /// The action being handled.
        action: &'static str,
        /// The limit.
        after: Duration,
    },
}

/// Starts children: the command from `executableName`, run in the properties file's directory.
#[derive(Debug, Clone)]
pub struct Launcher {
    program: PathBuf,
    args: Vec<String>,
    working_dir: PathBuf,
    response_timeout: Option<Duration>,
}

impl Launcher {
    /// Resolves the program now, so a wrong `executableName` fails at startup rather than on the
    /// first shard. A name without `/` is looked up in `PATH`, then in `working_dir` (where
    /// KCL sample files expect `executableName = sample_kclpy_app.py` to be found); a relative
    /// path with `/` is relative to `working_dir`.
    pub fn new(
        command: &[String],
        working_dir: &Path,
        response_timeout: Option<Duration>,
    ) -> Result<Self, ChildError> {
        let (program, args) = command.split_first().ok_or_else(|| ChildError::NotFound {
            program: String::new(),
            working_dir: working_dir.to_owned(),
        })?;
        let resolved =
            resolve_program(program, working_dir, std::env::var_os("PATH")).ok_or_else(|| {
                ChildError::NotFound {
                    program: program.clone(),
                    working_dir: working_dir.to_owned(),
                }
            })?;
        Ok(Launcher {
            program: resolved,
            args: args.to_vec(),
            working_dir: working_dir.to_owned(),
            response_timeout,
        })
    }

    /// The resolved program.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Starts a child for `shard`.
    pub fn spawn(&self, shard: &ShardId) -> Result<Child, ChildError> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.working_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group: Ctrl-C in a terminal reaches only the daemon, which then asks
        // every child to shut down (and lets it checkpoint) instead of the children dying first.
        #[cfg(unix)]
        command.process_group(0);
        let mut process = command.spawn().map_err(|source| ChildError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let stdin = process.stdin.take().expect("piped");
        let stdout = process.stdout.take().expect("piped");
        let stderr = process.stderr.take().expect("piped");
        let (sender, messages) = mpsc::channel(16);
        let reader = tokio::spawn(read_stdout(shard.clone(), stdout, sender));
        let stderr_task = tokio::spawn(forward_stderr(shard.to_string(), stderr));
        tracing::info!(%shard, pid = process.id(), program = %self.program.display(), "child started");
        Ok(Child {
            shard: shard.clone(),
            process,
            stdin: Some(stdin),
            messages,
            tasks: [reader, stderr_task],
            response_timeout: self.response_timeout,
        })
    }
}

fn resolve_program(
    program: &str,
    working_dir: &Path,
    path_var: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    let as_path = Path::new(program);
    if program.contains('/') {
        let full = if as_path.is_absolute() {
            as_path.to_owned()
        } else {
            working_dir.join(as_path)
        };
        return full.is_file().then_some(full);
    }
    path_var
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .chain(std::iter::once(working_dir.join(program)))
        .find(|candidate| candidate.is_file())
}

/// A running child process.
pub struct Child {
    shard: ShardId,
    process: tokio::process::Child,
    stdin: Option<ChildStdin>,
    messages: mpsc::Receiver<Result<ChildMessage, ChildError>>,
    tasks: [JoinHandle<()>; 2],
    response_timeout: Option<Duration>,
}

impl Child {
    /// The shard this child processes.
    pub fn shard(&self) -> &ShardId {
        &self.shard
    }

    /// Writes one message.
    pub async fn send(&mut self, message: &DaemonMessage) -> Result<(), ChildError> {
        let write_error = |source| ChildError::Write {
            shard: self.shard.clone(),
            source,
        };
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            write_error(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "stdin already closed",
            ))
        })?;
        let line = message.to_line();
        stdin
            .write_all(line.as_bytes())
            .await
            .map_err(write_error)?;
        stdin.flush().await.map_err(write_error)
    }

    /// The next protocol message while the child handles `action`.
    pub async fn next_message(&mut self, action: Action) -> Result<ChildMessage, ChildError> {
        let next = match self.response_timeout {
            None => self.messages.recv().await,
            Some(limit) => match tokio::time::timeout(limit, self.messages.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    return Err(ChildError::Timeout {
                        shard: self.shard.clone(),
                        action: action.as_str(),
                        after: limit,
                    });
                }
            },
        };
        match next {
            Some(message) => message,
            None => {
                // Stdout closed: the child is exiting; report how it ended if it did so quickly.
                let status = tokio::time::timeout(Duration::from_secs(1), self.process.wait())
                    .await
                    .ok()
                    .and_then(Result::ok);
                Err(ChildError::Exited {
                    shard: self.shard.clone(),
                    action: action.as_str(),
                    status: describe(status),
                })
            }
        }
    }

    /// Ends the child as the Java daemon does after its last message: closes its stdin (the
    /// protocol's end), waits for it to exit (killing it after a grace period) and for its
    /// output to be drained.
    pub async fn shut_down(mut self) {
        drop(self.stdin.take());
        let status = match tokio::time::timeout(EXIT_GRACE, self.process.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::warn!(shard = %self.shard, "child did not exit {EXIT_GRACE:?} after its stdin closed; killing it");
                let _ = self.process.kill().await;
                self.process.wait().await.ok()
            }
        };
        tracing::info!(shard = %self.shard, status = describe(status), "child exited");
        self.drain().await;
    }

    /// Kills the child (it failed or hung).
    pub async fn kill(mut self) {
        drop(self.stdin.take());
        let _ = self.process.kill().await;
        let status = self.process.wait().await.ok();
        tracing::info!(shard = %self.shard, status = describe(status), "child killed");
        self.drain().await;
    }

    async fn drain(&mut self) {
        for task in &mut self.tasks {
            // A grandchild holding the pipes open must not block the daemon.
            if tokio::time::timeout(Duration::from_secs(2), &mut *task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "still running".to_owned(), |s| s.to_string())
}

/// Reads the child's stdout: protocol messages go to the channel; anything else is logged and
/// skipped, as the Java daemon does (applications print).
async fn read_stdout(
    shard: ShardId,
    stdout: ChildStdout,
    messages: mpsc::Sender<Result<ChildMessage, ChildError>>,
) {
    let mut reader = BufReader::new(stdout);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%shard, %error, "reading the child's stdout failed");
                return;
            }
        }
        let line = String::from_utf8_lossy(&buffer);
        let message = match parse_child_line(&line) {
            Ok(ChildLine::Empty) => continue,
            Ok(ChildLine::NotAMessage(text)) => {
                tracing::info!(%shard, line = %text, "skipping a line on the child's stdout that is not a message");
                continue;
            }
            Ok(ChildLine::Message(message)) => Ok(message),
            Err(source) => Err(ChildError::Malformed {
                shard: shard.clone(),
                source,
            }),
        };
        if messages.send(message).await.is_err() {
            return;
        }
    }
}

/// Copies the child's stderr to the daemon's, each line prefixed with the shard.
async fn forward_stderr(shard: String, stderr: ChildStderr) {
    forward_lines(stderr, |line| {
        let mut out = std::io::stderr().lock();
        let _ = writeln!(out, "[{shard}] {line}");
    })
    .await;
}

async fn forward_lines(mut input: impl AsyncRead + Unpin, mut emit: impl FnMut(&str)) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let mut emit_bytes = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        emit(text.trim_end_matches('\r'));
    };
    loop {
        let read = if pending.is_empty() {
            input.read(&mut chunk).await
        } else {
            // `read` is cancel-safe: a timeout loses nothing.
            match tokio::time::timeout(PARTIAL_LINE_FLUSH, input.read(&mut chunk)).await {
                Ok(read) => read,
                Err(_) => {
                    emit_bytes(&pending);
                    pending.clear();
                    continue;
                }
            }
        };
        match read {
            Ok(0) | Err(_) => {
                if !pending.is_empty() {
                    emit_bytes(&pending);
                }
                return;
            }
            Ok(n) => {
                pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    emit_bytes(&pending[..end]);
                    pending.drain(..=end);
                }
                if pending.len() > PARTIAL_LINE_MAX {
                    emit_bytes(&pending);
                    pending.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_through_path_then_the_working_directory() {
        let dir = std::env::temp_dir().join(format!("multilang-resolve-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("app.py"), "").unwrap();
        std::fs::write(dir.join("bin/tool"), "").unwrap();
        let path = Some(std::env::join_paths([dir.join("bin")]).unwrap());
        assert_eq!(
            resolve_program("tool", Path::new("/nonexistent"), path.clone()),
            Some(dir.join("bin/tool"))
        );
        assert_eq!(
            resolve_program("app.py", &dir, path.clone()),
            Some(dir.join("app.py"))
        );
        assert_eq!(
            resolve_program("./app.py", &dir, None),
            Some(dir.join("./app.py"))
        );
        assert_eq!(
            resolve_program("bin/tool", &dir, None),
            Some(dir.join("bin/tool"))
        );
        assert_eq!(resolve_program("missing", &dir, path), None);
        assert_eq!(resolve_program("", &dir, None), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn stderr_lines_are_split_and_partial_lines_flushed() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = lines.clone();
        let forwarder = tokio::spawn(async move {
            forward_lines(reader, |line| seen.lock().unwrap().push(line.to_owned())).await
        });
        writer.write_all(b"one\r\ntwo\nthr").await.unwrap();
        writer.write_all(b"ee\n").await.unwrap();
        // No newline, as amazon-kclpy's sample writes: flushed once the child is quiet.
        writer.write_all(b"Record (Partition Key: a").await.unwrap();
        tokio::time::sleep(PARTIAL_LINE_FLUSH * 3).await;
        assert_eq!(
            *lines.lock().unwrap(),
            ["one", "two", "three", "Record (Partition Key: a"]
        );
        writer.write_all(b"tail").await.unwrap();
        drop(writer);
        forwarder.await.unwrap();
        assert_eq!(lines.lock().unwrap().last().unwrap(), "tail");
    }
}
