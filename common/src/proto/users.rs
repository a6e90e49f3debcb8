//! The users of a secured cluster, as the master's `add_user`, `remove_user`, `users` and
//! `whoami` calls carry them (client protocol 7).
//!
//! A user is a client certificate of role `user` (its common name is the user's name) that the
//! master has a record of: the record says which certificate (its SHA-256), the uid and groups
//! the user's files are owned by and checked against, and what the user may do. `admin` is
//! built in (uid 0, every right) and has no record.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The name of the built-in administrator (the credentials `kfs init-cluster` writes).
pub const ADMIN_USER: &str = "admin";
/// The first uid the master hands out when `add_user` names none.
pub const FIRST_UID: u32 = 1000;

/// What the master's refusal of a confined user's call by file id says when the master does not
/// remember (it restarted, or forgot the oldest) that the user reached the file by path: a
/// client holding the file open shows the master its path again and calls once more.
pub const REOPEN_BY_PATH: &str = "open it again by path";

/// A user, as the master checks calls against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    /// Primary group: new files and directories get it.
    pub gid: u32,
    /// Further groups the user is a member of (for group permission bits).
    pub groups: Vec<u32>,
    /// No namespace change and no write lease at all.
    pub read_only: bool,
    /// The subtree the user is confined to (`/` for all of it): every path the user names must
    /// be in it, and file ids are answered only for files the user reached through it.
    pub root: String,
    /// May run the operators' calls (`kfs admin ...`, `setrep`, `fsck`, decommissioning) and
    /// passes every permission check, as root does.
    pub admin: bool,
}

/// What [`crate::proto::master::MasterService::add_user`] asks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    pub name: String,
    /// `None`: the next free uid from [`FIRST_UID`].
    pub uid: Option<u32>,
    /// `None`: the same number as the uid.
    pub gid: Option<u32>,
    pub groups: Vec<u32>,
    pub read_only: bool,
    /// `None`: `/`.
    pub root: Option<String>,
    pub admin: bool,
    /// A certificate (PEM) the administrator issued for the user with the CA key; `None`: the
    /// master issues one (it needs the CA key among its secrets) and answers its credentials.
    pub certificate: Option<String>,
    /// Replace the record of an existing user of that name (a new certificate: the old one is
    /// refused from then on).
    pub replace: bool,
}

/// What `add_user` answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAdded {
    pub user: UserInfo,
    /// The user's credentials file (certificate, the CA's certificate, private key), when the
    /// master issued the certificate; hand it to the user, it is shown only once.
    pub credentials: Option<ByteBuf>,
}

/// What `whoami` answered: who the master takes the caller for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The certificate's role and name (`user 'alice'`), or why there is none.
    pub identity: String,
    /// The rights the calls are checked against.
    pub user: UserInfo,
}
