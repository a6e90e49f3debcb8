//! The committer with its sync thread: what is answered when, and what recovery finds.

use super::*;
use crate::storage::recovery::recover;

struct Quiet;

impl Observer for Quiet {
    fn applied(&self, _: &Op, _: &KfsResult<Applied>) {}
}

fn mkdir(i: u64) -> Op {
    Op::Mkdir {
        path: format!("/d{i}"),
        parents: false,
        mode: 0o755,
        owner: 0,
        group: 0,
        first_fid: kfs_common::FileId(1000 + i),
        time: 1,
    }
}

/// A committer over a freshly formatted metadata directory, checkpointing only when asked.
fn start(dir: &std::path::Path) -> (Committer, SharedNamespace) {
    let recovered = recover(dir, 1).unwrap();
    let writer = LogWriter::create(dir, recovered.last_seq + 1, 1 << 30).unwrap();
    let ns: SharedNamespace = Arc::new(RwLock::new(recovered.ns));
    let config = CommitterConfig {
        meta_dir: dir.to_path_buf(),
        checkpoint_every_ops: u64::MAX,
        checkpoint_interval: Duration::from_secs(3600),
        keep_checkpoints: 2,
        checkpointer: kfs_common::worker::Workers::new().register("checkpointer"),
        recovered_checkpoint_seq: recovered.checkpoint_seq,
    };
    let committer = Committer::start(ns.clone(), writer, config, Arc::new(Quiet));
    (committer, ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_and_synced_ops_interleaved_are_all_answered_applied_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (committer, ns) = start(dir.path());
    let committer = Arc::new(committer);
    let mut tasks = Vec::new();
    for i in 0..400u64 {
        let committer = committer.clone();
        let durability = if i % 3 == 0 {
            Durability::Synced
        } else {
            Durability::Logged
        };
        tasks.push(tokio::spawn(async move {
            committer.commit_with(mkdir(i), durability).await.unwrap();
            if i % 50 == 0 {
                // Everything answered before is durable once `sync` returns.
                assert!(committer.sync().await.unwrap() >= 1);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let last = committer.sync().await.unwrap();
    assert_eq!(committer.stats().ops.load(Ordering::Relaxed), 400);
    for i in 0..400u64 {
        assert!(
            ns.read().unwrap().stat(&format!("/d{i}")).is_ok(),
            "/d{i} not applied"
        );
    }
    let committer = Arc::into_inner(committer).expect("the only handle");
    tokio::task::spawn_blocking(move || committer.stop())
        .await
        .unwrap();
    let recovered = recover(dir.path(), 2).unwrap();
    assert_eq!(recovered.last_seq, last);
    assert!(recovered.torn_tail.is_none(), "{:?}", recovered.torn_tail);
    for i in 0..400u64 {
        assert!(recovered.ns.stat(&format!("/d{i}")).is_ok(), "/d{i} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_change_under_logged_durability_leaves_the_log_usable() {
    let dir = tempfile::tempdir().unwrap();
    let (committer, _ns) = start(dir.path());
    committer
        .commit_with(mkdir(1), Durability::Logged)
        .await
        .unwrap();
    // The same directory again: refused by the namespace, not by the log.
    let again = committer.commit_with(mkdir(1), Durability::Logged).await;
    assert!(
        matches!(again, Err(KfsError::AlreadyExists { .. })),
        "{again:?}"
    );
    committer
        .commit_with(mkdir(2), Durability::Synced)
        .await
        .unwrap();
    assert_eq!(committer.checkpoint().await.unwrap(), 3);
    tokio::task::spawn_blocking(move || committer.stop())
        .await
        .unwrap();
    let recovered = recover(dir.path(), 2).unwrap();
    assert_eq!(recovered.last_seq, 3);
    assert!(recovered.ns.stat("/d2").is_ok());
}
