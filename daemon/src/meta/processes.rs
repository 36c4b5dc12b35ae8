//! Which of the paths the account's process checks name are running here.
//!
//! The server sends the paths; the daemon looks at every process's
//! executable (`/proc/<pid>/exe`, the full path the kernel resolved) and
//! reports the paths that match exactly, as the reference client compares
//! them. Only those paths leave the host, not the process list. Nothing is
//! scanned while no check names a path.

#[cfg(target_os = "linux")]
use std::collections::BTreeSet;

/// Most `/proc` entries looked at in one scan: bounds the work on a host
/// with a runaway number of processes (a path running only beyond it is
/// not seen).
pub const MAX_SCANNED: usize = 100_000;

/// The entries of `wanted` that some process is running, sorted.
#[cfg(target_os = "linux")]
pub fn running(wanted: &[String]) -> Vec<String> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let wanted: BTreeSet<&str> = wanted.iter().map(String::as_str).collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = BTreeSet::new();
    for entry in entries.take(MAX_SCANNED).flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        // Kernel threads and processes gone meanwhile have no link.
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        if let Some(path) = exe.to_str().and_then(|p| wanted.get(p)) {
            found.insert(*path);
            if found.len() == wanted.len() {
                break;
            }
        }
    }
    found.into_iter().map(str::to_string).collect()
}

/// Not supported here: nothing is reported as running.
#[cfg(not(target_os = "linux"))]
pub fn running(_wanted: &[String]) -> Vec<String> {
    Vec::new()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn finds_this_test_and_not_a_missing_path() {
        let me = std::env::current_exe()
            .expect("own path")
            .to_string_lossy()
            .into_owned();
        let missing = "/nonexistent/meshplane-test-binary".to_string();
        assert_eq!(running(&[missing.clone(), me.clone()]), [me]);
        assert!(running(&[missing]).is_empty());
        assert!(running(&[]).is_empty());
    }
}
