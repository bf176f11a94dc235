//! Collection-heavy code with fam-alloc as the global allocator: `Vec`, `String`, `HashMap`,
//! `BTreeMap`, `VecDeque`, trait objects and `Rc`/`Arc` graphs, on one thread and on several at
//! once. Every result is compared with a value known in advance (a closed form, or the same
//! work done on one thread).

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

use common::{scaled, XorShift};
use fam_alloc::FamAlloc;

#[global_allocator]
static A: FamAlloc = FamAlloc::new();

/// Items per collection in the single-threaded tests.
fn n() -> u64 {
    scaled(200_000, 20_000) as u64
}

#[test]
fn vec_growth_keeps_content() {
    let n = n();
    let mut v = Vec::new();
    for i in 0..n {
        v.push(i);
    }
    assert_eq!(v.len() as u64, n);
    assert_eq!(v.iter().sum::<u64>(), n * (n - 1) / 2);
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));

    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v, (0..10).collect::<Vec<u64>>());

    // Many vectors of many sizes alive at once.
    let vs: Vec<Vec<u32>> = (0..2000u32).map(|i| vec![i; (i % 97) as usize]).collect();
    for (i, v) in vs.iter().enumerate() {
        assert_eq!(v.len(), i % 97);
        assert!(v.iter().all(|&x| x == i as u32));
    }
    let total: usize = vs.iter().map(Vec::len).sum();
    assert_eq!(total, (0..2000).map(|i| i % 97).sum::<usize>());

    // Byte vector grown across every size class and past the largest (a large block).
    let target = 3 << 20;
    let mut bytes: Vec<u8> = Vec::new();
    let piece: Vec<u8> = (0..1000u32).map(|k| (k % 251) as u8).collect();
    while bytes.len() < target {
        bytes.extend_from_slice(&piece);
    }
    assert!(bytes.capacity() > fam_alloc::MAX_SMALL_SIZE);
    assert!(bytes
        .iter()
        .enumerate()
        .all(|(k, &b)| b == ((k % 1000) % 251) as u8));
    bytes.truncate(100);
    bytes.shrink_to_fit();
    assert!(bytes.iter().enumerate().all(|(k, &b)| b == (k % 251) as u8));
}

#[test]
fn strings_build_and_parse_back() {
    let n = n();
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!("{i},"));
    }
    let digits: u64 = (0..n).map(|i| i.to_string().len() as u64 + 1).sum();
    assert_eq!(s.len() as u64, digits);
    let parsed: Vec<u64> = s
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(parsed, (0..n).collect::<Vec<_>>());

    let words: Vec<String> = (0..1000).map(|i| "ab".repeat(i % 50)).collect();
    let joined = words.join("-");
    assert_eq!(
        joined.len(),
        (0..1000).map(|i| 2 * (i % 50)).sum::<usize>() + 999
    );
    assert_eq!(
        joined.to_uppercase().matches("AB").count(),
        joined.matches("ab").count()
    );
    let mut shrinking = String::with_capacity(1 << 20);
    shrinking.push_str("hello");
    shrinking.shrink_to_fit();
    assert_eq!(shrinking, "hello");
}

#[test]
fn hash_maps_and_btree_maps() {
    let n = n();
    let mut map: HashMap<u64, String> = HashMap::new();
    for i in 0..n {
        map.insert(i, format!("value-{i}"));
    }
    for i in (0..n).step_by(2) {
        assert_eq!(map.remove(&i), Some(format!("value-{i}")));
    }
    assert_eq!(map.len() as u64, n / 2);
    for i in (1..n).step_by(2) {
        assert_eq!(map[&i], format!("value-{i}"));
    }
    assert_eq!(map.keys().sum::<u64>(), (n / 2) * (n / 2));
    map.shrink_to_fit();

    let mut tree: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for i in 0..n {
        tree.entry(format!("k{:05}", i % 1000)).or_default().push(i);
    }
    assert_eq!(tree.len(), 1000);
    assert_eq!(tree.keys().next().map(String::as_str), Some("k00000"));
    assert_eq!(tree.keys().last().map(String::as_str), Some("k00999"));
    for (k, v) in &tree {
        let r: u64 = k[1..].parse().unwrap();
        assert_eq!(v.len() as u64, n / 1000);
        assert!(v.iter().enumerate().all(|(j, &x)| x == r + 1000 * j as u64));
    }

    let set: HashSet<String> = (0..n).map(|i| (i % 777).to_string()).collect();
    assert_eq!(set.len(), 777);
    let bset: BTreeSet<u64> = (0..n).map(|i| i * 7 % 1009).collect();
    assert_eq!(bset.len(), 1009);
    assert_eq!(bset.iter().sum::<u64>(), 1009 * 1008 / 2);
}

#[test]
fn vec_deque_as_a_ring() {
    let n = n();
    let mut q: VecDeque<Box<u64>> = VecDeque::new();
    let mut next_out = 0u64;
    for i in 0..n {
        q.push_back(Box::new(i));
        if i % 3 == 2 {
            // Keep the queue growing and shrinking: take two out for every three in.
            for _ in 0..2 {
                assert_eq!(*q.pop_front().unwrap(), next_out);
                next_out += 1;
            }
        }
    }
    assert_eq!(q.len() as u64, n - next_out);
    q.rotate_left(q.len() / 2);
    let mut all: Vec<u64> = q.drain(..).map(|b| *b).collect();
    all.sort_unstable();
    assert_eq!(all, (next_out..n).collect::<Vec<_>>());
    q.shrink_to_fit();
    assert!(q.is_empty());

    let mut front: VecDeque<String> = VecDeque::new();
    for i in 0..1000 {
        front.push_front(i.to_string());
    }
    assert_eq!(front.front().map(String::as_str), Some("999"));
    assert_eq!(front.back().map(String::as_str), Some("0"));
}

trait Shape: Send {
    fn area2(&self) -> u64; // twice the area, so triangles stay integral
    fn name(&self) -> String;
}

struct Rect(u64, u64);
struct Tri(u64, u64);
/// A shape with a large body, so trait objects land in many size classes.
struct Heavy {
    side: u64,
    ballast: Box<[u8]>,
}

impl Shape for Rect {
    fn area2(&self) -> u64 {
        2 * self.0 * self.1
    }
    fn name(&self) -> String {
        format!("rect {}x{}", self.0, self.1)
    }
}

impl Shape for Tri {
    fn area2(&self) -> u64 {
        self.0 * self.1
    }
    fn name(&self) -> String {
        format!("tri {}x{}", self.0, self.1)
    }
}

impl Shape for Heavy {
    fn area2(&self) -> u64 {
        assert!(self.ballast.iter().all(|&b| b == self.side as u8));
        2 * self.side * self.side
    }
    fn name(&self) -> String {
        format!("heavy {} ({} bytes)", self.side, self.ballast.len())
    }
}

/// Shapes number `0..count`; shape `i` has twice-area `expected_area2(i)`.
fn shapes(count: u64) -> Vec<Box<dyn Shape>> {
    (0..count)
        .map(|i| -> Box<dyn Shape> {
            match i % 3 {
                0 => Box::new(Rect(i, i + 1)),
                1 => Box::new(Tri(i, i + 2)),
                _ => Box::new(Heavy {
                    side: i,
                    ballast: vec![i as u8; (i as usize * 37) % 20_000].into_boxed_slice(),
                }),
            }
        })
        .collect()
}

fn expected_area2(i: u64) -> u64 {
    match i % 3 {
        0 => 2 * i * (i + 1),
        1 => i * (i + 2),
        _ => 2 * i * i,
    }
}

#[test]
fn trait_objects_and_closures() {
    let count = scaled(20_000, 3_000) as u64;
    let all = shapes(count);
    let total: u64 = all.iter().map(|s| s.area2()).sum();
    assert_eq!(total, (0..count).map(expected_area2).sum::<u64>());
    assert_eq!(all[3].name(), "rect 3x4");
    assert_eq!(all[4].name(), "tri 4x6");
    assert!(all[5].name().starts_with("heavy 5"));

    let closures: Vec<Box<dyn Fn(u64) -> u64>> = (0..1000u64)
        .map(|i| -> Box<dyn Fn(u64) -> u64> {
            let table: Vec<u64> = (0..i % 64).collect();
            Box::new(move |x| x + table.iter().sum::<u64>())
        })
        .collect();
    let sum: u64 = closures.iter().map(|f| f(1)).sum();
    let expected: u64 = (0..1000u64)
        .map(|i| 1 + (i % 64) * (i % 64).saturating_sub(1) / 2)
        .sum();
    assert_eq!(sum, expected);
}

struct Node {
    value: u64,
    parent: RefCell<Weak<Node>>,
    children: RefCell<Vec<Rc<Node>>>,
}

/// A complete binary tree of `depth` levels, numbered in breadth-first order from 1.
fn tree(depth: u32) -> (Rc<Node>, Vec<Weak<Node>>) {
    let mut all = Vec::new();
    let root = Rc::new(Node {
        value: 1,
        parent: RefCell::new(Weak::new()),
        children: RefCell::new(Vec::new()),
    });
    all.push(Rc::downgrade(&root));
    let mut level = vec![root.clone()];
    for _ in 1..depth {
        let mut next = Vec::new();
        for node in &level {
            for k in 0..2 {
                let child = Rc::new(Node {
                    value: node.value * 2 + k,
                    parent: RefCell::new(Rc::downgrade(node)),
                    children: RefCell::new(Vec::new()),
                });
                all.push(Rc::downgrade(&child));
                node.children.borrow_mut().push(child.clone());
                next.push(child);
            }
        }
        level = next;
    }
    (root, all)
}

fn tree_sum(node: &Node) -> u64 {
    node.value
        + node
            .children
            .borrow()
            .iter()
            .map(|c| tree_sum(c))
            .sum::<u64>()
}

#[test]
fn rc_trees_and_arc_sharing() {
    let depth = scaled(16, 13) as u32;
    let (root, all) = tree(depth);
    let nodes = (1u64 << depth) - 1;
    assert_eq!(all.len() as u64, nodes);
    assert_eq!(tree_sum(&root), nodes * (nodes + 1) / 2);
    for w in all.iter().skip(1).step_by(97) {
        let node = w.upgrade().expect("the tree is alive");
        let parent = node.parent.borrow().upgrade().expect("parents are alive");
        assert_eq!(parent.value, node.value / 2);
    }
    drop(root);
    assert!(
        all.iter().all(|w| w.upgrade().is_none()),
        "the tree was freed"
    );

    let shared: Arc<Vec<u64>> = Arc::new((0..n()).collect());
    let expected = n() * (n() - 1) / 2;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&shared);
            thread::spawn(move || {
                let local: Vec<Arc<Vec<u64>>> = (0..100).map(|_| Arc::clone(&s)).collect();
                local.iter().map(|v| v.iter().sum::<u64>()).max().unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), expected);
    }
    assert_eq!(Arc::strong_count(&shared), 1);
}

/// A deterministic mix of collection work; asserts what it can check itself and returns a
/// checksum that does not depend on hash iteration order.
fn workload(seed: u64, items: usize) -> u64 {
    let mut rng = XorShift::new(seed);
    let mut map: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut tree: BTreeMap<u64, String> = BTreeMap::new();
    let mut queue: VecDeque<Box<[u64]>> = VecDeque::new();
    let mut check = 0u64;
    for i in 0..items as u64 {
        let k = rng.below(items as u64 / 2 + 1);
        let len = match rng.below(10) {
            0 => rng.below(70_000),
            1..=3 => rng.below(1000),
            _ => rng.below(64),
        } as usize;
        map.insert(k, vec![(k % 256) as u8; len]);
        tree.insert(k ^ seed, format!("{k}:{i}"));
        queue.push_back(vec![i; (i % 17) as usize + 1].into_boxed_slice());
        if queue.len() > 100 {
            let b = queue.pop_front().unwrap();
            assert!(b.iter().all(|&x| x == b[0]));
            check = check.wrapping_add(b[0] * b.len() as u64);
        }
        if rng.chance(30) {
            let r = rng.below(items as u64 / 2 + 1);
            if let Some(v) = map.remove(&r) {
                assert!(v.iter().all(|&b| b == (r % 256) as u8));
                check = check.wrapping_add(v.len() as u64);
            }
        }
    }
    for (k, v) in &map {
        assert!(v.iter().all(|&b| b == (k % 256) as u8));
        check = check.wrapping_add(k.wrapping_mul(v.len() as u64 + 1));
    }
    for (k, s) in &tree {
        let (key, _) = s.split_once(':').unwrap();
        assert_eq!(key.parse::<u64>().unwrap() ^ seed, *k);
        check = check.rotate_left(5) ^ s.len() as u64;
    }
    check
}

#[test]
fn threads_doing_collection_work_agree_with_one_thread() {
    let threads = 6;
    let rounds = 3;
    let items = scaled(20_000, 3_000);
    let expected: Vec<u64> = (0..threads as u64)
        .map(|t| (0..rounds).fold(0u64, |acc, r| acc ^ workload(t * 100 + r, items)))
        .collect();
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads as u64)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                (0..rounds).fold(0u64, |acc, r| acc ^ workload(t * 100 + r, items))
            })
        })
        .collect();
    let got: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got, expected);
}

#[test]
fn collections_shared_between_threads() {
    let threads = 8u64;
    let per = scaled(5_000, 1_000) as u64;
    let tree: Arc<Mutex<BTreeMap<u64, Vec<String>>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let (tx, rx) = mpsc::channel::<Box<dyn Shape>>();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let tree = Arc::clone(&tree);
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..per {
                    let key = (i * threads + t) % 500;
                    tree.lock()
                        .unwrap()
                        .entry(key)
                        .or_default()
                        .push(format!("{t}/{i}"));
                    // Shapes allocated here are freed by the receiving thread.
                    let n = i * threads + t;
                    let shape: Box<dyn Shape> = match n % 3 {
                        0 => Box::new(Rect(n, n + 1)),
                        1 => Box::new(Tri(n, n + 2)),
                        _ => Box::new(Heavy {
                            side: n,
                            ballast: vec![n as u8; (n as usize * 37) % 20_000].into_boxed_slice(),
                        }),
                    };
                    tx.send(shape).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let received: u64 = rx.iter().map(|s| s.area2()).sum();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        received,
        (0..threads * per).map(expected_area2).sum::<u64>()
    );
    let tree = tree.lock().unwrap();
    assert_eq!(tree.len(), 500);
    let strings: usize = tree.values().map(Vec::len).sum();
    assert_eq!(strings as u64, threads * per);
    for (k, v) in tree.iter() {
        for s in v {
            let (t, i) = s.split_once('/').unwrap();
            let (t, i): (u64, u64) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!((i * threads + t) % 500, *k);
        }
    }
}
