//! What the daemon keeps on disk between runs, so a restart comes back as
//! the same peer: the WireGuard private key (`private.key`, mode 0600,
//! created on first start) and the settings of the last `up`
//! (`settings.json`: management URL, peer id, and whether the user took
//! the daemon down, so a restart comes back up only if it was up).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::key::PrivateKey;

const KEY_FILE: &str = "private.key";
const SETTINGS_FILE: &str = "settings.json";

/// A state file that cannot be read or written.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("state file {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
}

/// The settings of the last successful `up`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub management_url: Option<String>,
    /// The private CA the management server's certificate is checked
    /// against (`up --management-ca`), beside the Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_ca: Option<PathBuf>,
    pub peer_id: Option<String>,
    /// Set by `down`, cleared by `up`: a restarted daemon reconnects by
    /// itself unless the user wanted it down.
    #[serde(default)]
    pub down: bool,
}

impl Settings {
    /// Whether a daemon starting on these settings should reconnect on its
    /// own, as a system service does after a reboot: it was up before and
    /// nobody took it down.
    pub fn resume_at_start(&self) -> bool {
        self.management_url.is_some() && self.peer_id.is_some() && !self.down
    }
}

/// The daemon's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens `dir`, creating it (mode 0700) when missing.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The peer's private key, generated and written (0600) the first time.
    pub fn private_key(&self) -> Result<PrivateKey, StateError> {
        let path = self.dir.join(KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => text.parse().map_err(|e| StateError::Damaged {
                path,
                reason: format!("{e}"),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = PrivateKey::generate();
                write_private(&path, key.to_base64().as_bytes())
                    .map_err(|source| StateError::Io { path, source })?;
                Ok(key)
            }
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// The saved settings; defaults when none were saved yet.
    pub fn settings(&self) -> Result<Settings, StateError> {
        let path = self.dir.join(SETTINGS_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| StateError::Damaged {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Saves the settings atomically (write a temporary file, rename).
    pub fn save_settings(&self, settings: &Settings) -> Result<(), StateError> {
        let path = self.dir.join(SETTINGS_FILE);
        let tmp = self.dir.join(format!("{SETTINGS_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(settings).map_err(|e| StateError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_private(&tmp, &text)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|source| StateError::Io { path, source })
    }
}

/// Writes `bytes` to a file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_is_kept_private_and_settings_round_trip() {
        let dir = std::env::temp_dir().join(format!("meshplane-state-{}", std::process::id()));
        let state = StateDir::open(&dir).unwrap();
        let first = state.private_key().unwrap();
        let again = state.private_key().unwrap();
        assert_eq!(first.public_key(), again.public_key());
        let mode = fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        assert_eq!(state.settings().unwrap(), Settings::default());
        let saved = Settings {
            management_url: Some("https://127.0.0.1:1".into()),
            management_ca: Some("/etc/meshplane/ca.pem".into()),
            peer_id: Some("p1".into()),
            down: false,
        };
        assert!(!Settings::default().resume_at_start());
        assert!(saved.resume_at_start());
        state.save_settings(&saved).unwrap();
        assert_eq!(state.settings().unwrap(), saved);
        let down = Settings {
            down: true,
            ..saved.clone()
        };
        assert!(!down.resume_at_start());
        // Settings written before `down` existed resume.
        fs::write(
            dir.join(SETTINGS_FILE),
            r#"{"management_url":"http://127.0.0.1:1","peer_id":"p1"}"#,
        )
        .unwrap();
        assert!(state.settings().unwrap().resume_at_start());

        fs::write(dir.join(KEY_FILE), "garbage").unwrap();
        assert!(matches!(
            state.private_key(),
            Err(StateError::Damaged { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
