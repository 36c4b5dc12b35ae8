//! The host's identity: hostname, OS, OS release and kernel version.
//!
//! On Linux the OS version is `VERSION_ID` from os-release(5) (`22.04`,
//! `12`), which is what the reference client reports; its OS-version check
//! for Linux compares the kernel version (`6.1.0-13-amd64`), read from
//! `/proc/sys/kernel/osrelease`.

/// The OS release files, in the order os-release(5) says to read them.
const OS_RELEASE: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// Hostname, OS, OS version and kernel version of this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct System {
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub kernel_version: String,
}

/// Reads them; a value that cannot be read is empty.
pub fn read() -> System {
    let os_release = OS_RELEASE
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    System {
        hostname: first_line("/proc/sys/kernel/hostname"),
        os: std::env::consts::OS.to_string(),
        os_version: os_release_value(&os_release, "VERSION_ID").unwrap_or_default(),
        kernel_version: first_line("/proc/sys/kernel/osrelease"),
    }
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The value of `key` in an os-release text: `KEY=value`, `KEY="value"` or
/// `KEY='value'`; comments and other lines are skipped.
fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        if k != key {
            return None;
        }
        let v = v.trim();
        let unquoted = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        Some(unquoted.replace("\\\"", "\"").replace("\\\\", "\\"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values() {
        let text = "# comment\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n\
                    PRETTY_NAME='Debian 12'\nID=debian\nVERSION_CODENAME=\n";
        assert_eq!(os_release_value(text, "VERSION_ID").as_deref(), Some("12"));
        assert_eq!(
            os_release_value(text, "NAME").as_deref(),
            Some("Debian GNU/Linux")
        );
        assert_eq!(
            os_release_value(text, "PRETTY_NAME").as_deref(),
            Some("Debian 12")
        );
        assert_eq!(os_release_value(text, "ID").as_deref(), Some("debian"));
        assert_eq!(
            os_release_value(text, "VERSION_CODENAME").as_deref(),
            Some("")
        );
        assert_eq!(os_release_value(text, "VERSION"), None);
    }
}
