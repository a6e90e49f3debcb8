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

use arrayvec::ArrayVec;
use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::Arc;

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

/// Error of [`PMap::from_sorted`]: the input was not strictly ascending.
#[derive(Debug, thiserror::Error)]
#[error("entries out of order at position {position}")]
pub struct NotSorted {
    pub position: usize,
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

    /// Checks the structural invariants listed in the module docs.
    pub fn check_invariants(&self) -> Result<(), String> {
        let Some(root) = self.root.as_deref() else {
            return if self.len == 0 {
                Ok(())
            } else {
                Err(format!("empty tree with len {}", self.len))
            };
        };
        let mut count = 0;
        let mut leaf_depth = None;
        check_node(root, None, None, 0, true, &mut leaf_depth, &mut count)?;
        if count != self.len {
            return Err(format!("len is {} but the tree holds {count}", self.len));
        }
        Ok(())
    }

    /// `(leaves, branches, entries)`: for measuring how full the tree is.
    pub fn node_counts(&self) -> (usize, usize, usize) {
        fn walk<K, V>(node: &Node<K, V>, acc: &mut (usize, usize, usize)) {
            match node {
                Node::Leaf(l) => {
                    acc.0 += 1;
                    acc.2 += l.entries.len();
                }
                Node::Branch(b) => {
                    acc.1 += 1;
                    b.children.iter().for_each(|c| walk(c, acc));
                }
            }
        }
        let mut acc = (0, 0, 0);
        if let Some(root) = self.root.as_deref() {
            walk(root, &mut acc);
        }
        acc
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

fn check_node<K: Ord + Clone, V>(
    node: &Node<K, V>,
    lower: Option<&K>,
    upper: Option<&K>,
    depth: usize,
    is_root: bool,
    leaf_depth: &mut Option<usize>,
    count: &mut usize,
) -> Result<(), String> {
    let in_bounds = |k: &K| lower.is_none_or(|l| k >= l) && upper.is_none_or(|u| k < u);
    match node {
        Node::Leaf(l) => {
            if l.entries.is_empty() && !is_root {
                return Err(format!("empty leaf at depth {depth}"));
            }
            if !l.entries.windows(2).all(|w| w[0].0 < w[1].0) {
                return Err(format!("leaf at depth {depth} is not strictly ascending"));
            }
            if !l.entries.iter().all(|(k, _)| in_bounds(k)) {
                return Err(format!(
                    "leaf at depth {depth} holds a key outside its bounds"
                ));
            }
            match *leaf_depth {
                None => *leaf_depth = Some(depth),
                Some(d) if d != depth => return Err(format!("leaves at depths {d} and {depth}")),
                _ => {}
            }
            *count += l.entries.len();
        }
        Node::Branch(b) => {
            if b.keys.len() + 1 != b.children.len() {
                return Err(format!(
                    "branch at depth {depth} has {} keys and {} children",
                    b.keys.len(),
                    b.children.len()
                ));
            }
            if b.children.len() < 2 && !is_root {
                return Err(format!("branch at depth {depth} has one child"));
            }
            if !b.keys.windows(2).all(|w| w[0] < w[1]) || !b.keys.iter().all(in_bounds) {
                return Err(format!("branch at depth {depth} has misordered separators"));
            }
            for (i, child) in b.children.iter().enumerate() {
                let lo = if i == 0 { lower } else { Some(&b.keys[i - 1]) };
                let hi = if i == b.keys.len() {
                    upper
                } else {
                    Some(&b.keys[i])
                };
                check_node(child, lo, hi, depth + 1, false, leaf_depth, count)?;
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
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
        let mut map: PMap<u32, u32> =
            (0..1000)
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
}
