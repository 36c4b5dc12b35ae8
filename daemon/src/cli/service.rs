//! `meshplane service install|uninstall`: the daemon as a systemd service,
//! as `netbird service install` does. The unit is the one shipped in
//! `packaging/meshplane.service` (hardened: root with only the network
//! capabilities the daemon uses), pointed at this very binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Args, Subcommand};
use thiserror::Error;

/// The packaged unit, with `/usr/bin/meshplane` as its binary.
const UNIT: &str = include_str!("../../../packaging/meshplane.service");
const UNIT_NAME: &str = "meshplane.service";
const PACKAGED_BINARY: &str = "/usr/bin/meshplane ";

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Write the systemd unit for this binary, then enable and start it.
    Install(ServiceArgs),
    /// Stop and disable the service and remove its unit.
    Uninstall(ServiceArgs),
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Where unit files go.
    #[arg(long, default_value = "/etc/systemd/system")]
    unit_dir: PathBuf,
    /// Only write or remove the unit file; do not call systemctl (for
    /// images built without a running systemd).
    #[arg(long)]
    no_systemctl: bool,
}

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("cannot find this program's path: {0}")]
    Executable(std::io::Error),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("systemctl {args}: {reason}")]
    Systemctl { args: String, reason: String },
}

/// Runs `meshplane service …`.
pub fn run(command: &ServiceCommand) -> Result<(), ServiceError> {
    match command {
        ServiceCommand::Install(args) => install(args),
        ServiceCommand::Uninstall(args) => uninstall(args),
    }
}

/// The unit text for the binary at `exe`.
fn unit_for(exe: &Path) -> String {
    UNIT.replace(PACKAGED_BINARY, &format!("{} ", exe.display()))
}

fn install(args: &ServiceArgs) -> Result<(), ServiceError> {
    let exe = std::env::current_exe().map_err(ServiceError::Executable)?;
    let path = args.unit_dir.join(UNIT_NAME);
    std::fs::create_dir_all(&args.unit_dir)
        .and_then(|()| std::fs::write(&path, unit_for(&exe)))
        .map_err(|source| ServiceError::File {
            path: path.clone(),
            source,
        })?;
    println!("wrote {}", path.display());
    if !args.no_systemctl {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", UNIT_NAME])?;
        println!("meshplane is running as a service; join with: meshplane up -m URL -k KEY");
    }
    Ok(())
}

fn uninstall(args: &ServiceArgs) -> Result<(), ServiceError> {
    if !args.no_systemctl {
        systemctl(&["disable", "--now", UNIT_NAME])?;
    }
    let path = args.unit_dir.join(UNIT_NAME);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ServiceError::File { path, source: e })
        }
        _ => {}
    }
    if !args.no_systemctl {
        systemctl(&["daemon-reload"])?;
    }
    println!("removed {}", path.display());
    Ok(())
}

fn systemctl(args: &[&str]) -> Result<(), ServiceError> {
    let failed = |reason: String| ServiceError::Systemctl {
        args: args.join(" "),
        reason,
    };
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_this_binary_and_keeps_its_hardening() {
        let unit = unit_for(Path::new("/opt/meshplane/bin/meshplane"));
        assert!(unit.contains("ExecStart=/opt/meshplane/bin/meshplane daemon"));
        assert!(!unit.contains("/usr/bin/meshplane"));
        assert!(unit.contains("CapabilityBoundingSet=CAP_NET_ADMIN"));
    }
}
