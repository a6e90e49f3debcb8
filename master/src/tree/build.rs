//! Bulk build: [`PMap::from_sorted`] makes a tree from strictly ascending entries (a
//! checkpoint being loaded) with full leaves and branches, bottom up, one level at a time.
//!
//! The result meets every invariant of the module docs: only the last node of a level can come
//! out small, and `rebalance_last_two` evens it out with its neighbour (by the delete path's
//! refill), so no non-root node is under its minimum.

use super::{BRANCH_CAP, BRANCH_MIN, Branch, LEAF_CAP, LEAF_MIN, Leaf, Node, PMap, refill_child};
use arrayvec::ArrayVec;
use std::sync::Arc;

/// Error of [`PMap::from_sorted`]: the input was not strictly ascending.
#[derive(Debug, thiserror::Error)]
#[error("entries out of order at position {position}")]
pub struct NotSorted {
    pub position: usize,
}

impl<K: Ord + Clone, V: Clone> PMap<K, V> {
    /// Builds a map from strictly ascending entries, with full leaves (used to load a checkpoint).
    pub fn from_sorted(entries: impl IntoIterator<Item = (K, V)>) -> Result<Self, NotSorted> {
        let mut level: Vec<(K, Arc<Node<K, V>>)> = Vec::new();
        let mut leaf: ArrayVec<(K, V), LEAF_CAP> = ArrayVec::new();
        let mut len = 0usize;
        let mut last_key: Option<K> = None;
        for (key, value) in entries {
            if last_key.as_ref().is_some_and(|last| *last >= key) {
                return Err(NotSorted { position: len });
            }
            last_key = Some(key.clone());
            if leaf.is_full() {
                push_leaf(&mut level, std::mem::take(&mut leaf));
            }
            leaf.push((key, value));
            len += 1;
        }
        if !leaf.is_empty() {
            push_leaf(&mut level, leaf);
        }
        rebalance_last_two(&mut level, LEAF_MIN);
        while level.len() > 1 {
            let mut upper: Vec<(K, Arc<Node<K, V>>)> = Vec::new();
            let mut group: Vec<(K, Arc<Node<K, V>>)> = Vec::new();
            for item in level {
                if group.len() == BRANCH_CAP {
                    upper.push(branch_of(std::mem::take(&mut group)));
                }
                group.push(item);
            }
            upper.push(branch_of(group));
            rebalance_last_two(&mut upper, BRANCH_MIN);
            level = upper;
        }
        Ok(PMap {
            root: level.pop().map(|(_, node)| node),
            len,
        })
    }
}

fn push_leaf<K: Clone, V>(
    level: &mut Vec<(K, Arc<Node<K, V>>)>,
    entries: ArrayVec<(K, V), LEAF_CAP>,
) {
    let first = entries[0].0.clone();
    level.push((
        first,
        Arc::new(Node::Leaf(Leaf {
            entries,
            last_insert: 0,
        })),
    ));
}

fn branch_of<K, V>(group: Vec<(K, Arc<Node<K, V>>)>) -> (K, Arc<Node<K, V>>) {
    let mut items = group.into_iter();
    let (first, child) = items.next().expect("a branch has children");
    let mut keys = ArrayVec::new();
    let mut children = ArrayVec::new();
    children.push(child);
    for (key, child) in items {
        keys.push(key);
        children.push(child);
    }
    (first, Arc::new(Node::Branch(Branch { keys, children })))
}

/// After a bulk build, the last node of a level may be small; even it out with its neighbour.
fn rebalance_last_two<K: Ord + Clone, V: Clone>(level: &mut [(K, Arc<Node<K, V>>)], min: usize) {
    let n = level.len();
    if n < 2 {
        return;
    }
    let size = |node: &Node<K, V>| match node {
        Node::Leaf(l) => l.entries.len(),
        Node::Branch(b) => b.children.len(),
    };
    if size(&level[n - 1].1) >= min {
        return;
    }
    // Reuse the delete path's refill on a temporary parent of the two nodes.
    let (left, right) = (level[n - 2].clone(), level[n - 1].clone());
    let mut parent = Branch {
        keys: [right.0.clone()].into_iter().collect(),
        children: [left.1, right.1].into_iter().collect(),
    };
    refill_child(&mut parent, 1);
    assert_eq!(parent.children.len(), 2, "two full-enough nodes stay two");
    level[n - 2].1 = parent.children[0].clone();
    level[n - 1] = (parent.keys[0].clone(), parent.children[1].clone());
}
