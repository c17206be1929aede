//! What /proc tells of a process: its CPU time, its resident memory, the load average, the
//! open-files limit; CPU time per phase.

use super::*;

/// utime + stime of a process, in seconds.
pub(crate) fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let Some(end) = stat.rfind(')') else {
        return f64::NAN;
    };
    // After the command name: field 3 (state) is index 0, so utime (14) is 11, stime (15) 12.
    let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (tick(11) + tick(12)) as f64 / TICKS_PER_SEC
}

/// VmRSS of a process, in kB.
pub(crate) fn rss_kb(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The 1-minute load average (other processes share the cores).
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The soft limit on open files of this process (the server inherits it).
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// CPU of the server and of the bench at one moment.
#[derive(Clone, Copy)]
pub(crate) struct Cpu {
    pub(crate) at: Instant,
    pub(crate) server: f64,
    pub(crate) bench: f64,
}

impl Cpu {
    pub(crate) fn now(server_pid: &str) -> Cpu {
        Cpu {
            at: Instant::now(),
            server: cpu_secs(server_pid),
            bench: cpu_secs("self"),
        }
    }
}

pub(crate) struct PhaseCpu {
    pub(crate) name: String,
    pub(crate) wall: f64,
    pub(crate) server: f64,
    pub(crate) bench: f64,
}

pub(crate) fn phase(name: &str, from: Cpu, to: Cpu) -> PhaseCpu {
    PhaseCpu {
        name: name.to_string(),
        wall: (to.at - from.at).as_secs_f64(),
        server: to.server - from.server,
        bench: to.bench - from.bench,
    }
}
