//! Where the CLI takes a setup key from. A key on the command line is
//! visible to every local user in the process list (`ps`,
//! `/proc/<pid>/cmdline`) for as long as the process runs; a file or the
//! environment keeps it out of there.

use std::path::PathBuf;

use clap::Args;
use thiserror::Error;

/// The environment variable holding a setup key.
pub const ENV: &str = "MESHPLANE_SETUP_KEY";

/// The setup key flags of `up` and `proxy`.
#[derive(Debug, Args)]
pub struct SetupKeyArgs {
    /// The setup key, to register (needed only the first time). On the
    /// command line it shows in `ps`: prefer --setup-key-file or the
    /// MESHPLANE_SETUP_KEY environment variable.
    #[arg(long, value_name = "KEY")]
    setup_key: Option<String>,
    /// A file holding the setup key (surrounding whitespace and the final
    /// newline are ignored).
    #[arg(long, value_name = "PATH", conflicts_with = "setup_key")]
    setup_key_file: Option<PathBuf>,
}

/// Why the setup key could not be read.
#[derive(Debug, Error)]
pub enum SetupKeyError {
    #[error("cannot read the setup key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the setup key file {0} is empty")]
    Empty(PathBuf),
}

impl SetupKeyArgs {
    /// The setup key given, if any: from the file, the flag or
    /// [`ENV`], in that order.
    pub fn resolve(&self) -> Result<Option<String>, SetupKeyError> {
        self.resolve_with(std::env::var(ENV).ok())
    }

    /// [`resolve`](Self::resolve) with `env` as the environment's value.
    /// (Not clap's `env`: clap would count an inherited variable as the
    /// flag given, and refuse it next to --setup-key-file.)
    fn resolve_with(&self, env: Option<String>) -> Result<Option<String>, SetupKeyError> {
        let Some(path) = &self.setup_key_file else {
            let env = env
                .map(|key| key.trim().to_owned())
                .filter(|k| !k.is_empty());
            return Ok(self.setup_key.clone().or(env));
        };
        let text = std::fs::read_to_string(path).map_err(|source| SetupKeyError::Read {
            path: path.clone(),
            source,
        })?;
        match text.trim() {
            "" => Err(SetupKeyError::Empty(path.clone())),
            key => Ok(Some(key.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        key: SetupKeyArgs,
    }

    fn parse(args: &[&str]) -> Result<SetupKeyArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|c| c.key)
    }

    #[test]
    fn reads_the_file_trimmed_and_refuses_both_flags() {
        let dir = std::env::temp_dir().join(format!("mp-setup-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "  A2C8E62B-38F5-4553-B31E-DD66C696CEBB\r\n").unwrap();
        let path = file.to_str().unwrap();
        // The file wins over the environment, the flag too.
        let env = || Some("from-env\n".to_string());
        let key = parse(&["--setup-key-file", path])
            .unwrap()
            .resolve_with(env());
        assert_eq!(
            key.unwrap().as_deref(),
            Some("A2C8E62B-38F5-4553-B31E-DD66C696CEBB")
        );
        let key = parse(&["--setup-key", "k"]).unwrap().resolve_with(env());
        assert_eq!(key.unwrap().as_deref(), Some("k"));
        let key = parse(&[]).unwrap().resolve_with(env());
        assert_eq!(key.unwrap().as_deref(), Some("from-env"));
        let key = parse(&[]).unwrap().resolve_with(Some(" ".into()));
        assert_eq!(key.unwrap(), None);
        assert!(parse(&["--setup-key", "k", "--setup-key-file", path]).is_err());

        std::fs::write(&file, "\n \n").unwrap();
        let empty = parse(&["--setup-key-file", path])
            .unwrap()
            .resolve_with(None);
        assert_eq!(
            empty.unwrap_err().to_string(),
            format!("the setup key file {path} is empty")
        );
        let missing = dir.join("missing");
        let err = parse(&["--setup-key-file", missing.to_str().unwrap()])
            .unwrap()
            .resolve_with(None)
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "cannot read the setup key file {}: ",
                missing.display()
            )),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
