//! CPU time and resident memory from `/proc` (Linux), without `unsafe` calls into libc.

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

/// One thread, named by its kernel id, so its CPU time can be read from another thread.
#[derive(Debug, Clone)]
pub struct ThreadCpu {
    tid: String,
}

impl ThreadCpu {
    /// The calling thread.
    pub fn current() -> ThreadCpu {
        let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
        let tid = link
            .file_name()
            .and_then(|n| n.to_str())
            .expect("/proc/thread-self is <pid>/task/<tid>")
            .to_owned();
        ThreadCpu { tid }
    }
}

/// CPU time `thread` has used: the scheduler's nanosecond count (`schedstat`) where the kernel
/// keeps it, else user plus system ticks.
pub fn thread_cpu(thread: &ThreadCpu) -> Duration {
    let dir = format!("/proc/self/task/{}", thread.tid);
    let nanos = std::fs::read_to_string(format!("{dir}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .filter(|&ns| ns > 0);
    match nanos {
        Some(ns) => Duration::from_nanos(ns),
        None => stat_cpu(&std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default()),
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

/// Resident memory of the process.
#[derive(Debug, Clone, Copy)]
pub struct Rss {
    /// `VmRSS`: resident now, bytes.
    pub current: u64,
    /// `VmHWM`: the most resident at any time (since the last [`reset_peak`]), bytes.
    pub peak: u64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/self/status`.
pub fn rss() -> Rss {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    Rss {
        current: field("VmRSS:"),
        peak: field("VmHWM:"),
    }
}

/// Resets `VmHWM` to the current RSS (writing 5 to `/proc/self/clear_refs`, Linux ≥ 4.0), so a
/// later peak is the peak of what ran since. Returns false when the kernel refuses.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Bytes in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
