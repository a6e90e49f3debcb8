//! A persistent (copy-on-write) B+ tree: the ordered map that holds the master's namespace.
//!
//! [`PMap`] has the shape of `im::OrdMap` (cheap clone, ordered iteration from any key) with a
//! layout made for the master's memory budget:
//! - Entries live only in leaves, inline (no per-entry heap object), 64 to a leaf; branches hold
//!   separator keys and child pointers.
//! - A clone shares every node (`Arc`); a mutation copies only the nodes on its path that are
//!   shared (`Arc::make_mut`). A checkpoint writer iterates a clone while mutations go on.
//! - Splits are append-aware: a key inserted at the end of a full leaf (or right after the
//!   previous insert into that leaf, in its upper half) starts a new leaf instead of halving the
//!   old one, so files created in name or id order fill leaves completely (`im::OrdMap` halves
//!   nodes on every split and then holds about twice the memory; see `benches/layout.rs`).
//! - Other inserts into a full leaf first move entries to a neighbouring leaf with room (as a
//!   B*-tree does), so random inserts leave leaves about 80% full instead of 69%.
//!
//! Invariants (checked by [`PMap::check_invariants`]):
//! - all leaves are at the same depth; entries are strictly ascending across the whole tree;
//! - for every branch, `keys.len() == children.len() - 1` and every key in `children[i]` is
//!   `>= keys[i - 1]` and `< keys[i]`;
//! - no node but the root is empty; `len` is the number of entries.
//!
//! This file holds the node types, lookups, insert and remove (with their splits, moves and
//! refills) and iteration: all the code that changes an existing tree, so the invariants above
//! are kept in one place. `build.rs` holds the bulk build ([`PMap::from_sorted`]), `check.rs` the invariant
//! checks and node counts, `tests.rs` the tests.

use arrayvec::ArrayVec;
use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::Arc;

mod build;
mod check;
#[cfg(test)]
mod tests;

pub use build::NotSorted;

/// Entries per leaf.
const LEAF_CAP: usize = 64;
/// Children per branch.
const BRANCH_CAP: usize = 64;
/// A non-root leaf with fewer entries than this is merged with or refilled from a neighbour.
const LEAF_MIN: usize = LEAF_CAP / 4;
/// A non-root branch with fewer children than this is merged with or refilled from a neighbour.
const BRANCH_MIN: usize = BRANCH_CAP / 4;

/// A persistent ordered map; see the module docs.
pub struct PMap<K, V> {
    root: Option<Arc<Node<K, V>>>,
    len: usize,
}

// Nodes always live behind an `Arc`; boxing the larger variant would cost a second allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Node<K, V> {
    Leaf(Leaf<K, V>),
    Branch(Branch<K, V>),
}

#[derive(Clone)]
struct Leaf<K, V> {
    entries: ArrayVec<(K, V), LEAF_CAP>,
    /// Index of the most recent insert, to recognise runs of ascending inserts.
    last_insert: u8,
}

#[derive(Clone)]
struct Branch<K, V> {
    /// `keys[i]` is a lower bound of `children[i + 1]` and an upper bound (exclusive) of
    /// `children[i]`.
    keys: ArrayVec<K, { BRANCH_CAP - 1 }>,
    children: ArrayVec<Arc<Node<K, V>>, BRANCH_CAP>,
}

impl<K, V> Clone for PMap<K, V> {
    /// O(1): the clone shares every node.
    fn clone(&self) -> Self {
        PMap {
            root: self.root.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for PMap<K, V> {
    fn default() -> Self {
        PMap { root: None, len: 0 }
    }
}

enum InsertOutcome<K, V> {
    Replaced(V),
    Inserted,
    /// The node split: `(separator, new right sibling)`.
    Split(K, Arc<Node<K, V>>),
}

impl<K: Ord + Clone, V: Clone> PMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Looks up the entry for which `cmp(stored_key)` is `Equal`; `cmp` must order stored keys
    /// consistently with `K: Ord` (it answers "how does this stored key compare to the probe").
    pub fn get_by(&self, cmp: impl Fn(&K) -> Ordering) -> Option<(&K, &V)> {
        let mut node = self.root.as_deref()?;
        loop {
            match node {
                Node::Branch(b) => node = &b.children[b.child_index(&cmp)],
                Node::Leaf(l) => {
                    return l
                        .entries
                        .binary_search_by(|(k, _)| cmp(k))
                        .ok()
                        .map(|i| (&l.entries[i].0, &l.entries[i].1));
                }
            }
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.get_by(|k| k.cmp(key)).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Mutable access to a value; copies the shared nodes on its path only if the key exists.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.get(key)?;
        let mut node = Arc::make_mut(self.root.as_mut()?);
        loop {
            match node {
                Node::Branch(b) => {
                    let i = b.child_index(&|k: &K| k.cmp(key));
                    node = Arc::make_mut(&mut b.children[i]);
                }
                Node::Leaf(l) => {
                    let i = l.entries.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
                    return Some(&mut l.entries[i].1);
                }
            }
        }
    }

    /// Inserts or replaces; returns the old value.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let Some(root) = self.root.as_mut() else {
            let mut entries = ArrayVec::new();
            entries.push((key, value));
            self.root = Some(Arc::new(Node::Leaf(Leaf {
                entries,
                last_insert: 0,
            })));
            self.len = 1;
            return None;
        };
        match insert_into(root, key, value) {
            InsertOutcome::Replaced(old) => Some(old),
            InsertOutcome::Inserted => {
                self.len += 1;
                None
            }
            InsertOutcome::Split(separator, right) => {
                let left = self.root.take().expect("root exists");
                let mut keys = ArrayVec::new();
                keys.push(separator);
                let mut children = ArrayVec::new();
                children.push(left);
                children.push(right);
                self.root = Some(Arc::new(Node::Branch(Branch { keys, children })));
                self.len += 1;
                None
            }
        }
    }

    /// Removes a key; returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.get(key)?;
        let root = self.root.as_mut()?;
        let mut removed = None;
        remove_from(root, key, &mut removed);
        if removed.is_some() {
            self.len -= 1;
        }
        // Shrink the root: an empty leaf means an empty map, a branch with one child is replaced
        // by that child.
        loop {
            match self.root.as_deref() {
                Some(Node::Leaf(l)) if l.entries.is_empty() => self.root = None,
                Some(Node::Branch(b)) if b.children.len() == 1 => {
                    let only = b.children[0].clone();
                    self.root = Some(only);
                    continue;
                }
                _ => {}
            }
            break;
        }
        removed
    }

    /// Entries in ascending key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        self.range_by(|_| Ordering::Greater, true)
    }

    /// Entries from `lower` on, in ascending key order.
    pub fn range_from(&self, lower: Bound<&K>) -> Iter<'_, K, V> {
        match lower {
            Bound::Unbounded => self.iter(),
            Bound::Included(key) => self.range_by(|k| k.cmp(key), true),
            Bound::Excluded(key) => self.range_by(|k| k.cmp(key), false),
        }
    }

    /// Entries whose keys are after the probe (`cmp(stored)` is `Greater`), or equal to it too when
    /// `inclusive`, in ascending order. `cmp` is as for [`PMap::get_by`].
    pub fn range_by(&self, cmp: impl Fn(&K) -> Ordering, inclusive: bool) -> Iter<'_, K, V> {
        let mut iter = Iter {
            stack: Vec::new(),
            leaf: &[],
            pos: 0,
        };
        let Some(mut node) = self.root.as_deref() else {
            return iter;
        };
        // Keys equal to a separator live to its right, so both bounds descend the same way.
        loop {
            match node {
                Node::Branch(b) => {
                    let i = b.child_index(&cmp);
                    iter.stack.push((b, i));
                    node = &b.children[i];
                }
                Node::Leaf(l) => {
                    iter.leaf = &l.entries;
                    iter.pos = l.entries.partition_point(|(k, _)| match cmp(k) {
                        Ordering::Less => true,
                        Ordering::Equal => !inclusive,
                        Ordering::Greater => false,
                    });
                    return iter;
                }
            }
        }
    }
}

impl<K, V> Branch<K, V> {
    /// The child whose range holds the probe: the number of separators `<=` the probe.
    fn child_index(&self, cmp: &impl Fn(&K) -> Ordering) -> usize {
        self.keys.partition_point(|k| cmp(k) != Ordering::Greater)
    }
}

fn insert_into<K: Ord + Clone, V: Clone>(
    node: &mut Arc<Node<K, V>>,
    key: K,
    value: V,
) -> InsertOutcome<K, V> {
    match Arc::make_mut(node) {
        Node::Leaf(leaf) => match leaf.entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => InsertOutcome::Replaced(std::mem::replace(&mut leaf.entries[i].1, value)),
            Err(i) if !leaf.entries.is_full() => {
                leaf.entries.insert(i, (key, value));
                leaf.last_insert = i as u8;
                InsertOutcome::Inserted
            }
            Err(i) => {
                let (separator, right) = split_leaf(leaf, i, (key, value));
                InsertOutcome::Split(separator, Arc::new(Node::Leaf(right)))
            }
        },
        Node::Branch(branch) => {
            let mut i = branch.child_index(&|k: &K| k.cmp(&key));
            if make_room(branch, i, &key) {
                i = branch.child_index(&|k: &K| k.cmp(&key));
            }
            match insert_into(&mut branch.children[i], key, value) {
                InsertOutcome::Split(separator, right) => {
                    if !branch.children.is_full() {
                        branch.keys.insert(i, separator);
                        branch.children.insert(i + 1, right);
                        return InsertOutcome::Inserted;
                    }
                    let (up, new_right) = split_branch(branch, i, separator, right);
                    InsertOutcome::Split(up, Arc::new(Node::Branch(new_right)))
                }
                other => other,
            }
        }
    }
}

/// Whether inserting at `at` into a full leaf continues a run of ascending inserts (at the end, or
/// right after the previous insert in the upper half): such a leaf is split at `at`, so that a run
/// leaves full leaves behind it.
fn is_ascending_run<K, V>(leaf: &Leaf<K, V>, at: usize) -> bool {
    at == LEAF_CAP || (at == leaf.last_insert as usize + 1 && at >= LEAF_CAP / 2)
}

/// Child `i` of `branch` is about to take `key`. If it is a full leaf that would be split in the
/// middle (not an ascending run), moves some of its entries to a neighbouring leaf with room
/// instead, as a B*-tree does, so random inserts leave leaves fuller. Returns whether it did.
fn make_room<K: Ord + Clone, V: Clone>(branch: &mut Branch<K, V>, i: usize, key: &K) -> bool {
    let Node::Leaf(leaf) = &*branch.children[i] else {
        return false;
    };
    if !leaf.entries.is_full() {
        return false;
    }
    match leaf.entries.binary_search_by(|(k, _)| k.cmp(key)) {
        Err(at) if !is_ascending_run(leaf, at) => {}
        _ => return false,
    }
    let room = |node: &Node<K, V>| match node {
        Node::Leaf(l) => LEAF_CAP - l.entries.len(),
        Node::Branch(_) => 0,
    };
    if i + 1 < branch.children.len() && room(&branch.children[i + 1]) >= 2 {
        let moving = room(&branch.children[i + 1]) / 2;
        let (head, tail) = branch.children.split_at_mut(i + 1);
        let (Node::Leaf(a), Node::Leaf(b)) =
            (Arc::make_mut(&mut head[i]), Arc::make_mut(&mut tail[0]))
        else {
            unreachable!("siblings of a leaf are leaves");
        };
        let moved: Vec<(K, V)> = a.entries.drain(LEAF_CAP - moving..).collect();
        let rest: Vec<(K, V)> = b.entries.drain(..).collect();
        b.entries.extend(moved.into_iter().chain(rest));
        branch.keys[i] = b.entries[0].0.clone();
        return true;
    }
    if i > 0 && room(&branch.children[i - 1]) >= 2 {
        let moving = room(&branch.children[i - 1]) / 2;
        let (head, tail) = branch.children.split_at_mut(i);
        let (Node::Leaf(a), Node::Leaf(b)) =
            (Arc::make_mut(&mut head[i - 1]), Arc::make_mut(&mut tail[0]))
        else {
            unreachable!("siblings of a leaf are leaves");
        };
        a.entries.extend(b.entries.drain(..moving));
        branch.keys[i - 1] = b.entries[0].0.clone();
        return true;
    }
    false
}

/// Splits a full leaf while inserting `entry` at index `at`; returns the separator and the new
/// right leaf.
fn split_leaf<K: Clone, V>(leaf: &mut Leaf<K, V>, at: usize, entry: (K, V)) -> (K, Leaf<K, V>) {
    let cut = if is_ascending_run(leaf, at) {
        at
    } else {
        LEAF_CAP / 2
    };
    let mut right = Leaf {
        entries: leaf.entries.drain(cut..).collect(),
        last_insert: 0,
    };
    if at < cut || (at == cut && at < LEAF_CAP) {
        leaf.entries.insert(at, entry);
        leaf.last_insert = at as u8;
    } else {
        right.entries.insert(at - cut, entry);
        right.last_insert = (at - cut) as u8;
    }
    (right.entries[0].0.clone(), right)
}

/// Splits a full branch while inserting `separator` and `child` after child `at`; returns the key
/// that moves up and the new right branch.
fn split_branch<K, V>(
    branch: &mut Branch<K, V>,
    at: usize,
    separator: K,
    child: Arc<Node<K, V>>,
) -> (K, Branch<K, V>) {
    let mut keys: Vec<K> = branch.keys.drain(..).collect();
    let mut children: Vec<Arc<Node<K, V>>> = branch.children.drain(..).collect();
    keys.insert(at, separator);
    children.insert(at + 1, child);
    // Appending at the end keeps this branch nearly full (the new branch gets the last two
    // children, so no branch ever has a single child); otherwise halve it.
    let left_children = if at + 1 == BRANCH_CAP {
        BRANCH_CAP - 1
    } else {
        children.len().div_ceil(2)
    };
    let right_children = children.split_off(left_children);
    let right_keys = keys.split_off(left_children);
    let up = keys.pop().expect("a split branch has a middle key");
    branch.keys = keys.into_iter().collect();
    branch.children = children.into_iter().collect();
    (
        up,
        Branch {
            keys: right_keys.into_iter().collect(),
            children: right_children.into_iter().collect(),
        },
    )
}

/// Removes `key` below `node`; returns whether `node` is now too small.
fn remove_from<K: Ord + Clone, V: Clone>(
    node: &mut Arc<Node<K, V>>,
    key: &K,
    removed: &mut Option<V>,
) -> bool {
    match Arc::make_mut(node) {
        Node::Leaf(leaf) => {
            if let Ok(i) = leaf.entries.binary_search_by(|(k, _)| k.cmp(key)) {
                *removed = Some(leaf.entries.remove(i).1);
            }
            leaf.entries.len() < LEAF_MIN
        }
        Node::Branch(branch) => {
            let i = branch.child_index(&|k: &K| k.cmp(key));
            if remove_from(&mut branch.children[i], key, removed) {
                refill_child(branch, i);
            }
            branch.children.len() < BRANCH_MIN
        }
    }
}

/// Child `i` of `branch` is too small: merge it with a neighbour, or move entries over from one.
fn refill_child<K: Ord + Clone, V: Clone>(branch: &mut Branch<K, V>, i: usize) {
    if branch.children.len() < 2 {
        return;
    }
    let left = i.saturating_sub(1);
    let separator = branch.keys[left].clone();
    let (head, tail) = branch.children.split_at_mut(left + 1);
    // `None`: the right node was merged into the left one; `Some(key)`: entries were spread over
    // both and `key` is the new separator between them.
    let new_separator = match (Arc::make_mut(&mut head[left]), Arc::make_mut(&mut tail[0])) {
        (Node::Leaf(a), Node::Leaf(b)) => {
            if a.entries.len() + b.entries.len() <= LEAF_CAP {
                a.entries.extend(b.entries.drain(..));
                None
            } else {
                let mut all: Vec<(K, V)> = a.entries.drain(..).chain(b.entries.drain(..)).collect();
                let right = all.split_off(all.len() / 2);
                a.entries = all.into_iter().collect();
                b.entries = right.into_iter().collect();
                Some(b.entries[0].0.clone())
            }
        }
        (Node::Branch(a), Node::Branch(b)) => {
            if a.children.len() + b.children.len() <= BRANCH_CAP {
                a.keys.push(separator);
                a.keys.extend(b.keys.drain(..));
                a.children.extend(b.children.drain(..));
                None
            } else {
                let mut keys: Vec<K> = a.keys.drain(..).collect();
                keys.push(separator);
                keys.extend(b.keys.drain(..));
                let mut children: Vec<Arc<Node<K, V>>> =
                    a.children.drain(..).chain(b.children.drain(..)).collect();
                let right_children = children.split_off(children.len() / 2);
                let right_keys = keys.split_off(children.len());
                let up = keys.pop().expect("middle key");
                a.keys = keys.into_iter().collect();
                a.children = children.into_iter().collect();
                b.keys = right_keys.into_iter().collect();
                b.children = right_children.into_iter().collect();
                Some(up)
            }
        }
        _ => unreachable!("siblings are at the same depth"),
    };
    match new_separator {
        Some(key) => branch.keys[left] = key,
        None => {
            branch.keys.remove(left);
            branch.children.remove(left + 1);
        }
    }
}

/// Iterator over entries in ascending key order.
pub struct Iter<'a, K, V> {
    stack: Vec<(&'a Branch<K, V>, usize)>,
    leaf: &'a [(K, V)],
    pos: usize,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((k, v)) = self.leaf.get(self.pos) {
                self.pos += 1;
                return Some((k, v));
            }
            // Leaf exhausted: climb to the nearest branch with a next child, then go down its
            // leftmost path.
            loop {
                let (branch, i) = self.stack.last_mut()?;
                if *i + 1 < branch.children.len() {
                    *i += 1;
                    let mut node: &'a Node<K, V> = &branch.children[*i];
                    loop {
                        match node {
                            Node::Branch(b) => {
                                self.stack.push((b, 0));
                                node = &b.children[0];
                            }
                            Node::Leaf(l) => {
                                self.leaf = &l.entries;
                                self.pos = 0;
                                break;
                            }
                        }
                    }
                    break;
                }
                self.stack.pop();
            }
        }
    }
}
