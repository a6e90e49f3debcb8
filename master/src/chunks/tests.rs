//! Unit tests of the chunk map: hellos, heartbeats, corrupt and freed replicas.

use super::*;
use crate::namespace::op::Op;
use kfs_common::KfsError;
use kfs_common::proto::PROTOCOL_VERSION;
use kfs_common::proto::cluster::{ChunkReport, HeartbeatReply, HeartbeatRequest, HelloRequest};
use kfs_common::proto::master::ServerState;

pub(super) const T: ChunkTiming = ChunkTiming {
    heartbeat_interval: Duration::from_secs(1),
    server_timeout: Duration::from_secs(5),
};

pub(super) fn ns_with_chunks(n: u64) -> Namespace {
    let mut ns = Namespace::new(1);
    ns.apply(&Op::Create {
        path: "/f".into(),
        exclusive: true,
        replication: 3,
        replication_given: false,
        mode: 0o644,
        owner: 0,
        group: 0,
        fid: FileId(2),
        time: 1,
    })
    .unwrap();
    for i in 0..n {
        ns.apply(&Op::AllocateChunk {
            fid: FileId(2),
            offset: i << 26,
            chunk: ChunkId(10 + i),
            version: ChunkVersion(3),
        })
        .unwrap();
    }
    ns
}

pub(super) fn hello(server: u128, chunks: &[(u64, u64)]) -> HelloRequest {
    HelloRequest {
        protocol: PROTOCOL_VERSION,
        server: ServerId(server),
        addr: SocketAddr::from(([127, 0, 0, 1], 9000 + server as u16)),
        space: SpaceReport::default(),
        chunks: chunks
            .iter()
            .map(|&(c, v)| ChunkReport {
                chunk: ChunkId(c),
                version: ChunkVersion(v),
                length: 7,
            })
            .collect(),
        corrupt: Vec::new(),
    }
}

pub(super) fn beat(server: u128, session: u64, corrupt: &[u64]) -> HeartbeatRequest {
    HeartbeatRequest {
        server: ServerId(server),
        session,
        space: SpaceReport::default(),
        chunk_count: 0,
        corrupt: corrupt.iter().map(|c| ChunkId(*c)).collect(),
    }
}

#[test]
fn hello_keeps_known_replicas_deletes_unknown_ones_and_keeps_stale_ones_back() {
    let ns = ns_with_chunks(2);
    let mut map = ChunkMap::new(&ns, T, 100);
    let now = Instant::now();
    let reply = map
        .hello(hello(1, &[(10, 3), (11, 2), (99, 1)]), now)
        .unwrap();
    // The orphan goes at once; the stale replica of chunk 11 is kept (not counted) while
    // chunk 11 has no live replica elsewhere.
    assert_eq!(reply.delete, vec![ChunkId(99)]);
    assert_eq!(reply.session, 100);
    assert_eq!(map.locations(ChunkId(10)).len(), 1);
    assert!(map.locations(ChunkId(11)).is_empty());
    assert_eq!(map.deferred_deletes(ServerId(1)), vec![ChunkId(11)]);
    map.check_invariants(&ns).unwrap();
    map.release_deferred(&ns);
    assert_eq!(map.deferred_deletes(ServerId(1)), vec![ChunkId(11)]);
    // Once chunk 11 is back at its factor on other servers, the stale one is deleted.
    let factor = ns
        .stat_fid(map.chunk(ChunkId(11)).unwrap().0)
        .unwrap()
        .replication;
    for s in 2..2 + u128::from(factor) {
        map.hello(hello(s, &[(11, 3)]), now).unwrap();
    }
    map.release_deferred(&ns);
    assert!(map.deferred_deletes(ServerId(1)).is_empty());
    let HeartbeatReply::Ok { delete, .. } = map.heartbeat(beat(1, 100, &[]), now) else {
        panic!("server 1 is known")
    };
    assert_eq!(delete, vec![ChunkId(11)]);
    let mut wrong = hello(2, &[]);
    wrong.protocol += 1;
    assert!(matches!(
        map.hello(wrong, now),
        Err(KfsError::IncompatibleProtocol { .. })
    ));
}

#[test]
fn silent_servers_die_and_come_back_through_hello() {
    let ns = ns_with_chunks(1);
    let mut map = ChunkMap::new(&ns, T, 0);
    let t0 = Instant::now();
    let s1 = map.hello(hello(1, &[(10, 3)]), t0).unwrap().session;
    let s2 = map.hello(hello(2, &[(10, 3)]), t0).unwrap().session;
    assert_eq!(map.locations(ChunkId(10)).len(), 2);
    let t1 = t0 + Duration::from_secs(4);
    assert!(matches!(
        map.heartbeat(beat(1, s1, &[]), t1),
        HeartbeatReply::Ok { .. }
    ));
    assert!(map.expire(t1).is_empty());
    let t2 = t0 + Duration::from_secs(6);
    assert_eq!(map.expire(t2), vec![ServerId(2)]);
    assert_eq!(map.locations(ChunkId(10)).len(), 1);
    let states: Vec<ServerState> = map.servers(t2).iter().map(|s| s.state).collect();
    assert_eq!(states, vec![ServerState::Alive, ServerState::Dead]);
    // The dead server's next heartbeat is told to say hello again; then it is back.
    assert_eq!(map.heartbeat(beat(2, s2, &[]), t2), HeartbeatReply::Rehello);
    map.hello(hello(2, &[(10, 3)]), t2).unwrap();
    assert_eq!(map.locations(ChunkId(10)).len(), 2);
    assert_eq!(map.heartbeat(beat(9, 0, &[]), t2), HeartbeatReply::Rehello);
    map.check_invariants(&ns).unwrap();
}

#[test]
fn corrupt_replicas_stop_counting_and_freed_chunks_are_deleted() {
    let mut ns = ns_with_chunks(2);
    let mut map = ChunkMap::new(&ns, T, 0);
    let now = Instant::now();
    let s = map
        .hello(hello(1, &[(10, 3), (11, 3)]), now)
        .unwrap()
        .session;
    map.heartbeat(beat(1, s, &[10]), now);
    assert!(map.locations(ChunkId(10)).is_empty());
    map.check_invariants(&ns).unwrap();

    let op = Op::Remove {
        path: "/f".into(),
        time: 2,
    };
    let result = ns.apply(&op);
    map.applied(&op, &result);
    assert_eq!(map.chunk_count(), 0);
    match map.heartbeat(beat(1, s, &[10]), now) {
        HeartbeatReply::Ok { mut delete } => {
            delete.sort();
            assert_eq!(
                delete,
                vec![ChunkId(10), ChunkId(11)],
                "the corrupt one too"
            );
        }
        other => panic!("{other:?}"),
    }
    map.check_invariants(&ns).unwrap();
}
