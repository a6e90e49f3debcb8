//! `PMap` against `BTreeMap` as the model (proptest), snapshots left untouched by later
//! mutations, leaf fill under ascending inserts, bulk builds, and shrinking to empty.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Action {
    Insert(u16, u32),
    Remove(u16),
    Snapshot,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Action::Insert(k % 3000, v)),
        3 => any::<u16>().prop_map(|k| Action::Remove(k % 3000)),
        1 => Just(Action::Snapshot),
    ]
}

fn assert_same(map: &PMap<u16, u32>, model: &BTreeMap<u16, u32>) {
    map.check_invariants().unwrap();
    assert_eq!(map.len(), model.len());
    assert!(
        map.iter()
            .map(|(k, v)| (*k, *v))
            .eq(model.iter().map(|(k, v)| (*k, *v)))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random inserts and removes, with snapshots taken along the way, agree with `BTreeMap`;
    /// every snapshot still shows the state at the moment it was taken.
    #[test]
    fn behaves_like_btreemap(actions in proptest::collection::vec(action(), 1..3000)) {
        let mut map = PMap::new();
        let mut model = BTreeMap::new();
        let mut snapshots = Vec::new();
        for action in actions {
            match action {
                Action::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                Action::Remove(k) => prop_assert_eq!(map.remove(&k), model.remove(&k)),
                Action::Snapshot => snapshots.push((map.clone(), model.clone())),
            }
        }
        assert_same(&map, &model);
        for (snap, snap_model) in &snapshots {
            assert_same(snap, snap_model);
        }
        for probe in [0u16, 1, 1500, 2999, 3000] {
            let expect: Vec<_> = model.range(probe..).map(|(k, v)| (*k, *v)).collect();
            let got: Vec<_> = map.range_from(Bound::Included(&probe)).map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(got, expect);
            let expect: Vec<_> = model
                .range((Bound::Excluded(probe), Bound::Unbounded))
                .map(|(k, v)| (*k, *v))
                .collect();
            let got: Vec<_> = map.range_from(Bound::Excluded(&probe)).map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(got, expect);
        }
    }

    #[test]
    fn bulk_load_matches_inserts(keys in proptest::collection::btree_set(any::<u32>(), 0..5000)) {
        let map = PMap::from_sorted(keys.iter().map(|k| (*k, *k as u64))).unwrap();
        map.check_invariants().unwrap();
        prop_assert_eq!(map.len(), keys.len());
        prop_assert!(map.iter().map(|(k, _)| *k).eq(keys.iter().copied()));
    }
}

#[test]
fn get_mut_copies_only_what_is_shared() {
    let mut map: PMap<u32, u32> = (0..1000)
        .map(|k| (k, k))
        .fold(PMap::new(), |mut m, (k, v)| {
            m.insert(k, v);
            m
        });
    let snapshot = map.clone();
    *map.get_mut(&500).unwrap() = 7;
    assert_eq!(map.get(&500), Some(&7));
    assert_eq!(snapshot.get(&500), Some(&500));
    assert!(map.get_mut(&5000).is_none());
}

#[test]
fn ascending_inserts_fill_leaves() {
    let mut map = PMap::new();
    for k in 0..100_000u32 {
        map.insert(k, ());
    }
    map.check_invariants().unwrap();
    let (leaves, _, entries) = map.node_counts();
    assert!(entries as f64 / (leaves * LEAF_CAP) as f64 > 0.95);

    // Ascending inserts into the middle of the key space (one directory's entries before
    // another's) fill leaves too.
    let mut map = PMap::new();
    for k in 0..1000u32 {
        map.insert((1u8, k), ());
    }
    for k in 0..100_000u32 {
        map.insert((0u8, k), ());
    }
    map.check_invariants().unwrap();
    let (leaves, _, entries) = map.node_counts();
    assert!(entries as f64 / (leaves * LEAF_CAP) as f64 > 0.9);
}

/// Deep trees: enough entries for branches to split and, while draining, to merge and refill,
/// with snapshots held across both.
#[test]
fn deep_random_workload_agrees_with_btreemap() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut map = PMap::new();
    let mut model = BTreeMap::new();
    for _ in 0..300_000 {
        let k = (next() % 400_000) as u32;
        assert_eq!(map.insert(k, k), model.insert(k, k));
    }
    map.check_invariants().unwrap();
    let snapshot = (map.clone(), model.clone());
    let keys: Vec<u32> = model.keys().copied().collect();
    for (n, k) in keys.iter().enumerate() {
        if next() % 4 != 0 {
            assert_eq!(map.remove(k), model.remove(k));
        }
        if n % 50_000 == 0 {
            map.check_invariants().unwrap();
        }
    }
    map.check_invariants().unwrap();
    assert!(
        map.iter()
            .map(|(k, v)| (*k, *v))
            .eq(model.iter().map(|(k, v)| (*k, *v)))
    );
    snapshot.0.check_invariants().unwrap();
    assert!(
        snapshot
            .0
            .iter()
            .map(|(k, _)| *k)
            .eq(snapshot.1.keys().copied())
    );
    let (_, branches, _) = snapshot.0.node_counts();
    assert!(
        branches > 64,
        "the workload must split branches, made {branches}"
    );
}

#[test]
fn unsorted_bulk_input_is_refused() {
    assert_eq!(
        PMap::from_sorted([(1, ()), (1, ())])
            .err()
            .unwrap()
            .position,
        1
    );
    assert_eq!(
        PMap::from_sorted([(2, ()), (1, ())])
            .err()
            .unwrap()
            .position,
        1
    );
}

#[test]
fn draining_shrinks_to_empty() {
    let mut map = PMap::new();
    for k in 0..10_000u32 {
        map.insert(k, k);
    }
    for k in (0..10_000u32).rev() {
        assert_eq!(map.remove(&k), Some(k));
        if k % 997 == 0 {
            map.check_invariants().unwrap();
        }
    }
    assert!(map.is_empty());
    assert_eq!(map.node_counts(), (0, 0, 0));
}
