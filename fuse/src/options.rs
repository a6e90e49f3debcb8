//! `kfs mount`'s command line and its `-o` options (also what `mount.kfs` passes from
//! `/etc/fstab`).

use crate::state::Settings;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// `kfs mount [--master ADDR] MOUNTPOINT [-o OPTIONS] [--foreground]`.
#[derive(Args, Debug, Clone)]
pub struct MountOptions {
    /// Where to mount (an empty directory).
    pub mountpoint: PathBuf,
    /// The KFS directory whose contents appear at MOUNTPOINT.
    #[arg(long, default_value = "/")]
    pub root: String,
    /// Mount options, comma-separated: ro, rw, sync (every change durable when answered; by
    /// default at fsync), async, allow_other, allow_root, attr_timeout=SECS,
    /// entry_timeout=SECS, negative_timeout=SECS, root=PATH, master=ADDR, credentials=FILE,
    /// fsname=NAME, log=FILE; the
    /// generic ones mount(8) passes (defaults, _netdev, nofail, auto, noauto, user, nouser,
    /// users, exec, noexec, suid, nosuid, dev, nodev, atime, noatime, relatime, x-systemd.*)
    /// are accepted.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Stay in the foreground (logs on standard error) instead of detaching.
    #[arg(short, long)]
    pub foreground: bool,
    /// The credentials file of the KFS user the mount acts as (default: KFS_CREDENTIALS, else
    /// ~/.config/kfs/credentials).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Where a detached mount writes its log (appended; default: standard error until it is
    /// ready, then nowhere). `RUST_LOG` sets how much (default: warnings).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

/// The mount options, parsed.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub settings: Settings,
    pub allow_other: bool,
    /// `allow_root`: root may enter too, besides the user who mounted.
    pub allow_root: bool,
    pub root: Option<String>,
    pub master: Option<String>,
    pub credentials: Option<PathBuf>,
    pub fsname: Option<String>,
    pub log: Option<PathBuf>,
    /// Kernel flags passed through: `noexec`, `nosuid`, `nodev`, `noatime`...
    pub kernel: Vec<fuser::MountOption>,
}

/// A mount option that is not understood, or a bad value.
#[derive(Debug, thiserror::Error)]
#[error("mount option '{option}': {why}")]
pub struct OptionError {
    pub option: String,
    pub why: String,
}

fn seconds(option: &str, value: &str) -> Result<Duration, OptionError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| OptionError {
            option: option.to_string(),
            why: "expected seconds (0 to 86400)".into(),
        })
}

impl Parsed {
    /// When the master answers the mount's changes (`Logged` unless `-o sync`): the mount's
    /// client must be made with it (`ClientOptions::with_durability`).
    pub fn durability(&self) -> kfs_common::proto::master::Durability {
        use kfs_common::proto::master::Durability;
        match self.settings.synced {
            true => Durability::Synced,
            false => Durability::Logged,
        }
    }
}

impl MountOptions {
    /// Parses every `-o` list.
    pub fn parse(&self) -> Result<Parsed, OptionError> {
        use fuser::MountOption as K;
        let mut parsed = Parsed::default();
        for option in self.options.iter().flat_map(|list| list.split(',')) {
            let (key, value) = match option.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (option, None),
            };
            match (key, value) {
                ("", None) => {}
                ("ro", None) => parsed.settings.read_only = true,
                ("rw", None) => parsed.settings.read_only = false,
                ("sync" | "dirsync", None) => parsed.settings.synced = true,
                ("async", None) => parsed.settings.synced = false,
                ("allow_other", None) => parsed.allow_other = true,
                ("allow_root", None) => parsed.allow_root = true,
                ("attr_timeout", Some(v)) => parsed.settings.attr_ttl = seconds(option, v)?,
                ("entry_timeout", Some(v)) => parsed.settings.entry_ttl = seconds(option, v)?,
                ("negative_timeout", Some(v)) => parsed.settings.negative_ttl = seconds(option, v)?,
                ("root", Some(v)) => parsed.root = Some(v.to_string()),
                ("master", Some(v)) => parsed.master = Some(v.to_string()),
                ("credentials", Some(v)) => parsed.credentials = Some(PathBuf::from(v)),
                ("fsname", Some(v)) => parsed.fsname = Some(v.to_string()),
                ("log", Some(v)) => parsed.log = Some(PathBuf::from(v)),
                ("noexec", None) => parsed.kernel.push(K::NoExec),
                ("nosuid", None) => parsed.kernel.push(K::NoSuid),
                ("nodev", None) => parsed.kernel.push(K::NoDev),
                ("noatime", None) => parsed.kernel.push(K::NoAtime),
                ("exec", None) => parsed.kernel.push(K::Exec),
                ("suid", None) => parsed.kernel.push(K::Suid),
                ("dev", None) => parsed.kernel.push(K::Dev),
                (
                    "atime"
                    | "relatime"
                    | "strictatime"
                    | "defaults"
                    | "_netdev"
                    | "nofail"
                    | "auto"
                    | "noauto"
                    | "user"
                    | "nouser"
                    | "users"
                    | "owner"
                    | "default_permissions",
                    None,
                ) => {}
                (k, _) if k.starts_with("x-") || k.starts_with("comment") => {}
                _ => {
                    return Err(OptionError {
                        option: option.to_string(),
                        why: "not a kfs mount option (see kfs mount --help)".into(),
                    });
                }
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &str) -> Result<Parsed, OptionError> {
        MountOptions {
            mountpoint: "/mnt".into(),
            root: "/".into(),
            options: vec![list.to_string()],
            foreground: false,
            credentials: None,
            log: None,
        }
        .parse()
    }

    #[test]
    fn fstab_options_parse_and_unknown_ones_are_named() {
        let p =
            parse("defaults,_netdev,ro,attr_timeout=0.5,root=/photos,x-systemd.automount").unwrap();
        assert!(p.settings.read_only);
        assert_eq!(p.settings.attr_ttl, Duration::from_millis(500));
        assert_eq!(
            p.settings.negative_ttl,
            Duration::ZERO,
            "off unless asked for"
        );
        assert_eq!(p.root.as_deref(), Some("/photos"));
        let p = parse("negative_timeout=2").unwrap();
        assert_eq!(p.settings.negative_ttl, Duration::from_secs(2));
        let e = parse("rw,bogus=1").unwrap_err();
        assert_eq!(e.option, "bogus=1");
        assert!(parse("attr_timeout=-1").is_err());
    }
}
