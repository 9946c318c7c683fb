//! The memory of this process as Linux reports it in `/proc/self/status`.

/// A `kB` field of `/proc/self/status`, in bytes (None off Linux or when absent).
fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident set size now (`VmRSS`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    status_kb("VmRSS")
}

/// Peak resident set size so far (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM")
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_is_at_least_current() {
        if let (Some(now), Some(peak)) = (super::rss_bytes(), super::peak_rss_bytes()) {
            assert!(now > 0 && peak >= now, "{now} {peak}");
        }
    }
}
