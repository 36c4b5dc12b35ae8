//! The data directory of the embedded database, private to the server's
//! user: the database holds the management private key.
//!
//! Before the store opens, the directory is created `0700` if missing and
//! the database files (`meshplane.db` and SQLite's `-wal` and `-shm`) are
//! made `0600`; the database file is created `0600` if missing, and SQLite
//! gives its `-wal` and `-shm` files the database file's mode. An existing
//! directory open to group or others is tightened to `0700` when the
//! server's user owns it (it is the server's data, and the server could
//! tighten it anyway); one owned by another user is left alone with a
//! warning, since changing another user's directory is not the server's
//! decision and its owner may have granted access on purpose.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::SQLITE_FILE;

/// Mode of the data directory.
const DIR_MODE: u32 = 0o700;
/// Mode of the database files.
const FILE_MODE: u32 = 0o600;
/// Suffixes of the files SQLite keeps beside the database in WAL mode.
const SIDE_FILES: [&str; 2] = ["-wal", "-shm"];

/// Why the data directory could not be made private.
#[derive(Debug, Error)]
#[error("cannot secure {path}: {source}")]
pub struct DataDirError {
    path: String,
    source: io::Error,
}

fn failed(path: &Path) -> impl FnOnce(io::Error) -> DataDirError + '_ {
    move |source| DataDirError {
        path: path.display().to_string(),
        source,
    }
}

/// Creates or tightens `dir` and the database files in it.
pub fn prepare(dir: &Path) -> Result<(), DataDirError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(failed(dir))?;
    let meta = std::fs::metadata(dir).map_err(failed(dir))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        if meta.uid() == nix::unistd::geteuid().as_raw() {
            std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)).map_err(failed(dir))?;
            tracing::warn!(
                dir = %dir.display(),
                was = format!("{mode:o}"),
                "data directory was open to other users; set to 700"
            );
        } else {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{mode:o}"),
                owner = meta.uid(),
                "data directory belongs to another user and is open to others; \
                 it holds the server's private key"
            );
        }
    }
    let db = dir.join(SQLITE_FILE);
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(&db)
        .map_err(failed(&db))?;
    for file in std::iter::once(db.clone()).chain(SIDE_FILES.iter().map(|s| side(&db, s))) {
        match std::fs::metadata(&file) {
            Ok(meta) if meta.mode() & 0o777 != FILE_MODE => {
                std::fs::set_permissions(&file, Permissions::from_mode(FILE_MODE))
                    .map_err(failed(&file))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(&file)(e)),
        }
    }
    Ok(())
}

/// `db` with `suffix` appended to its file name, as SQLite names its
/// side files.
fn side(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn creates_private_and_tightens_what_is_ours() {
        let base = std::env::temp_dir().join(format!("meshplane-datadir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("nested").join("data");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(SQLITE_FILE)), 0o600);

        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        let db = dir.join(SQLITE_FILE);
        std::fs::set_permissions(&db, Permissions::from_mode(0o644)).unwrap();
        std::fs::write(side(&db, "-wal"), b"").unwrap();
        std::fs::set_permissions(side(&db, "-wal"), Permissions::from_mode(0o664)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&side(&db, "-wal")), 0o600);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
