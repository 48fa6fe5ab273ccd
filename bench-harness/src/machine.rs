//! The machine a run measured, for the report: CPU model, cores this
//! process may use, kernel, memory and the lockable-memory limit glommio
//! needs. Read from `/proc` (and `getrlimit`); what cannot be read shows as
//! "unknown".

use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};

use crate::memory::parse_kib;
use crate::report::bytes;

/// What the report says about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The CPU's model name (`AMD EPYC`).
    pub cpu: String,
    /// Cores this process may run on.
    pub cores: usize,
    /// `Linux 6.18.0`.
    pub kernel: String,
    /// Total memory, e.g. `24.0 GiB`.
    pub memory: String,
    /// `RLIMIT_MEMLOCK` (`ulimit -l`): `unlimited` or a size.
    pub memlock: String,
}

const UNKNOWN: &str = "unknown";

impl Machine {
    /// This machine.
    pub fn this() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let kernel = format!(
            "{} {}",
            read("/proc/sys/kernel/ostype").trim(),
            read("/proc/sys/kernel/osrelease").trim()
        );
        Machine {
            cpu: cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| UNKNOWN.into()),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            kernel: if kernel.trim().is_empty() {
                UNKNOWN.into()
            } else {
                kernel
            },
            memory: parse_kib(&read("/proc/meminfo"), "MemTotal:")
                .map_or_else(|| UNKNOWN.into(), bytes),
            memlock: getrlimit(Resource::RLIMIT_MEMLOCK)
                .map_or_else(|_| UNKNOWN.into(), |(soft, _)| memlock(soft)),
        }
    }
}

/// The first `model name` of a `/proc/cpuinfo`.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map(|(_, value)| value.trim().to_owned())
}

/// A lockable-memory limit as a person reads it.
fn memlock(soft: u64) -> String {
    if soft == RLIM_INFINITY {
        "unlimited".into()
    } else if soft < 1 << 20 {
        format!("{} KiB", soft >> 10)
    } else {
        bytes(soft)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_model_is_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\n\
                       processor\t: 1\nmodel name\t: other\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC"));
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn memlock_reads_as_a_size_or_unlimited() {
        assert_eq!(memlock(RLIM_INFINITY), "unlimited");
        assert_eq!(memlock(512 << 10), "512 KiB");
        assert_eq!(memlock(8 << 20), "8 MiB");
    }

    #[test]
    fn this_machine_has_cores_and_a_kernel() {
        let m = Machine::this();
        assert!(m.cores >= 1);
        if cfg!(target_os = "linux") {
            assert!(m.kernel.starts_with("Linux "), "{m:?}");
        }
    }
}
