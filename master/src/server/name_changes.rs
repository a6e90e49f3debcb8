//! `change_names` (client protocol 12): a remove, rmdir or rename answered with the attributes
//! of the directories it changed, read right after it was applied (so they hold it, and maybe
//! changes made after it: never an older state; a directory gone meanwhile is left out). A mount keeps them instead of asking for them
//! before its next change in those directories.

use super::MasterServer;
use kfs_common::proto::master::{FileAttr, MasterService, NameChange};
use kfs_common::{KfsError, KfsResult};
use tarpc::context::Context;

impl MasterServer {
    pub(super) async fn change_names_answering_dirs(
        &self,
        cx: Context,
        change: NameChange,
    ) -> KfsResult<Vec<FileAttr>> {
        let mut dirs = Vec::with_capacity(2);
        match change {
            NameChange::Remove { path } => {
                dirs.push(parent_of(&path)?);
                self.clone().remove(cx, path).await?;
            }
            NameChange::Rmdir { path } => {
                dirs.push(parent_of(&path)?);
                self.clone().rmdir(cx, path).await?;
            }
            NameChange::Rename { src, dst } => {
                dirs.push(parent_of(&src)?);
                let to = parent_of(&dst)?;
                if to != dirs[0] {
                    dirs.push(to);
                }
                self.clone().rename(cx, src, dst).await?;
            }
        }
        // The caller could change names in them, so it may see them. One gone since (removed
        // or renamed by another client) is left out: the change itself was made.
        self.read(|ns| Ok(dirs.iter().filter_map(|dir| ns.stat(dir).ok()).collect()))
    }
}

/// The directory holding `path`'s last name.
fn parent_of(path: &str) -> KfsResult<String> {
    match kfs_common::path::split_parent(path)? {
        Some((parent, _)) => Ok(parent.to_string()),
        None => Err(KfsError::InvalidArgument(format!(
            "{path}: the root has no name to change"
        ))),
    }
}
