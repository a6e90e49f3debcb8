//! A metadata directory written by an earlier build must recover exactly, in every later build.
//!
//! `fixtures/meta-log2-ckpt1/` was written on 2026-12-01 by a real master (log segment format 2,
//! checkpoint format 1, before the op log had record types of its own): a checkpoint at op 25 and
//! the log segments up to op 39, covering every kind of op a shell session makes (mkdir -p, put,
//! xattr set/rm, setrep, mv, touch, cp, rm, rmdir). `expected.txt` is every record of the
//! namespace it recovers to, as that build recovered it. Never regenerate either to make this
//! test pass: a difference means this build reads an old directory differently, and the format
//! change that did it needs a migration instead.

use kfs_common::FileId;
use kfs_master::namespace::op::Op;
use kfs_master::namespace::record::{KeyView, Val};
use kfs_master::storage::log::LogWriter;
use kfs_master::storage::recovery::recover;
use std::fmt::Write;
use std::path::Path;

const FIXTURE: &str = "tests/fixtures/meta-log2-ckpt1";

/// Every record of the namespace, one line each, in key order, with the id counters.
fn dump(dir: &Path) -> String {
    let recovered = recover(dir, 0).expect("the fixture recovers");
    let ns = &recovered.ns;
    let mut out = format!(
        "last_seq {} checkpoint_seq {} replayed {} next_fid {} next_chunk_id {}\n",
        recovered.last_seq,
        recovered.checkpoint_seq,
        recovered.replayed,
        ns.next_fid().0,
        ns.next_chunk_id().0
    );
    for (key, val) in ns.records() {
        match (key.view(), val) {
            (KeyView::Dentry { parent, name }, Val::Child { fid, kind }) => {
                writeln!(out, "dentry {} {name:?} -> {} {kind}", parent.0, fid.0)
            }
            (KeyView::Fattr { fid }, Val::Attr(a)) => writeln!(
                out,
                "attr {} {} size {} mtime {} atime {} owner {} group {} mode {:o} replication {}",
                fid.0,
                a.kind,
                // A directory's record now counts its subdirectories there, derived from its
                // entries at recovery (checked by the namespace's invariants); the length it
                // shows, what the fixture's build stored, is 0.
                ns.stat_fid(fid).expect("every attribute is a file's").size,
                a.mtime,
                a.atime,
                a.owner,
                a.group,
                a.mode,
                a.replication
            ),
            (KeyView::Chunk { fid, offset }, Val::Chunk { id, version }) => writeln!(
                out,
                "chunk {} offset {offset} -> {} version {}",
                fid.0, id.0, version.0
            ),
            (KeyView::Xattr { fid, name }, Val::Xattr(value)) => {
                writeln!(out, "xattr {} {name:?} = {value:?}", fid.0)
            }
            (view, val) => panic!("{view:?} holds {val:?}"),
        }
        .unwrap();
    }
    out
}

#[test]
fn a_metadata_directory_of_log_format_2_recovers_exactly() {
    // Recovery may write (a new segment, a cut tail): work on a copy.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(FIXTURE).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name != "expected.txt" {
            std::fs::copy(entry.path(), dir.path().join(name)).unwrap();
        }
    }
    let got = dump(dir.path());
    let expected_path = Path::new(FIXTURE).join("expected.txt");
    if std::env::var_os("KFS_WRITE_FIXTURE").is_some() {
        // Only for a new fixture, never to make this test pass (see the module docs).
        std::fs::write(&expected_path, &got).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap();
    assert_eq!(got, expected, "the fixture recovered differently");

    // This build's records (segment format 3) follow the old segments, and both recover.
    let last_seq = recover(dir.path(), 0).unwrap().last_seq;
    let mut log = LogWriter::create(dir.path(), last_seq + 1, 1 << 20).unwrap();
    let op = Op::Mkdir {
        path: "/photos/new".into(),
        parents: false,
        mode: 0o750,
        owner: 0,
        group: 0,
        first_fid: FileId(1000),
        time: 7,
    };
    log.append([&op]).unwrap();
    drop(log);
    let again = dump(dir.path());
    let first_line = |s: &str| s.lines().next().unwrap().to_string();
    assert!(first_line(&again).starts_with(&format!("last_seq {}", last_seq + 1)));
    let old: Vec<_> = expected.lines().skip(1).collect();
    let new: Vec<_> = again.lines().skip(1).collect();
    let added: Vec<_> = new.iter().filter(|l| !old.contains(l)).collect();
    assert!(
        added.contains(&&"dentry 2 \"new\" -> 1000 directory")
            && added
                .iter()
                .any(|l| l.starts_with("attr 1000 directory size 0 mtime 7")),
        "{added:?}"
    );
}
