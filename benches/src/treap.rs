//! A treap whose nodes are boxed in a chosen allocator: the search-tree churn workload.
//!
//! The standard `BTreeMap` takes no allocator on stable Rust, so the tree workload uses this
//! instead: a binary search tree on the keys that is also a max-heap on per-key priorities
//! (a hash of the key). Insertion splits the subtree where the new node's priority places it;
//! removal merges the node's two subtrees in its place. The expected depth is O(log n), so the
//! recursive operations stay shallow. Each node is one `allocator_api2` `Box` of 48 bytes:
//! inserts allocate, removes free, which is the allocation pattern of node-based containers.

use core::alloc::GlobalAlloc;

use allocator_api2::boxed::Box;

use crate::Via;
use fam_workloads::mix;

type Link<'a, A> = Option<Box<Node<'a, A>, &'a Via<A>>>;

/// A tree node. Invariant: every key in `left` is smaller than `key` and every key in `right`
/// larger; neither child's priority exceeds `prio`.
struct Node<'a, A: GlobalAlloc> {
    key: u64,
    prio: u64,
    left: Link<'a, A>,
    right: Link<'a, A>,
}

// Each child link is a box pointer plus the allocator reference: 8 + 8 + 16 + 16 bytes.
const _: () = assert!(core::mem::size_of::<Node<'static, std::alloc::System>>() == 48);

/// An ordered set of `u64` whose nodes live in the allocator `A`.
///
/// ```
/// let via = fam_benches::Via(std::alloc::System);
/// let mut t = fam_benches::Treap::new_in(&via);
/// assert!(t.insert(5) && t.insert(1) && !t.insert(5));
/// assert!(t.remove(5) && !t.remove(5));
/// assert_eq!(t.len(), 1);
/// ```
pub struct Treap<'a, A: GlobalAlloc> {
    root: Link<'a, A>,
    alloc: &'a Via<A>,
    len: usize,
}

impl<'a, A: GlobalAlloc> Treap<'a, A> {
    /// An empty set allocating its nodes from `alloc`.
    pub fn new_in(alloc: &'a Via<A>) -> Self {
        Self {
            root: None,
            alloc,
            len: 0,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: u64) -> bool {
        let mut cur = &self.root;
        while let Some(n) = cur {
            if key == n.key {
                return true;
            }
            cur = if key < n.key { &n.left } else { &n.right };
        }
        false
    }

    /// Adds `key`; false if it was already there.
    pub fn insert(&mut self, key: u64) -> bool {
        if self.contains(key) {
            return false;
        }
        let node = Box::new_in(
            Node {
                key,
                prio: mix(key ^ 0x5851_F42D_4C95_7F2D),
                left: None,
                right: None,
            },
            self.alloc,
        );
        self.root = insert(self.root.take(), node);
        self.len += 1;
        true
    }

    /// Removes `key`; false if it was not there.
    pub fn remove(&mut self, key: u64) -> bool {
        let found = remove(&mut self.root, key);
        self.len -= usize::from(found);
        found
    }

    /// The keys in increasing order.
    pub fn keys(&self) -> std::vec::Vec<u64> {
        fn walk<A: GlobalAlloc>(l: &Link<'_, A>, out: &mut std::vec::Vec<u64>) {
            if let Some(n) = l {
                walk(&n.left, out);
                out.push(n.key);
                walk(&n.right, out);
            }
        }
        let mut out = std::vec::Vec::with_capacity(self.len);
        walk(&self.root, &mut out);
        out
    }
}

/// Splits `t` into the keys below `key` and the rest.
fn split<'a, A: GlobalAlloc>(t: Link<'a, A>, key: u64) -> (Link<'a, A>, Link<'a, A>) {
    match t {
        None => (None, None),
        Some(mut n) if n.key < key => {
            let (l, r) = split(n.right.take(), key);
            n.right = l;
            (Some(n), r)
        }
        Some(mut n) => {
            let (l, r) = split(n.left.take(), key);
            n.left = r;
            (l, Some(n))
        }
    }
}

/// Joins two treaps where every key of `l` is below every key of `r`.
fn merge<'a, A: GlobalAlloc>(l: Link<'a, A>, r: Link<'a, A>) -> Link<'a, A> {
    match (l, r) {
        (None, r) => r,
        (l, None) => l,
        (Some(mut a), Some(mut b)) => {
            if a.prio > b.prio {
                a.right = merge(a.right.take(), Some(b));
                Some(a)
            } else {
                b.left = merge(Some(a), b.left.take());
                Some(b)
            }
        }
    }
}

/// Inserts `node` (whose key is not in `t`) and returns the new root.
fn insert<'a, A: GlobalAlloc>(
    t: Link<'a, A>,
    mut node: Box<Node<'a, A>, &'a Via<A>>,
) -> Link<'a, A> {
    match t {
        None => Some(node),
        Some(n) if node.prio > n.prio => {
            let (l, r) = split(Some(n), node.key);
            node.left = l;
            node.right = r;
            Some(node)
        }
        Some(mut n) => {
            if node.key < n.key {
                n.left = insert(n.left.take(), node);
            } else {
                n.right = insert(n.right.take(), node);
            }
            Some(n)
        }
    }
}

/// Removes `key` from the treap at `t`, freeing its node; whether it was there.
fn remove<A: GlobalAlloc>(t: &mut Link<'_, A>, key: u64) -> bool {
    let Some(n) = t else { return false };
    if key < n.key {
        return remove(&mut n.left, key);
    }
    if key > n.key {
        return remove(&mut n.right, key);
    }
    let mut n = t.take().expect("matched above");
    *t = merge(n.left.take(), n.right.take());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;
    use std::collections::BTreeSet;

    #[test]
    fn agrees_with_btreeset() {
        let via = Via(std::alloc::System);
        let mut t = Treap::new_in(&via);
        let mut model = BTreeSet::new();
        let mut rng = Rng::new(3);
        for _ in 0..20_000 {
            let k = rng.below(2_000) as u64;
            if rng.below(3) == 0 {
                assert_eq!(t.remove(k), model.remove(&k));
            } else {
                assert_eq!(t.insert(k), model.insert(k));
            }
            assert_eq!(t.len(), model.len());
        }
        assert_eq!(t.keys(), model.iter().copied().collect::<Vec<_>>());
    }
}
