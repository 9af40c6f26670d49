//! CPU time of this process and of the local servers, from `/proc` (Linux), without `unsafe`
//! calls into libc. The same reader as the producer bench's `usage.rs`.

use std::path::PathBuf;
use std::time::Duration;

/// `/proc` reports user and system time in clock ticks of `USER_HZ`, which is 100 on Linux for
/// every architecture (it is part of the ABI, whatever the kernel's `HZ`).
const USER_HZ: u64 = 100;

/// User plus system CPU time of the whole process (every thread, alive or exited), like
/// `getrusage(RUSAGE_SELF)`. Resolution 10 ms.
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    stat_cpu(&stat)
}

/// A local server started by `scripts/servers` (`kinesalite`, `dynalite`, `dynamodb-local`), found
/// by the pid file in `.local/run/`, so its CPU time can be read.
#[derive(Debug, Clone)]
pub struct Server {
    pid: Option<u32>,
}

impl Server {
    /// The server's pid from `.local/run/<name>.pid`; `None` inside when there is none (its CPU
    /// is then not reported).
    pub fn find(name: &'static str) -> Server {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../.local/run")
            .join(format!("{name}.pid"));
        let pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|pid| std::path::Path::new(&format!("/proc/{pid}/stat")).exists());
        Server { pid }
    }

    /// User plus system CPU time the server has used (its process only; Node and Java servers run
    /// in one process); `None` when its pid is unknown or the process is gone.
    pub fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        Some(stat_cpu(&stat))
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/.../stat` line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from its closing parenthesis.
fn stat_cpu(stat: &str) -> Duration {
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After ')' the first field is field 3 (state), so fields 14 and 15 are at 11 and 12.
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / USER_HZ)
}
