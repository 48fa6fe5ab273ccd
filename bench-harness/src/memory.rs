//! Resident memory of this process, read from `/proc/self/status`: the
//! current size (`VmRSS`) and the peak (`VmHWM`), which [`reset_peak`] sets
//! back to the current size so that each workload gets its own peak.
//!
//! Off Linux every figure reads as 0.

/// Hands the heap memory that earlier workloads freed back to the kernel
/// (glibc's `malloc_trim`), so that it is not counted, nor silently reused,
/// by the next workload's figures.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: `malloc_trim` only walks glibc's own arenas and is safe to
        // call from any thread at any time; it takes no pointer from us.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Bytes resident now (`VmRSS`).
pub fn resident() -> u64 {
    status_field("VmRSS:")
}

/// Most bytes resident since the last [`reset_peak`] (`VmHWM`).
pub fn peak() -> u64 {
    status_field("VmHWM:")
}

/// Starts a new peak from the current size (writes `5` to
/// `/proc/self/clear_refs`); returns whether the kernel allowed it.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_field(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| parse_kib(&status, field))
        .unwrap_or(0)
}

/// Finds `field` (`"VmRSS:"`) in the text of a status file and returns its
/// value, given in kB, as bytes.
pub fn parse_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_as_bytes() {
        let status = "Name:\tbench\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_kib(status, "VmRSS:"), Some(10 << 20));
        assert_eq!(parse_kib(status, "VmHWM:"), Some(20 << 20));
        assert_eq!(parse_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_a_size_and_a_peak_at_least_as_large() {
        if cfg!(target_os = "linux") {
            let now = resident();
            assert!(now > 0);
            assert!(peak() >= now / 2, "peak {} now {now}", peak());
        }
    }
}
