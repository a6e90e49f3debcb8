//! The one configuration loader of the daemons (master, chunkserver): built-in defaults, then
//! the TOML file given with `--config`, then command-line flags, each later source winning key
//! by key (on `figment`).
//!
//! A daemon's configuration is one serde struct with `#[serde(deny_unknown_fields, default)]`
//! whose `Default` is the one table of its defaults; its flags are a struct of `Option`s (and
//! lists) that serializes only the flags given (`skip_serializing_if`), with the keys of the
//! configuration. Invariants: an unknown key, in the file or from a flag, is an error naming
//! it; a missing file is an error (never silently the defaults); what is loaded is what
//! `validate` then checks, so a flag and a file setting are checked alike.

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A configuration that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// (The I/O error is part of the message, not a `source`, so that a report of the whole
    /// chain does not say it twice.)
    #[error("{path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// What a daemon's configuration offers the loader beyond serde.
pub trait DaemonConfig: Serialize + DeserializeOwned + Default {
    /// Checks the values (ranges, addresses) before anything starts.
    fn validate(&self) -> Result<(), ConfigError>;
    /// What `--check-config` adds: the directories the configuration names exist and are
    /// writable by this user.
    fn check_dirs(&self) -> Result<(), ConfigError>;
}

/// [`load`], then [`DaemonConfig::validate`]: what a daemon starts with.
pub fn load_valid<C: DaemonConfig>(
    file: Option<&Path>,
    flags: &impl Serialize,
) -> Result<C, ConfigError> {
    let config: C = load(file, flags)?;
    config.validate()?;
    Ok(config)
}

/// `--check-config FILE`: everything `--config FILE` would check, and the directories; an
/// error names the file.
pub fn check_file<C: DaemonConfig>(path: &Path) -> Result<(), ConfigError> {
    let config: C = from_file(path)?;
    config
        .validate()
        .and_then(|()| config.check_dirs())
        .map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// The configuration from `C`'s defaults, the TOML `file` (if given) and the `flags` given.
pub fn load<C>(file: Option<&Path>, flags: &impl Serialize) -> Result<C, ConfigError>
where
    C: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(C::default()));
    let mut source = PathBuf::from("command-line flags");
    if let Some(path) = file {
        figment = figment.merge(Toml::string(&read(path)?));
        source = path.to_path_buf();
    }
    figment
        .merge(Serialized::defaults(flags))
        .extract()
        .map_err(|e| ConfigError::Parse {
            path: source,
            message: message(e),
        })
}

/// The configuration in the TOML file at `path` over `C`'s defaults (`--check-config`).
pub fn from_file<C>(path: &Path) -> Result<C, ConfigError>
where
    C: Serialize + DeserializeOwned + Default,
{
    #[derive(Serialize)]
    struct NoFlags {}
    load(Some(path), &NoFlags {})
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Every error figment found, one per line, each naming its key.
fn message(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let what = e.kind.to_string();
            if key.is_empty() || what.contains(&format!("`{key}`")) {
                what
            } else {
                format!("{key}: {what}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Config {
        listen: String,
        copies: u32,
        http: Option<String>,
        data: Vec<PathBuf>,
    }

    impl Default for Config {
        fn default() -> Self {
            Config {
                listen: "127.0.0.1:1".into(),
                copies: 3,
                http: None,
                data: vec!["/srv/a".into()],
            }
        }
    }

    #[derive(Default, Serialize)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        copies: Option<u32>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        data: Vec<PathBuf>,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_the_defaults() {
        let f = file("copies = 5\nhttp = \"127.0.0.1:2\"\n");
        let c: Config = load(Some(f.path()), &Flags::default()).unwrap();
        assert_eq!((c.copies, c.http.as_deref()), (5, Some("127.0.0.1:2")));
        assert_eq!(c.listen, "127.0.0.1:1", "a default the file leaves alone");
        let flags = Flags {
            copies: Some(7),
            data: vec!["/srv/b".into(), "/srv/c".into()],
        };
        let c: Config = load(Some(f.path()), &flags).unwrap();
        assert_eq!(c.copies, 7);
        assert_eq!(c.data, [PathBuf::from("/srv/b"), PathBuf::from("/srv/c")]);
        assert_eq!(c.http.as_deref(), Some("127.0.0.1:2"));
        let c: Config = load(None, &Flags::default()).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unknown_keys_bad_values_and_missing_files_are_named() {
        let f = file("listen_on = \"x\"\n");
        let e = from_file::<Config>(f.path()).unwrap_err().to_string();
        assert!(
            e.contains("unknown field") && e.contains("listen_on"),
            "{e}"
        );
        let f = file("copies = \"many\"\n");
        let e = from_file::<Config>(f.path()).unwrap_err().to_string();
        assert!(e.contains("copies"), "{e}");
        let f = file("copies = [\n");
        assert!(matches!(
            from_file::<Config>(f.path()),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            from_file::<Config>(Path::new("/nonexistent/kfs.toml")),
            Err(ConfigError::Read { .. })
        ));
    }
}
