//! What the mount keeps to spare calls to the master, held to what the master says: a
//! directory's attributes after this mount's own changes in it (`kfs_fuse::dir_attrs`), and the
//! names of listed directories under `-o negative_timeout` (`kfs_fuse::known_names`), which is
//! off by default so that a file closed by another client opens through the mount at once.
//!
//! Needs `/dev/fuse` and root, as t100.

use kfs_tests::mounts::{MountedCluster as Mount, blocking};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// A directory's mtime, ctime (ns) and link count through the mount.
fn shown(path: &std::path::Path) -> (i64, i64, u64) {
    let m = std::fs::metadata(path).unwrap();
    (
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        m.nlink(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_directory_shows_the_masters_attributes_after_each_change_made_in_it() {
    let m = Mount::start().await;
    let client = m.cluster.client().await;
    let dir = m.at("d");
    let masters =
        |attr: kfs_common::proto::master::FileAttr| (attr.mtime, attr.ctime, u64::from(attr.nlink));
    blocking({
        let dir = dir.clone();
        move || std::fs::create_dir(&dir).unwrap()
    })
    .await;
    let mut last = blocking({
        let dir = dir.clone();
        move || shown(&dir)
    })
    .await;
    // Each change, then the directory as the mount shows it: the master's, and moved on.
    type Change = Box<dyn FnOnce(&std::path::Path) + Send>;
    let changes: Vec<(&str, Change)> = vec![
        (
            "create",
            Box::new(|d| drop(std::fs::File::create(d.join("f")).unwrap())),
        ),
        (
            "mkdir",
            Box::new(|d| std::fs::create_dir(d.join("sub")).unwrap()),
        ),
        (
            "symlink",
            Box::new(|d| std::os::unix::fs::symlink("f", d.join("l")).unwrap()),
        ),
        (
            "rename",
            Box::new(|d| std::fs::rename(d.join("f"), d.join("g")).unwrap()),
        ),
        (
            "link",
            Box::new(|d| std::fs::hard_link(d.join("g"), d.join("h")).unwrap()),
        ),
        (
            "unlink",
            Box::new(|d| std::fs::remove_file(d.join("g")).unwrap()),
        ),
        (
            "rmdir",
            Box::new(|d| std::fs::remove_dir(d.join("sub")).unwrap()),
        ),
    ];
    for (what, change) in changes {
        // Distinct times even at a coarse clock.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = blocking({
            let dir = dir.clone();
            move || {
                change(&dir);
                shown(&dir)
            }
        })
        .await;
        let master = masters(client.stat("/d").await.unwrap());
        assert_eq!(
            now, master,
            "after {what}: the mount shows what the master has"
        );
        assert!(
            now.1 > last.1,
            "after {what}: the change time moved ({last:?} -> {now:?})"
        );
        last = now;
    }
    assert_eq!(last.2, 2, "the subdirectory's link is gone again");
    // A change of the directory itself (its ctime moves to the second after its mtime, so it
    // may not move here): the mode shows at once.
    let mode = blocking(move || {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::metadata(&dir).unwrap().mode() & 0o7777
    })
    .await;
    assert_eq!(mode, 0o700);
    assert_eq!(client.stat("/d").await.unwrap().mode, 0o700);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_names_ask_the_master_unless_negative_timeout_is_set() {
    // By default, a file another client made and closed opens through the mount at once, even
    // right after the mount looked for it and found nothing.
    let m = Mount::start().await;
    let client = m.cluster.client().await;
    client.mkdir("/in").await.unwrap();
    let missing = m.at("in/later");
    blocking({
        let missing = missing.clone();
        move || assert!(std::fs::metadata(&missing).is_err())
    })
    .await;
    client
        .create("/in/later")
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    blocking(move || assert!(std::fs::metadata(&missing).unwrap().is_file())).await;
    m.stop().await;

    // With negative_timeout, the listing answers for that long; this mount's own names show
    // at once, and others' once the listing is older than the timeout.
    let mut options = kfs_fuse::Parsed::default();
    let timeout = Duration::from_secs(3);
    options.settings.negative_ttl = timeout;
    let m = Mount::start_with(&options).await;
    let client = m.cluster.client().await;
    client.mkdir("/in").await.unwrap();
    let (other, mine) = (m.at("in/other"), m.at("in/mine"));
    let listed = tokio::time::Instant::now();
    blocking({
        let other = other.clone();
        let mine = mine.clone();
        move || {
            assert!(
                std::fs::metadata(&other).is_err(),
                "the first miss lists /in"
            );
            std::fs::write(&mine, b"here").unwrap();
            assert_eq!(std::fs::read(&mine).unwrap(), b"here");
        }
    })
    .await;
    client
        .create("/in/other")
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let seen = blocking({
        let other = other.clone();
        move || std::fs::metadata(&other).is_ok()
    })
    .await;
    // (Only checked while the listing is surely fresh: a slow machine may take longer.)
    if listed.elapsed() < timeout / 2 {
        assert!(
            !seen,
            "within negative_timeout the listing says it is not there"
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let other = other.clone();
        if blocking(move || std::fs::metadata(&other).is_ok()).await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn name_changes_answer_with_the_directories_they_changed() {
    use kfs_common::proto::master::NameChange;
    let m = Mount::start().await;
    let client = m.cluster.client().await;
    client.mkdir("/a").await.unwrap();
    client.mkdir("/b").await.unwrap();
    client.create("/a/f").await.unwrap().close().await.unwrap();
    client.mkdir("/a/sub").await.unwrap();
    let dirs = client
        .change_names(NameChange::Rename {
            src: "/a/f".into(),
            dst: "/b/f".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        dirs,
        vec![
            client.stat("/a").await.unwrap(),
            client.stat("/b").await.unwrap()
        ]
    );
    let dirs = client
        .change_names(NameChange::Rename {
            src: "/b/f".into(),
            dst: "/b/g".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        dirs,
        vec![client.stat("/b").await.unwrap()],
        "one directory: once"
    );
    let dirs = client
        .change_names(NameChange::Rmdir {
            path: "/a/sub".into(),
        })
        .await
        .unwrap();
    assert_eq!(dirs[0].nlink, 2, "the subdirectory's link is gone");
    let dirs = client
        .change_names(NameChange::Remove {
            path: "/b/g".into(),
        })
        .await
        .unwrap();
    assert_eq!(dirs, vec![client.stat("/b").await.unwrap()]);
    // Errors are the ones remove, rmdir and rename give; the root has no name to change.
    let gone = client
        .change_names(NameChange::Remove {
            path: "/b/g".into(),
        })
        .await;
    assert!(
        matches!(gone, Err(kfs_common::KfsError::NotFound { .. })),
        "{gone:?}"
    );
    let root = client
        .change_names(NameChange::Rmdir { path: "/".into() })
        .await;
    assert!(
        matches!(root, Err(kfs_common::KfsError::InvalidArgument(_))),
        "{root:?}"
    );
    m.stop().await;
}
