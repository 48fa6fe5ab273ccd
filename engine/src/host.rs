//! What the host lets a node use: the CPUs this process may run on (its
//! affinity mask, which is what a container's cpuset or `taskset` narrows)
//! and the lockable-memory limit glommio needs. Checked once, when a node
//! starts, so that a refusal says which limit and how to raise it.

use nix::sched::{sched_getaffinity, CpuSet};
use nix::sys::resource::{getrlimit, Resource};
use nix::unistd::Pid;

/// The least `RLIMIT_MEMLOCK` glommio starts an executor with (it checks
/// this one figure per process, whatever the shard count).
pub(crate) const MIN_MEMLOCK: u64 = 512 << 10;

/// The CPUs this process may run on, in ascending order; empty if the mask
/// cannot be read (then shards are pinned by index).
pub(crate) fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The CPU shard `index` is pinned to: the allowed CPUs in turn.
pub(crate) fn cpu_for(index: usize, allowed: &[usize]) -> usize {
    if allowed.is_empty() {
        index
    } else {
        allowed[index % allowed.len()]
    }
}

/// `Err` with what to do when the lockable-memory limit is below
/// [`MIN_MEMLOCK`]; `Ok` if it is enough or cannot be read (glommio then
/// says what it finds).
pub(crate) fn check_memlock() -> Result<(), String> {
    let Ok((soft, _hard)) = getrlimit(Resource::RLIMIT_MEMLOCK) else {
        return Ok(());
    };
    memlock_verdict(soft)
}

fn memlock_verdict(soft: u64) -> Result<(), String> {
    if soft >= MIN_MEMLOCK {
        return Ok(());
    }
    Err(format!(
        "the lockable-memory limit (RLIMIT_MEMLOCK, `ulimit -l`) is {} KiB; \
         glommio, which runs the shards, needs at least {} KiB per process. \
         Raise it: `ulimit -l {}` (or `unlimited`) in the shell that starts \
         the node, `LimitMEMLOCK=infinity` in a systemd unit, or a memlock \
         ulimit for the container (`docker run --ulimit memlock=-1:-1`; on \
         Kubernetes, the runtime's default ulimits)",
        soft >> 10,
        MIN_MEMLOCK >> 10,
        MIN_MEMLOCK >> 10,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_take_the_allowed_cpus_in_turn() {
        assert_eq!(cpu_for(0, &[2, 5]), 2);
        assert_eq!(cpu_for(1, &[2, 5]), 5);
        assert_eq!(cpu_for(2, &[2, 5]), 2);
        assert_eq!(cpu_for(3, &[]), 3);
    }

    #[test]
    fn this_process_may_run_somewhere() {
        let allowed = allowed_cpus();
        assert!(!allowed.is_empty());
        assert!(allowed.windows(2).all(|w| w[0] < w[1]), "{allowed:?}");
    }

    #[test]
    fn a_low_memlock_limit_says_which_limit_and_how_to_raise_it() {
        let error = memlock_verdict(64 << 10).unwrap_err();
        for needed in ["RLIMIT_MEMLOCK", "64 KiB", "512 KiB", "ulimit -l", "LimitMEMLOCK"] {
            assert!(error.contains(needed), "{needed:?} missing from: {error}");
        }
        assert!(memlock_verdict(MIN_MEMLOCK).is_ok());
        assert!(memlock_verdict(u64::MAX).is_ok());
    }
}
