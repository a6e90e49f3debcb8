//! The commands both the one-shot and the interactive shell understand: [`Cmd`], parsed from one
//! line by [`Line`], and [`COMMANDS`], their names for completion.
//!
//! Every flag carries a one-line description (it is what `help CMD` and `kfs CMD --help` show),
//! and positional arguments are named for what they are (`put [OPTIONS] <LOCAL>... <REMOTE>`).

use clap::{ArgAction, Parser, Subcommand};

/// One line of the interactive shell.
#[derive(Parser, Debug)]
#[command(
    no_binary_name = true,
    name = "",
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Line {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// How `ls` orders and shows entries.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LsFlags {
    /// Long listing: mode, replication, owner, group, size, modification time.
    #[arg(short = 'l')]
    pub long: bool,
    /// List subdirectories too, depth first.
    #[arg(short = 'R')]
    pub recursive: bool,
    /// Sizes in KiB, MiB, GiB.
    #[arg(short = 'h')]
    pub human: bool,
    /// List directories themselves, not what they hold.
    #[arg(short = 'd')]
    pub directory: bool,
    /// Sort by modification time, newest first.
    #[arg(short = 't')]
    pub by_time: bool,
    /// Sort by size, largest first.
    #[arg(short = 'S')]
    pub by_size: bool,
    /// Reverse the order.
    #[arg(short = 'r')]
    pub reverse: bool,
    /// Print JSON (one array of entries with every attribute) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The commands of the shell.
#[derive(Subcommand, Debug, Clone)]
pub enum Cmd {
    /// List directories (and files): -l long, -R recursive, -d the directory itself, -t/-S
    /// by time/size, -r reversed.
    #[command(disable_help_flag = true)]
    Ls {
        #[command(flatten)]
        flags: LsFlags,
        /// Print this help.
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
        /// What to list (default: the working directory).
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Make directories (-p: with missing parents; existing ones are fine).
    Mkdir {
        /// Make missing parents too; an existing directory is no error.
        #[arg(short = 'p')]
        parents: bool,
        #[arg(required = true, value_name = "DIR")]
        paths: Vec<String>,
    },
    /// Remove files (-r: directories with everything in them; -f: ignore missing ones).
    Rm {
        /// Remove directories and everything below them.
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        /// Ignore paths that do not exist.
        #[arg(short = 'f')]
        force: bool,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Remove empty directories.
    Rmdir {
        #[arg(required = true, value_name = "DIR")]
        paths: Vec<String>,
    },
    /// Move or rename: `mv SRC DST`, or `mv SRC... DIR` (-f: replace an existing target).
    Mv {
        /// Replace a target that exists (refused otherwise).
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true, value_name = "SRC")]
        sources: Vec<String>,
        #[arg(value_name = "DST")]
        target: String,
    },
    /// Copy within KFS: `cp SRC DST`, or `cp SRC... DIR` (-r: directories; -f: replace an
    /// existing target).
    Cp {
        /// Copy directories and everything below them.
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        /// Replace a target that exists (refused otherwise).
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true, value_name = "SRC")]
        sources: Vec<String>,
        #[arg(value_name = "DST")]
        target: String,
    },
    /// Copy local files or directories into KFS: `put LOCAL... REMOTE` (-f: replace an existing
    /// target).
    #[command(alias = "copyFromLocal")]
    Put {
        /// Replication factor of the new files (default: the master's).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
        replication: Option<u8>,
        /// Replace a target that exists (refused otherwise).
        #[arg(short = 'f', long)]
        force: bool,
        /// Local files or directories.
        #[arg(required = true, value_name = "LOCAL")]
        sources: Vec<String>,
        /// Where in KFS: a new name, or a directory to copy into.
        #[arg(value_name = "REMOTE")]
        target: String,
    },
    /// Copy KFS files or directories to the local disk: `get REMOTE... LOCAL` (-f: replace an
    /// existing target).
    #[command(alias = "copyToLocal")]
    Get {
        /// Replace a target that exists (refused otherwise).
        #[arg(short = 'f', long)]
        force: bool,
        /// KFS files or directories.
        #[arg(required = true, value_name = "REMOTE")]
        sources: Vec<String>,
        /// Where on the local disk: a new name, or a directory to copy into.
        #[arg(value_name = "LOCAL")]
        target: String,
    },
    /// Append local files (or standard input, `-`) to a KFS file, which is created if missing.
    #[command(name = "appendToFile")]
    AppendToFile {
        /// Local files, or `-` for standard input.
        #[arg(required = true, value_name = "LOCAL")]
        sources: Vec<String>,
        #[arg(value_name = "REMOTE")]
        target: String,
    },
    /// Print files.
    Cat {
        #[arg(required = true, value_name = "FILE")]
        paths: Vec<String>,
    },
    /// Print the first lines of a file.
    Head {
        /// Lines to print.
        #[arg(short = 'n', default_value_t = 10)]
        lines: usize,
        #[arg(value_name = "FILE")]
        path: String,
    },
    /// Print the last lines of a file (-f: then what is appended, until Ctrl-C).
    Tail {
        /// Lines to print.
        #[arg(short = 'n', default_value_t = 10)]
        lines: usize,
        /// Keep printing what is appended, until Ctrl-C.
        #[arg(short = 'f')]
        follow: bool,
        #[arg(value_name = "FILE")]
        path: String,
    },
    /// Create empty files, or update the times of existing ones.
    Touch {
        #[arg(required = true, value_name = "FILE")]
        paths: Vec<String>,
    },
    /// Give the file TARGET another name LINK (a hard link), or with -s make LINK a symbolic
    /// link to TARGET (kept as written: the master never follows links, a mount's kernel does).
    Ln {
        /// Make a symbolic link.
        #[arg(short = 's', long = "symbolic")]
        symbolic: bool,
        #[arg(value_name = "TARGET")]
        target: String,
        #[arg(value_name = "LINK")]
        link: String,
    },
    /// Print the targets of symbolic links.
    Readlink {
        #[arg(required = true, value_name = "LINK")]
        paths: Vec<String>,
    },
    /// Cut files to LENGTH bytes, or extend them with zeros (-w: wait until done; a truncate
    /// always waits here).
    Truncate {
        /// Accepted for HDFS's `truncate -w`: the cut is done when the command returns.
        #[arg(short = 'w')]
        wait: bool,
        /// The new length in bytes (or 64KiB, 1MiB, ...).
        #[arg(value_name = "LENGTH", value_parser = super::parse_bytes)]
        length: u64,
        #[arg(required = true, value_name = "FILE")]
        paths: Vec<String>,
    },
    /// Show attributes (-c FORMAT: as stat(1) formats them).
    Stat {
        /// Print only this format: %n name, %s size, %F type, %a/%A mode, %h links, %u/%U owner, %g/%G
        /// group, %r replication, %o chunk size, %i id, %y/%Y and %x/%X modify and access times.
        #[arg(short = 'c', long = "format", value_name = "FORMAT")]
        format: Option<String>,
        /// Print JSON (one array of objects) instead of text.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Test a path; prints nothing, the exit status is the answer (0 true, 1 false).
    Test {
        /// The path exists (the default).
        #[arg(short = 'e', group = "question")]
        exists: bool,
        /// The path is a directory.
        #[arg(short = 'd', group = "question")]
        dir: bool,
        /// The path is a regular file.
        #[arg(short = 'f', group = "question")]
        file: bool,
        /// The path is a file of length zero.
        #[arg(short = 'z', group = "question")]
        empty: bool,
        #[arg(value_name = "PATH")]
        path: String,
    },
    /// Count directories, files and bytes below each path: `DIRS FILES BYTES PATH`.
    Count {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Find files below a path: `find [PATH] [-name PATTERN] [-iname PATTERN] [-type f|d]`.
    Find {
        /// The start (default: the working directory), then the tests: -name PATTERN (a glob
        /// on the name), -iname PATTERN (ignoring case), -type f or d.
        #[arg(
            value_name = "PATH | -name PATTERN | -iname PATTERN | -type f|d",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        expression: Vec<String>,
    },
    /// Show a directory as a tree (-L: how deep; -d: directories only).
    Tree {
        /// Descend at most this many levels.
        #[arg(short = 'L', value_name = "LEVELS")]
        levels: Option<usize>,
        /// Show directories only.
        #[arg(short = 'd')]
        dirs_only: bool,
        /// The top (default: the working directory).
        #[arg(value_name = "DIR")]
        path: Option<String>,
    },
    /// A file's CRC32C (of all its bytes, as `crc32c` computes it), combined from the
    /// checksums chunkservers keep: no data is read for it.
    Checksum {
        #[arg(required = true, value_name = "FILE")]
        paths: Vec<String>,
    },
    /// Space used by files and directories: bytes, then with every replica (-s: totals only).
    #[command(disable_help_flag = true)]
    Du {
        /// Only each argument's total.
        #[arg(short = 's')]
        summarize: bool,
        /// Sizes in KiB, MiB, GiB.
        #[arg(short = 'h')]
        human: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print this help.
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Space of the cluster: raw (every replica) and logical (what files hold).
    #[command(disable_help_flag = true)]
    Df {
        /// Sizes in KiB, MiB, GiB.
        #[arg(short = 'h')]
        human: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print this help.
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
    },
    /// Set the replication factor of files (-R: of every file below directories; -w: wait
    /// until every chunk has that many replicas).
    Setrep {
        /// Every file below directories.
        #[arg(short = 'R')]
        recursive: bool,
        /// Wait until every chunk of the files has that many live replicas.
        #[arg(short = 'w')]
        wait: bool,
        #[arg(value_parser = clap::value_parser!(u8).range(1..=16), value_name = "REPLICATION")]
        replication: u8,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Change permission bits: octal (`644`) or symbolic (`u+x,go-w`) (-R: below too).
    Chmod {
        /// Change every file and directory below too.
        #[arg(short = 'R')]
        recursive: bool,
        /// Octal bits, or `[ugoa]*[+-=][rwxXst]*` (or `[+-=][ugo]`), comma separated.
        #[arg(value_name = "MODE", allow_hyphen_values = true)]
        mode: String,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Change owner (and group): `chown OWNER[:GROUP] PATH...`, names or numeric ids (-R: below
    /// too).
    Chown {
        /// Change every file and directory below too.
        #[arg(short = 'R')]
        recursive: bool,
        /// A user name or id, optionally `:GROUP`.
        #[arg(value_name = "OWNER[:GROUP]")]
        owner: String,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Change group: `chgrp GROUP PATH...`, a name or numeric id (-R: below too).
    Chgrp {
        /// Change every file and directory below too.
        #[arg(short = 'R')]
        recursive: bool,
        /// A group name or id.
        #[arg(value_name = "GROUP")]
        group: String,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Extended attributes: get, set, list, rm.
    Xattr {
        #[command(subcommand)]
        action: XattrCmd,
    },
    /// A file's chunks: ids, versions, lengths and replica locations.
    Chunks {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(value_name = "FILE")]
        path: String,
    },
    /// The chunkservers and their state.
    Servers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Health of the chunks below a path (default /): counts and the first problems (--list:
    /// all); exit 1 when data is missing. --open-files: the files open for write instead.
    Fsck {
        /// Where to look (a file or a directory).
        #[arg(value_name = "PATH")]
        path: Option<String>,
        /// List every problem, not only the first 20.
        #[arg(long)]
        list: bool,
        /// List the files being written, and those whose writer is gone that the master has not
        /// finished yet (HDFS's `fsck -openforwrite`).
        #[arg(long)]
        open_files: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Cluster administration: decommissioning chunkservers, the master's workers, users.
    Admin {
        #[command(subcommand)]
        action: AdminCmd,
    },
    /// Who the master takes this shell for (its credentials' user) and that user's rights.
    Whoami {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Change the working directory.
    Cd {
        /// The new working directory (default: /).
        #[arg(value_name = "DIR")]
        path: Option<String>,
    },
    /// Print the working directory.
    Pwd,
    /// List the commands, or explain one.
    Help {
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
    /// Leave the shell.
    #[command(alias = "quit")]
    Exit,
}

#[derive(Subcommand, Debug, Clone)]
pub enum XattrCmd {
    /// Print an attribute's value.
    Get { path: String, name: String },
    /// Set an attribute.
    Set {
        path: String,
        name: String,
        value: String,
    },
    /// List a file's attributes.
    List { path: String },
    /// Remove an attribute.
    Rm { path: String, name: String },
}

#[derive(Subcommand, Debug, Clone)]
pub enum AdminCmd {
    /// Drain a chunkserver (id, id prefix or address): its replicas are copied elsewhere, then
    /// removed from it. `servers` shows it `drained` once it is safe to remove.
    Decommission {
        /// The chunkserver: its id, an id prefix, or its address.
        server: String,
        /// Stop draining it: its replicas count again.
        #[arg(long)]
        cancel: bool,
    },
    /// The master's background workers: state, rounds done, when the last one ended and what
    /// it did.
    Workers,
    /// Safe mode (after a master restart, no deletion or repair until enough chunks have
    /// reported): `get` its state, `leave` it now, or `wait` until it ends.
    Safemode {
        #[arg(value_enum)]
        action: SafemodeAction,
    },
    /// Have the master write a checkpoint of everything logged now (it returns once durable).
    Checkpoint,
    /// The users of a secured cluster: `add` one (and its credentials), `remove` it, `list` them.
    User {
        #[command(subcommand)]
        action: UserCmd,
    },
}

/// `admin user ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum UserCmd {
    /// Record user NAME and write its credentials (a certificate the master issues, or with
    /// --ca one issued here from the CA key in DIR) to FILE, made 0600: hand that file to the
    /// user, who points KFS_CREDENTIALS at it.
    Add(UserAdd),
    /// Forget a user: its certificate is refused from its next connection on.
    Remove { name: String },
    /// The users the master has a record of.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `admin user add`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct UserAdd {
    pub name: String,
    /// Reads only: no namespace change, no write lease.
    #[arg(long)]
    pub read_only: bool,
    /// Confine the user to this subtree: every path it names must be in it.
    #[arg(long, value_name = "PATH")]
    pub root: Option<String>,
    /// The uid its files are owned by (default: the next free one from 1000).
    #[arg(long)]
    pub uid: Option<u32>,
    /// Its primary group (default: the same number as the uid).
    #[arg(long)]
    pub gid: Option<u32>,
    /// Further groups it is a member of, e.g. `--groups 100,1001`.
    #[arg(long, value_delimiter = ',', value_name = "GID,...")]
    pub groups: Vec<u32>,
    /// An administrator: the operators' calls, and every permission check passes.
    #[arg(long)]
    pub admin: bool,
    /// Replace an existing user's record and certificate (the old one is refused from then on).
    #[arg(long)]
    pub replace: bool,
    /// Where to write the credentials (default: ./NAME.credentials); never overwritten.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Issue the certificate here from the CA key in this secrets directory (for a master
    /// whose secrets hold no CA key).
    #[arg(long, value_name = "DIR")]
    pub ca: Option<std::path::PathBuf>,
}

/// What `admin safemode` does.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafemodeAction {
    /// Print whether safe mode is on and how far the chunks' reports are.
    Get,
    /// End safe mode now: repairs and deletions begin (the missing servers are not coming back).
    Leave,
    /// Wait until safe mode ends (then print its state).
    Wait,
}

/// Every command name, for completion and help.
pub const COMMANDS: &[&str] = &[
    "ls",
    "mkdir",
    "rm",
    "rmdir",
    "mv",
    "cp",
    "put",
    "copyFromLocal",
    "get",
    "copyToLocal",
    "appendToFile",
    "cat",
    "head",
    "tail",
    "touch",
    "truncate",
    "ln",
    "readlink",
    "stat",
    "test",
    "count",
    "find",
    "tree",
    "checksum",
    "du",
    "df",
    "setrep",
    "chmod",
    "chown",
    "chgrp",
    "xattr",
    "chunks",
    "servers",
    "fsck",
    "admin",
    "whoami",
    "cd",
    "pwd",
    "help",
    "exit",
];
