//! Invariant checks and measurements: [`PMap::check_invariants`] walks the whole tree and
//! reports the first broken invariant of the module docs (depth, order, bounds, separators,
//! empty nodes, `len`); [`PMap::node_counts`] counts leaves, branches and entries.

use super::{Node, PMap};

impl<K: Ord + Clone, V: Clone> PMap<K, V> {
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
