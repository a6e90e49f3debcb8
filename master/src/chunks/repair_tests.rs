//! Unit tests of repair rounds (`repair.rs`): copies fewest replicas first, trims from the
//! fullest, draining, safe mode, rebalancing, rounds in slices, proofs before trims.

use super::*;
use crate::namespace::op::Op;
use kfs_common::proto::PROTOCOL_VERSION;
use kfs_common::proto::cluster::{ChunkReport, HelloRequest, SpaceReport};
use kfs_common::{ChunkVersion, FileId, ServerId};
use std::time::Duration;

const T: ChunkTiming = ChunkTiming {
    heartbeat_interval: Duration::from_secs(1),
    server_timeout: Duration::from_secs(5),
};

/// A namespace with one file (replication `r`) of `chunks` chunks at version 1.
fn ns(r: u8, chunks: u64) -> Namespace {
    let mut ns = Namespace::new(1);
    ns.apply(&Op::Create {
        path: "/f".into(),
        exclusive: true,
        replication: r,
        replication_given: true,
        mode: 0o644,
        owner: 0,
        group: 0,
        fid: FileId(2),
        time: 1,
    })
    .unwrap();
    for i in 0..chunks {
        ns.apply(&Op::AllocateChunk {
            fid: FileId(2),
            offset: i << 20,
            chunk: ChunkId(10 + i),
            version: ChunkVersion(1),
        })
        .unwrap();
    }
    ns
}

fn hello(map: &mut ChunkMap, server: u128, chunks: &[u64], used: u64) {
    map.hello(
        HelloRequest {
            protocol: PROTOCOL_VERSION,
            server: ServerId(server),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 9000 + server as u16)),
            space: SpaceReport {
                capacity: 1000,
                available: 1000 - used,
                used,
            },
            chunks: chunks
                .iter()
                .map(|c| ChunkReport {
                    chunk: ChunkId(*c),
                    version: ChunkVersion(1),
                    length: 1,
                })
                .collect(),
            corrupt: Vec::new(),
        },
        Instant::now(),
    )
    .unwrap();
}

#[test]
fn copies_go_where_the_chunk_is_not_fewest_replicas_first() {
    let ns = ns(3, 2);
    let mut map = ChunkMap::new(&ns, T, 0);
    hello(&mut map, 1, &[10, 11], 0);
    hello(&mut map, 2, &[11], 0);
    hello(&mut map, 3, &[], 0);
    hello(&mut map, 4, &[], 0);
    let tasks = map.plan_repairs(&ns, Instant::now()).0;
    // Chunk 10 has one replica, 11 two: 10 goes first; each copy targets a server without it.
    assert_eq!(tasks[0].chunk, ChunkId(10));
    for t in &tasks {
        let holders = map.locations(t.chunk);
        assert!(
            !holders.iter().any(|h| h.server == t.target.server),
            "{t:?}"
        );
    }
    assert!(
        map.plan_repairs(&ns, Instant::now())
            .0
            .iter()
            .all(|t| !tasks.iter().any(|u| u.chunk == t.chunk)),
        "no second copy while one is in flight"
    );
    for t in &tasks {
        map.copy_done(t, Ok(1));
    }
    assert!(tasks.iter().all(|t| {
        map.locations(t.chunk)
            .iter()
            .any(|r| r.server == t.target.server)
    }));
}

#[test]
fn extra_replicas_are_trimmed_from_the_fullest_server() {
    let ns = ns(2, 1);
    let mut map = ChunkMap::new(&ns, T, 0);
    hello(&mut map, 1, &[10], 100);
    hello(&mut map, 2, &[10], 900);
    hello(&mut map, 3, &[10], 500);
    // Heard of in hellos only: the replicas prove their data before any is trimmed.
    let (copies, proofs) = map.plan_repairs(&ns, Instant::now());
    assert!(copies.is_empty());
    assert_eq!(proofs.len(), 1);
    assert_eq!(map.locations(ChunkId(10)).len(), 3, "nothing trimmed yet");
    assert!(
        map.plan_repairs(&ns, Instant::now()).1.is_empty(),
        "one proof at a time"
    );
    let answers: Vec<_> = proofs[0]
        .replicas
        .iter()
        .map(|r| (r.server, Ok((1, 7))))
        .collect();
    map.proof_done(&proofs[0], &answers);
    assert!(map.plan_repairs(&ns, Instant::now()).0.is_empty());
    let left: Vec<ServerId> = map
        .locations(ChunkId(10))
        .iter()
        .map(|r| r.server)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(
        !left.contains(&ServerId(2)),
        "the fullest server lost its replica"
    );
}

#[test]
fn a_draining_server_is_copied_from_then_emptied() {
    let ns = ns(2, 1);
    let mut map = ChunkMap::new(&ns, T, 0);
    hello(&mut map, 1, &[10], 0);
    hello(&mut map, 2, &[10], 0);
    hello(&mut map, 3, &[], 0);
    let info = map
        .set_draining("127.0.0.1:9001", true, Instant::now())
        .unwrap();
    assert_eq!(info.state, kfs_common::proto::master::ServerState::Draining);
    let tasks = map.plan_repairs(&ns, Instant::now()).0;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].target.server, ServerId(3));
    map.copy_done(&tasks[0], Ok(1));
    assert!(map.plan_repairs(&ns, Instant::now()).0.is_empty());
    let states: Vec<_> = map
        .servers(Instant::now())
        .into_iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(states[0], kfs_common::proto::master::ServerState::Drained);
}

#[test]
fn safe_mode_holds_everything_until_chunks_report() {
    let ns = ns(3, 2);
    let config = RepairConfig {
        safe_mode_max: Duration::from_secs(3600),
        ..Default::default()
    };
    let mut map = ChunkMap::with_repair(&ns, T, 0, config, Some(Instant::now()));
    hello(&mut map, 1, &[10, 99], 0);
    hello(&mut map, 2, &[], 0);
    assert!(
        map.in_safe_mode(Instant::now()),
        "chunk 11 has not reported"
    );
    assert!(map.plan_repairs(&ns, Instant::now()).0.is_empty());
    hello(&mut map, 3, &[11], 0);
    assert!(!map.in_safe_mode(Instant::now()));
    assert!(!map.plan_repairs(&ns, Instant::now()).0.is_empty());
}

#[test]
fn unbalanced_servers_get_a_replica_moved() {
    let ns = ns(1, 3);
    let mut map = ChunkMap::new(&ns, T, 0);
    hello(&mut map, 1, &[10, 11, 12], 800);
    hello(&mut map, 2, &[], 100);
    let tasks = map.plan_repairs(&ns, Instant::now()).0;
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (tasks[0].source.server, tasks[0].target.server),
        (ServerId(1), ServerId(2))
    );
}

#[test]
fn a_round_in_slices_finds_what_a_whole_round_finds() {
    let ns = ns(2, 10);
    let build = || {
        let mut map = ChunkMap::new(&ns, T, 0);
        hello(&mut map, 1, &[10, 11, 12, 13, 14, 15, 16, 17, 18, 19], 0);
        hello(&mut map, 2, &[10, 12, 14], 0);
        hello(&mut map, 3, &[], 0);
        hello(&mut map, 4, &[], 0);
        map
    };
    let mut whole = build();
    let mut expected: Vec<ChunkId> = whole
        .plan_repairs(&ns, Instant::now())
        .0
        .iter()
        .map(|t| t.chunk)
        .collect();
    let mut sliced = build();
    let mut round = RepairRound::new();
    let mut slices = 0;
    while !round.done() {
        sliced.scan_repairs(&ns, Instant::now(), &mut round, 3);
        slices += 1;
    }
    assert_eq!(slices, 4, "10 chunks in slices of 3");
    let mut got: Vec<ChunkId> = sliced
        .start_repairs(Instant::now(), round)
        .iter()
        .map(|t| t.chunk)
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(
        got.len(),
        2,
        "seven chunks want a copy, all from server 1, which serves two at a time"
    );
}

/// Digests that fail or disagree trim nothing; a server that does not hold what it claimed
/// leaves the map.
#[test]
fn claims_are_proven_by_digests_before_anything_is_trimmed() {
    use super::proof::DigestFailure;
    use kfs_common::KfsError;
    let ns = ns(2, 1);
    let mut map = ChunkMap::new(&ns, T, 0);
    for s in 1..=4 {
        hello(&mut map, s, &[10], 100 * s as u64);
    }
    let (_, proofs) = map.plan_repairs(&ns, Instant::now());
    // Disagreeing data: none proven, nothing trimmed, asked again next round.
    let answers: Vec<_> = proofs[0]
        .replicas
        .iter()
        .enumerate()
        .map(|(n, r)| (r.server, Ok((1, n as u32 % 2))))
        .collect();
    map.proof_done(&proofs[0], &answers);
    let (_, proofs) = map.plan_repairs(&ns, Instant::now());
    assert_eq!(map.locations(ChunkId(10)).len(), 4);
    // Server 4 does not hold it, server 3 does not answer; 1 and 2 agree.
    let answers: Vec<_> = proofs[0]
        .replicas
        .iter()
        .map(|r| {
            let answer = match r.server.0 {
                4 => Err(DigestFailure::from_reply(KfsError::NoSuchChunk {
                    chunk: ChunkId(10),
                })),
                3 => Err(DigestFailure::Other("unreachable".into())),
                _ => Ok((1, 7)),
            };
            (r.server, answer)
        })
        .collect();
    map.proof_done(&proofs[0], &answers);
    let left = |map: &ChunkMap| -> Vec<u128> {
        let mut l: Vec<u128> = map
            .locations(ChunkId(10))
            .iter()
            .map(|r| r.server.0)
            .collect();
        l.sort();
        l
    };
    assert_eq!(left(&map), vec![1, 2, 3], "the false claim left the map");
    // Two proven (the factor): the unproven one is the extra.
    assert!(map.plan_repairs(&ns, Instant::now()).1.is_empty());
    assert_eq!(left(&map), vec![1, 2]);
}
