//! Unit tests of the chunk map's decisions that depend on time or chance, driven by a manual
//! [`Clock`] and fixed placement seeds: no runtime, no sleeping.
//!
//! - leases: granted for their duration, renewed only while valid, expired after;
//! - placement: distinct servers, only servers with room, more to emptier ones, the same
//!   choices for the same seed;
//! - safe mode: left once enough chunks reported, or when its time is up, and not before.

use super::tests::{T, hello, ns_with_chunks};
use super::*;
use kfs_common::KfsError;
use kfs_common::clock::Clock;
use kfs_common::proto::cluster::HelloRequest;
use std::collections::BTreeMap;

const LEASE: Duration = Duration::from_secs(60);

fn with_space(server: u128, available_mib: u64) -> HelloRequest {
    let mut h = hello(server, &[]);
    h.space = SpaceReport {
        capacity: 1 << 40,
        available: available_mib << 20,
        used: 0,
    };
    h
}

#[test]
fn a_lease_is_valid_for_its_duration_renewed_only_while_valid_and_then_expires() {
    let clock = Clock::manual();
    let ns = ns_with_chunks(1);
    let mut map = ChunkMap::new(&ns, T, 0);
    map.hello(hello(1, &[(10, 3)]), clock.now()).unwrap();
    let chunk = ChunkId(10);
    let replicas = map.locations(chunk);
    let lease = map.grant(chunk, &replicas, clock.now(), LEASE).unwrap();
    assert_eq!((lease.version, lease.valid_ms), (ChunkVersion(3), 60_000));

    clock.advance(Duration::from_secs(59));
    assert_eq!(
        map.current_lease(chunk, clock.now()).unwrap().valid_ms,
        1_000
    );
    // A renewal while valid runs a whole duration from now.
    assert_eq!(
        map.renew(chunk, ChunkVersion(3), clock.now(), LEASE),
        Ok(60_000)
    );
    // At another version it is not this lease.
    assert_eq!(
        map.renew(chunk, ChunkVersion(4), clock.now(), LEASE),
        Err(KfsError::LeaseExpired { chunk })
    );
    clock.advance(LEASE - Duration::from_millis(1));
    assert!(map.current_lease(chunk, clock.now()).is_some());
    clock.advance(Duration::from_millis(1));
    assert!(map.current_lease(chunk, clock.now()).is_none(), "expired");
    assert_eq!(
        map.renew(chunk, ChunkVersion(3), clock.now(), LEASE),
        Err(KfsError::LeaseExpired { chunk }),
        "an expired lease is not renewed"
    );
}

#[test]
fn placement_picks_distinct_servers_with_room_more_often_the_emptier() {
    let clock = Clock::manual();
    let mut map = ChunkMap::new(&Namespace::new(1), T, 7);
    // Server 1 is full; 2 has 100 MiB free, 3 has 1,000 MiB, 4 has 100 MiB.
    for (id, mib) in [(1, 0), (2, 100), (3, 1000), (4, 100)] {
        map.hello(with_space(id, mib), clock.now()).unwrap();
    }
    let mut firsts: BTreeMap<ServerId, u32> = BTreeMap::new();
    for _ in 0..2000 {
        let placed: Vec<ServerId> = map.place(2, &[]).iter().map(|r| r.server).collect();
        assert_eq!(placed.len(), 2);
        assert_ne!(placed[0], placed[1], "distinct servers");
        assert!(!placed.contains(&ServerId(1)), "never the full one");
        *firsts.entry(placed[0]).or_default() += 1;
    }
    // Weighted by free space: server 3 has 10 / 12 of the weight for the first pick.
    let (two, three, four) = (
        firsts[&ServerId(2)],
        firsts[&ServerId(3)],
        firsts[&ServerId(4)],
    );
    assert!(three > 1500 && two > 80 && four > 80, "{firsts:?}");
    // Excluded servers are skipped; asking for more than there are gives what there is.
    let placed: Vec<ServerId> = map
        .place(3, &[ServerId(3)])
        .iter()
        .map(|r| r.server)
        .collect();
    assert_eq!(placed.len(), 2);
    assert!(!placed.contains(&ServerId(3)));
}

#[test]
fn placement_is_the_same_for_the_same_seed() {
    let choices = |seed: u64| {
        let clock = Clock::manual();
        let mut map = ChunkMap::new(&Namespace::new(1), T, seed);
        for id in 1..=6 {
            map.hello(with_space(id, 100), clock.now()).unwrap();
        }
        (0..50)
            .map(|_| {
                map.place(3, &[])
                    .iter()
                    .map(|r| r.server)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(choices(42), choices(42));
    assert_ne!(choices(42), choices(43));
}

#[test]
fn safe_mode_ends_once_enough_chunks_reported() {
    let clock = Clock::manual();
    let ns = ns_with_chunks(4);
    let repair = RepairConfig {
        safe_mode_fraction: 0.75,
        ..RepairConfig::default()
    };
    let mut map = ChunkMap::with_repair(&ns, T, 0, repair, Some(clock.now()));
    assert!(map.in_safe_mode(clock.now()));
    // Two of four chunks: not enough.
    map.hello(hello(1, &[(10, 3), (11, 3)]), clock.now())
        .unwrap();
    assert!(map.in_safe_mode(clock.now()));
    // Three of four (a hello re-counts at once): enough.
    map.hello(hello(2, &[(12, 3)]), clock.now()).unwrap();
    assert!(!map.in_safe_mode(clock.now()));
    assert!(!map.fsck(&ns).safe_mode);
}

#[test]
fn safe_mode_ends_when_its_time_is_up_and_not_before() {
    let clock = Clock::manual();
    let ns = ns_with_chunks(2);
    let repair = RepairConfig {
        safe_mode_max: Duration::from_secs(120),
        ..RepairConfig::default()
    };
    let mut map = ChunkMap::with_repair(&ns, T, 0, repair, Some(clock.now()));
    clock.advance(Duration::from_secs(119));
    assert!(
        map.in_safe_mode(clock.now()),
        "no chunk reported, time not up"
    );
    assert!(map.fsck(&ns).safe_mode);
    clock.advance(Duration::from_secs(1));
    assert!(!map.in_safe_mode(clock.now()), "time is up");
    // Once left, it stays left.
    assert!(!map.in_safe_mode(clock.now()));
}

#[test]
fn a_master_that_did_not_restart_is_never_in_safe_mode() {
    let ns = ns_with_chunks(2);
    let mut map = ChunkMap::new(&ns, T, 0);
    assert!(!map.in_safe_mode(Instant::now()));
}
