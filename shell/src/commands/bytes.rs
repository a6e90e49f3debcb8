//! The commands about a file's bytes that copy none of them out: `checksum`, `truncate` and
//! `appendToFile`.
//!
//! `checksum` prints the file's CRC32C, which the chunkservers combine from the checksums they
//! keep (see `kfs_client::Client::checksum`), in HDFS's layout: `PATH  CRC32C  HEX  LENGTH`; any
//! `crc32c` tool over the same bytes prints the same value. `truncate` cuts files or extends
//! them with zeros. `appendToFile` adds local files (or standard input, `-`) at a KFS file's end,
//! creating it if missing; the bytes are on every replica, durably, when it returns.

use super::{Failed, each_path, outln, report};
use crate::format::{self, failure};
use crate::session::Session;
use kfs_common::KfsError;
use kfs_common::proto::master::CreateOptions;
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWriteExt};

/// `checksum FILE...`
pub(super) async fn checksum(s: &Session, paths: &[String]) -> Result<(), Failed> {
    each_path(s, paths, "checksum", |p| async move {
        let sum = s.client.checksum(&p).await?;
        outln(format!("{p}\tCRC32C\t{:08x}\t{}", sum.crc32c, sum.length));
        Ok(())
    })
    .await
}

/// `truncate [-w] LENGTH FILE...`
pub(super) async fn truncate(s: &Session, length: u64, paths: &[String]) -> Result<(), Failed> {
    each_path(s, paths, "truncate", |p| async move {
        s.client.truncate(&p, length).await.map(drop)
    })
    .await
}

/// `appendToFile LOCAL... REMOTE`
pub(super) async fn append_to_file(
    s: &Session,
    sources: &[String],
    target: &str,
) -> Result<(), Failed> {
    let remote_failed = |e: KfsError| failure("append to", target, &e);
    let result = async {
        let remote = s.resolve(target).map_err(remote_failed)?;
        let mut file = match s.client.open(&remote).await {
            Ok(f) => f,
            Err(KfsError::NotFound { .. }) => {
                let options = CreateOptions {
                    exclusive: true,
                    ..Default::default()
                };
                s.client
                    .create_with(&remote, options)
                    .await
                    .map_err(remote_failed)?
            }
            Err(e) => return Err(remote_failed(e)),
        };
        file.seek(std::io::SeekFrom::End(0))
            .await
            .map_err(|e| remote_failed(kfs_error(e)))?;
        for source in sources {
            let mut input: Box<dyn AsyncRead + Unpin + Send> = if source == "-" {
                Box::new(tokio::io::stdin())
            } else {
                match tokio::fs::File::open(source).await {
                    Ok(f) => Box::new(f),
                    Err(e) => {
                        return Err(format!("cannot open '{source}': {}", format::io_reason(&e)));
                    }
                }
            };
            tokio::io::copy(&mut input, &mut file)
                .await
                .map_err(|e| match kfs_error(e) {
                    KfsError::Io(reason) => format!("cannot read '{source}': {reason}"),
                    e => remote_failed(e),
                })?;
        }
        file.flush()
            .await
            .map_err(|e| remote_failed(kfs_error(e)))?;
        file.sync().await.map_err(remote_failed)?;
        file.close().await.map_err(remote_failed)?;
        Ok::<(), String>(())
    }
    .await;
    result.map_err(|line| {
        report(line);
        Failed
    })
}

/// The `KfsError` inside an I/O error from a KFS file, or a local one's reason as `Io`.
fn kfs_error(e: std::io::Error) -> KfsError {
    let reason = format::io_reason(&e);
    match e.into_inner().map(|inner| inner.downcast::<KfsError>()) {
        Some(Ok(kfs)) => *kfs,
        _ => KfsError::Io(reason),
    }
}
