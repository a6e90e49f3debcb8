//! A short tour of the master's namespace calls against a running `kfs-master`:
//!
//! ```text
//! cargo run --release -p kfs-master -- --meta-dir /tmp/kfs-meta &
//! cargo run --release -p kfs-master --example namespace_tour -- 127.0.0.1:20000
//! ```
//!
//! Programs will use `kfs-client` (and people the `kfs` shell); this talks to the RPC service
//! directly.

use kfs_common::proto::CLIENT_PROTOCOL_VERSION;
use kfs_common::proto::master::{self, CreateOptions, MkdirOptions};
use serde_bytes::ByteBuf;
use tarpc::context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:20000".into())
        .parse()?;
    // The credentials at KFS_CREDENTIALS (or ~/.config/kfs/credentials), as `kfs` finds them.
    let security = kfs_common::security::client_security()?;
    let master = master::connect(addr, &security).await?;
    let info = master
        .handshake(context::current(), CLIENT_PROTOCOL_VERSION)
        .await??;
    println!(
        "connected to kfs-master {} (default replication {})",
        info.version, info.default_replication
    );

    let dir = "/tour/photos";
    master
        .mkdir(
            context::current(),
            dir.into(),
            MkdirOptions {
                parents: true,
                mode: None,
            },
        )
        .await??;
    for name in ["cat.jpg", "dog.jpg"] {
        let path = format!("{dir}/{name}");
        let options = CreateOptions {
            exclusive: false,
            replication: Some(2),
            mode: None,
        };
        let attr = master
            .create(context::current(), path.clone(), options)
            .await??;
        master
            .set_xattr(
                context::current(),
                path,
                "camera".into(),
                ByteBuf::from(b"X100V".to_vec()),
            )
            .await??;
        println!("created {dir}/{name} as {}", attr.fid);
    }
    let page = master
        .readdir(context::current(), dir.into(), None, 100, true)
        .await??;
    for entry in &page.entries {
        let attr = entry.attr.as_ref().expect("asked with attributes");
        println!(
            "{:>10} r{} {:o} {}",
            attr.size, attr.replication, attr.mode, entry.name
        );
    }
    master
        .rename(
            context::current(),
            format!("{dir}/dog.jpg"),
            "/tour/dog.jpg".into(),
        )
        .await??;
    match master.rmdir(context::current(), "/tour".into()).await? {
        Err(e) => println!("rmdir /tour refused as expected: {e}"),
        Ok(()) => println!("rmdir /tour unexpectedly succeeded"),
    }
    let removed = master
        .remove_recursive(context::current(), "/tour".into())
        .await??;
    println!(
        "removed {} files and {} directories",
        removed.files, removed.dirs
    );
    let counters = master.counters(context::current()).await??;
    println!(
        "namespace now holds {} files and {} directories",
        counters.files, counters.dirs
    );
    Ok(())
}
