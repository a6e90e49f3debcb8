//! The master over TCP: every namespace call end to end, persistence across a restart, the
//! metadata directory's lock, and concurrent mutations sharing fsyncs.

use kfs_common::proto::{CLIENT_PROTOCOL_VERSION, OLDEST_CLIENT_PROTOCOL};
mod support;

use kfs_common::proto::master::{
    self, CreateOptions, Durability, MasterServiceClient, MasterServiceRequest, MkdirOptions,
    MknodOptions, RemoveSummary, SetAttr,
};
use kfs_common::{FileId, FileKind, KfsError};
use kfs_master::{MasterConfig, MasterHandle, StartError};
use serde_bytes::ByteBuf;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::ctx;

/// `FileAttr`, `DirEntry` and `DirPage` as clients of protocols 1 to 10 decode them.
#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct OldAttr {
    fid: FileId,
    kind: FileKind,
    size: u64,
    mode: u16,
    owner: u32,
    group: u32,
    replication: u8,
    mtime: i64,
    atime: i64,
}

#[derive(Debug, serde::Deserialize)]
struct OldEntry {
    name: String,
    #[allow(dead_code)]
    fid: FileId,
    kind: FileKind,
    attr: Option<OldAttr>,
}

#[derive(Debug, serde::Deserialize)]
struct OldPage {
    entries: Vec<OldEntry>,
    #[allow(dead_code)]
    more: bool,
}

/// The first replies of `MasterService` (variants in the service's order), as an old client
/// decodes them.
#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
enum OldReply {
    Handshake(Result<master::MasterInfo, KfsError>),
    Mkdir(Result<OldAttr, KfsError>),
    Create(Result<OldAttr, KfsError>),
    Stat(Result<OldAttr, KfsError>),
    Readdir(Result<OldPage, KfsError>),
}

/// A client of client protocol `version`, which decodes replies as that version has them.
async fn old_client(
    master: &MasterHandle,
    version: u32,
) -> tarpc::client::Channel<MasterServiceRequest, OldReply> {
    let transport = kfs_common::rpc::connect_speaking::<MasterServiceRequest, OldReply>(
        master.local_addr(),
        kfs_common::rpc::Service::Master,
        version,
        &kfs_common::security::Security::Insecure,
    )
    .await
    .unwrap();
    tarpc::client::new(Default::default(), transport).spawn()
}

fn config(dir: &Path) -> MasterConfig {
    MasterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        meta_dir: dir.to_path_buf(),
        // The master's own tests speak to it directly, without the cluster's credentials.
        insecure: true,
        ..Default::default()
    }
}

async fn connect(master: &MasterHandle) -> MasterServiceClient {
    master::connect(
        master.local_addr(),
        &kfs_common::security::Security::Insecure,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn namespace_calls_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let master = kfs_master::start(&config(dir.path())).await.unwrap();
    let c = connect(&master).await;

    let info = c
        .handshake(ctx(), CLIENT_PROTOCOL_VERSION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.default_replication, 3);
    // Clients not yet upgraded are still served (on a connection of their own: replies are
    // encoded for the version a connection's handshake said); newer ones are refused by name.
    connect(&master)
        .await
        .handshake(ctx(), OLDEST_CLIENT_PROTOCOL)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        c.handshake(ctx(), CLIENT_PROTOCOL_VERSION + 1)
            .await
            .unwrap(),
        Err(KfsError::IncompatibleProtocol { .. })
    ));

    let parents = MkdirOptions {
        parents: true,
        mode: None,
    };
    let dir_attr = c
        .mkdir(ctx(), "/photos/2024".into(), parents.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dir_attr.kind, FileKind::Dir);
    let again = c
        .mkdir(ctx(), "/photos/2024".into(), parents)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.fid, dir_attr.fid,
        "mkdir -p of an existing directory succeeds"
    );

    let opts = CreateOptions {
        exclusive: true,
        replication: Some(2),
        mode: None,
    };
    let f = c
        .create(ctx(), "/photos/2024/cat.jpg".into(), opts.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((f.kind, f.replication, f.size), (FileKind::File, 2, 0));
    assert_eq!(
        c.create(ctx(), "/photos/2024/cat.jpg".into(), opts)
            .await
            .unwrap(),
        Err(KfsError::already_exists("/photos/2024/cat.jpg"))
    );
    assert_eq!(
        c.stat(ctx(), "/photos/2024/cat.jpg".into())
            .await
            .unwrap()
            .unwrap(),
        f
    );
    assert_eq!(
        c.stat(ctx(), "/nope".into()).await.unwrap(),
        Err(KfsError::not_found("/nope"))
    );

    let page = c
        .readdir(ctx(), "/photos/2024".into(), None, 0, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].attr.as_ref(), Some(&f));

    c.set_xattr(
        ctx(),
        "/photos/2024/cat.jpg".into(),
        "width".into(),
        ByteBuf::from(b"1024".to_vec()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        c.get_xattr(ctx(), "/photos/2024/cat.jpg".into(), "width".into())
            .await
            .unwrap()
            .unwrap(),
        ByteBuf::from(b"1024".to_vec())
    );
    assert_eq!(
        c.list_xattrs(ctx(), "/photos/2024/cat.jpg".into())
            .await
            .unwrap()
            .unwrap(),
        vec!["width"]
    );
    c.remove_xattr(ctx(), "/photos/2024/cat.jpg".into(), "width".into())
        .await
        .unwrap()
        .unwrap();

    let set = SetAttr {
        mode: Some(0o600),
        mtime: Some(12345),
        ..Default::default()
    };
    let changed = c
        .set_attr(ctx(), "/photos/2024/cat.jpg".into(), set)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((changed.mode, changed.mtime), (0o600, 12345));
    let changed = c
        .set_replication(ctx(), "/photos/2024/cat.jpg".into(), 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.replication, 5);

    c.rename(
        ctx(),
        "/photos/2024/cat.jpg".into(),
        "/photos/cat.jpg".into(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        c.stat(ctx(), "/photos/cat.jpg".into())
            .await
            .unwrap()
            .unwrap()
            .fid,
        f.fid
    );
    c.rmdir(ctx(), "/photos/2024".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.rmdir(ctx(), "/photos".into()).await.unwrap(),
        Err(KfsError::directory_not_empty("/photos"))
    );
    c.remove(ctx(), "/photos/cat.jpg".into())
        .await
        .unwrap()
        .unwrap();
    c.mkdir(
        ctx(),
        "/t/a/b".into(),
        MkdirOptions {
            parents: true,
            mode: None,
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        c.remove_recursive(ctx(), "/t".into())
            .await
            .unwrap()
            .unwrap(),
        RemoveSummary { files: 0, dirs: 3 }
    );
    let counters = c.counters(ctx()).await.unwrap().unwrap();
    assert_eq!((counters.files, counters.dirs), (0, 2));
    assert!(matches!(
        c.stat(ctx(), "no/slash".into()).await.unwrap(),
        Err(KfsError::InvalidPath { .. })
    ));
    master.shutdown().await;
}

#[tokio::test]
async fn acknowledged_changes_survive_a_restart_and_checkpoints() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_every_ops = 50;
    let master = kfs_master::start(&cfg).await.unwrap();
    let c = connect(&master).await;
    c.mkdir(ctx(), "/d".into(), MkdirOptions::default())
        .await
        .unwrap()
        .unwrap();
    for i in 0..120 {
        c.create(ctx(), format!("/d/f{i}"), CreateOptions::default())
            .await
            .unwrap()
            .unwrap();
    }
    // Two checkpoints were due; wait (bounded) for the second to be durable.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while master.commit_stats().checkpoints.load(Ordering::Relaxed) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoints were not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.remove(ctx(), "/d/f7".into()).await.unwrap().unwrap();
    master.shutdown().await;

    let master = kfs_master::start(&cfg).await.unwrap();
    let c = connect(&master).await;
    let counters = c.counters(ctx()).await.unwrap().unwrap();
    assert_eq!((counters.files, counters.dirs), (119, 2));
    assert!(c.stat(ctx(), "/d/f119".into()).await.unwrap().is_ok());
    assert_eq!(
        c.stat(ctx(), "/d/f7".into()).await.unwrap(),
        Err(KfsError::not_found("/d/f7"))
    );
    // Old checkpoints and covered segments were pruned: at most two checkpoints remain.
    let checkpoints = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("checkpoint-")
        })
        .count();
    assert!(checkpoints <= 2, "{checkpoints} checkpoints kept");
    master.shutdown().await;
}

#[tokio::test]
async fn symbolic_links_and_special_files_survive_a_restart_and_old_clients_see_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let master = kfs_master::start(&cfg).await.unwrap();
    let c = connect(&master).await;
    c.handshake(ctx(), CLIENT_PROTOCOL_VERSION)
        .await
        .unwrap()
        .unwrap();
    c.mkdir(ctx(), "/d".into(), MkdirOptions::default())
        .await
        .unwrap()
        .unwrap();
    let link = c
        .symlink(ctx(), "/d/link".into(), "../elsewhere/x".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (link.kind, link.size, link.mode),
        (FileKind::Symlink, 14, 0o777)
    );
    let mknod = |kind, rdev| MknodOptions {
        kind,
        mode: Some(0o640),
        rdev,
    };
    let fifo = c
        .mknod(ctx(), "/d/fifo".into(), mknod(FileKind::Fifo, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (fifo.kind, fifo.size, fifo.mode),
        (FileKind::Fifo, 0, 0o640)
    );
    let dev = c
        .mknod(ctx(), "/d/dev".into(), mknod(FileKind::BlockDevice, 0x0803))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((dev.rdev(), dev.length()), (0x0803, 0));
    // A name is never replaced; what is not a special kind is refused; a FIFO has no data.
    assert!(matches!(
        c.symlink(ctx(), "/d/fifo".into(), "t".into())
            .await
            .unwrap(),
        Err(KfsError::AlreadyExists { .. })
    ));
    assert!(matches!(
        c.mknod(ctx(), "/d/x".into(), mknod(FileKind::Dir, 0))
            .await
            .unwrap(),
        Err(KfsError::InvalidArgument(_))
    ));
    assert!(matches!(
        c.symlink(ctx(), "/d/empty".into(), String::new())
            .await
            .unwrap(),
        Err(KfsError::InvalidArgument(_))
    ));
    assert!(matches!(
        c.open(ctx(), "/d/fifo".into(), 0).await.unwrap(),
        Err(KfsError::InvalidArgument(_))
    ));
    assert!(matches!(
        c.readlink(ctx(), "/d/fifo".into()).await.unwrap(),
        Err(KfsError::InvalidArgument(_))
    ));
    // The link's target is no attribute.
    assert_eq!(
        c.list_xattrs(ctx(), "/d/link".into()).await.unwrap(),
        Ok(vec![])
    );
    let counters = c.counters(ctx()).await.unwrap().unwrap();
    assert_eq!((counters.files, counters.bytes), (3, 0));

    // Across a checkpoint and a restart replaying the log after it.
    c.checkpoint(ctx()).await.unwrap().unwrap();
    c.symlink(ctx(), "/d/after".into(), "/d/link".into())
        .await
        .unwrap()
        .unwrap();
    master.shutdown().await;
    let master = kfs_master::start(&cfg).await.unwrap();
    let c = connect(&master).await;
    c.handshake(ctx(), CLIENT_PROTOCOL_VERSION)
        .await
        .unwrap()
        .unwrap();
    for (path, target) in [("/d/link", "../elsewhere/x"), ("/d/after", "/d/link")] {
        assert_eq!(
            c.readlink(ctx(), path.into()).await.unwrap(),
            Ok(target.to_string())
        );
    }
    assert_eq!(
        c.stat(ctx(), "/d/dev".into())
            .await
            .unwrap()
            .unwrap()
            .rdev(),
        0x0803
    );
    // Renamed and removed like files.
    c.rename(ctx(), "/d/fifo".into(), "/d/after".into())
        .await
        .unwrap()
        .unwrap();
    c.remove(ctx(), "/d/link".into()).await.unwrap().unwrap();

    // A client of protocol 9 sees a regular file of length 0 where they are, in the
    // attributes it knows (no link count, no change time).
    let old = old_client(&master, 9).await;
    let Ok(OldReply::Handshake(Ok(_))) = old
        .call(ctx(), MasterServiceRequest::Handshake { protocol: 9 })
        .await
    else {
        panic!("a client of protocol 9 is served");
    };
    let readdir = MasterServiceRequest::Readdir {
        path: "/d".into(),
        start_after: None,
        limit: 0,
        with_attrs: true,
    };
    let Ok(OldReply::Readdir(Ok(page))) = old.call(ctx(), readdir).await else {
        panic!("an old client's listing decodes");
    };
    let seen: Vec<(String, FileKind, u64)> = page
        .entries
        .iter()
        .map(|e| (e.name.clone(), e.kind, e.attr.as_ref().unwrap().size))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("after".to_string(), FileKind::File, 0),
            ("dev".to_string(), FileKind::File, 0)
        ]
    );
    let stat = MasterServiceRequest::Stat {
        path: "/d/dev".into(),
    };
    let Ok(OldReply::Stat(Ok(attr))) = old.call(ctx(), stat).await else {
        panic!("an old client's stat decodes");
    };
    assert_eq!(
        (attr.kind, attr.size, attr.mode),
        (FileKind::File, 0, 0o640)
    );
    master.shutdown().await;
}

#[tokio::test]
async fn hard_links_count_names_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let master = kfs_master::start(&cfg).await.unwrap();
    let c = connect(&master).await;
    c.handshake(ctx(), CLIENT_PROTOCOL_VERSION)
        .await
        .unwrap()
        .unwrap();
    for d in ["/a", "/b", "/a/sub"] {
        c.mkdir(ctx(), d.into(), MkdirOptions::default())
            .await
            .unwrap()
            .unwrap();
    }
    let file = c
        .create(ctx(), "/a/f".into(), CreateOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(file.nlink, 1);
    let linked = c
        .link(ctx(), "/a/f".into(), "/b/g".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((linked.fid, linked.nlink), (file.fid, 2));
    c.link(ctx(), "/a/f".into(), "/a/h".into())
        .await
        .unwrap()
        .unwrap();
    // A directory counts 2 and its subdirectories; a name is never replaced; a directory has
    // one name.
    let stat = |p: &'static str| {
        let c = c.clone();
        async move { c.stat(ctx(), p.into()).await.unwrap() }
    };
    assert_eq!(stat("/a").await.unwrap().nlink, 3);
    assert_eq!(stat("/").await.unwrap().nlink, 4);
    assert_eq!(stat("/a").await.unwrap().size, 0);
    assert!(matches!(
        c.link(ctx(), "/a/f".into(), "/b/g".into()).await.unwrap(),
        Err(KfsError::AlreadyExists { .. })
    ));
    assert!(matches!(
        c.link(ctx(), "/a/sub".into(), "/b/sub".into())
            .await
            .unwrap(),
        Err(KfsError::IsADirectory { .. })
    ));
    // Renaming one name onto another of the same file changes nothing.
    c.rename(ctx(), "/a/h".into(), "/b/g".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stat("/a/h").await.unwrap().nlink, 3);
    // Removing a name keeps the file for the others; the counters count files, not names.
    c.remove(ctx(), "/a/f".into()).await.unwrap().unwrap();
    assert_eq!(stat("/b/g").await.unwrap().nlink, 2);
    let counters = c.counters(ctx()).await.unwrap().unwrap();
    assert_eq!((counters.files, counters.dirs), (1, 4));

    c.checkpoint(ctx()).await.unwrap().unwrap();
    c.remove_recursive(ctx(), "/a".into())
        .await
        .unwrap()
        .unwrap();
    master.shutdown().await;
    let master = kfs_master::start(&cfg).await.unwrap();
    let c = connect(&master).await;
    let g = c.stat(ctx(), "/b/g".into()).await.unwrap().unwrap();
    assert_eq!((g.fid, g.nlink), (file.fid, 1));
    assert_eq!(c.stat(ctx(), "/".into()).await.unwrap().unwrap().nlink, 3);
    c.remove(ctx(), "/b/g".into()).await.unwrap().unwrap();
    let counters = c.counters(ctx()).await.unwrap().unwrap();
    assert_eq!((counters.files, counters.dirs), (0, 2));
    master.shutdown().await;
}

#[tokio::test]
async fn a_second_master_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let master = kfs_master::start(&config(dir.path())).await.unwrap();
    match kfs_master::start(&config(dir.path())).await {
        Err(e @ StartError::Storage(_)) => {
            assert!(e.to_string().contains("another kfs-master"), "{e}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a second master started on a locked directory"),
    }
    master.shutdown().await;
    let again = kfs_master::start(&config(dir.path())).await.unwrap();
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let master = kfs_master::start(&config(dir.path())).await.unwrap();
    let c = connect(&master).await;
    c.mkdir(ctx(), "/load".into(), MkdirOptions::default())
        .await
        .unwrap()
        .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    c.create(ctx(), format!("/load/{t}-{i}"), CreateOptions::default())
                        .await
                        .unwrap()
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = master.commit_stats();
    let (ops, batches) = (
        stats.ops.load(Ordering::Relaxed),
        stats.batches.load(Ordering::Relaxed),
    );
    assert_eq!(ops, 1 + 32 * 50);
    assert!(
        batches < ops,
        "{ops} ops took {batches} fsyncs: no group commit"
    );
    let page = c
        .readdir(ctx(), "/load".into(), None, 0, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.entries.len(), 32 * 50);
    master.shutdown().await;
}

/// A connection that asks for `Logged` is answered before the sync of its batch, and
/// `sync_namespace` returns once everything answered before it is synced; every other
/// connection stays `Synced`. What is answered either way is in the log after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_answered_once_logged_are_synced_by_sync_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let master = kfs_master::start(&config(dir.path())).await.unwrap();
    let logged = connect(&master).await;
    logged
        .set_durability(ctx(), Durability::Logged)
        .await
        .unwrap()
        .unwrap();
    let synced = connect(&master).await;
    for i in 0..20 {
        logged
            .create(ctx(), format!("/l{i}"), CreateOptions::default())
            .await
            .unwrap()
            .unwrap();
        synced
            .mkdir(ctx(), format!("/s{i}"), MkdirOptions::default())
            .await
            .unwrap()
            .unwrap();
    }
    let stats = master.commit_stats();
    let last = stats.last_seq.load(Ordering::Relaxed);
    let synced_to = logged.sync_namespace(ctx()).await.unwrap().unwrap();
    assert!(
        synced_to >= last,
        "synced to {synced_to}, {last} written before the call"
    );
    // Changes that fail are still refused, named, whatever the durability.
    let exclusive = CreateOptions {
        exclusive: true,
        ..CreateOptions::default()
    };
    let again = logged.create(ctx(), "/l0".into(), exclusive).await.unwrap();
    assert!(
        matches!(again, Err(KfsError::AlreadyExists { .. })),
        "{again:?}"
    );
    master.shutdown().await;
    let master = kfs_master::start(&config(dir.path())).await.unwrap();
    let c = connect(&master).await;
    for i in 0..20 {
        assert!(c.stat(ctx(), format!("/l{i}")).await.unwrap().is_ok());
        assert!(c.stat(ctx(), format!("/s{i}")).await.unwrap().is_ok());
    }
    master.shutdown().await;
}

/// The master's heartbeat timeouts follow its clock, not the wall's: with a manual clock a
/// silent chunkserver stays alive however long the test takes, and is declared dead once the
/// clock moves past the timeout (issue 16, item 6).
#[tokio::test]
async fn heartbeat_timeouts_follow_the_masters_clock() {
    use kfs_common::clock::Clock;
    use kfs_common::proto::cluster::{self, HelloRequest, SpaceReport};
    use kfs_common::proto::master::ServerState;
    use kfs_common::{ServerId, proto::PROTOCOL_VERSION};

    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual();
    let config = MasterConfig {
        heartbeat_interval_ms: 50,
        chunkserver_timeout_ms: 200,
        ..config(dir.path())
    };
    let master = kfs_master::start_with_clock(&config, clock.clone())
        .await
        .unwrap();
    let link = cluster::connect(
        master.local_addr(),
        &kfs_common::security::Security::Insecure,
    )
    .await
    .unwrap();
    link.hello(
        ctx(),
        HelloRequest {
            protocol: PROTOCOL_VERSION,
            server: ServerId(7),
            addr: "127.0.0.1:9".parse().unwrap(),
            space: SpaceReport::default(),
            chunks: Vec::new(),
            corrupt: Vec::new(),
        },
    )
    .await
    .unwrap()
    .unwrap();
    let c = connect(&master).await;
    let state = || async { c.chunkservers(ctx()).await.unwrap().unwrap()[0].state };
    // Many expiry rounds (every 50 ms of real time) pass with the clock standing still.
    let real = std::time::Instant::now();
    while real.elapsed() < Duration::from_millis(600) {
        assert_eq!(state().await, ServerState::Alive);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    clock.advance(Duration::from_millis(201));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while state().await != ServerState::Dead {
        assert!(std::time::Instant::now() < deadline, "never declared dead");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    master.shutdown().await;
}
