//! An in-place heapsort for load-time sorts of vocabulary-sized arrays.
//!
//! core's `sort_unstable` recurses (quicksort frames of ~800 bytes, depth up
//! to 2*log2(n)): on Qwen2's 151k merges it overflowed a 16 KiB kernel stack.
//! Heapsort runs in constant stack and allocates nothing. Callers pass total
//! orders, so the result equals `sort_unstable_by`'s.

use core::cmp::Ordering;

/// Sorts `v` ascending by `cmp` with O(1) stack.
pub fn heap_sort_by<T, F: FnMut(&T, &T) -> Ordering>(v: &mut [T], mut cmp: F) {
    let n = v.len();
    // Moves v[root] down the max-heap v[..end]. Reads go through get(), so
    // the module's engine object keeps no panic path here.
    let mut sift = |v: &mut [T], mut root: usize, end: usize| {
        let Some(heap) = v.get_mut(..end) else { return };
        loop {
            let mut child = 2 * root + 1;
            let Some(c) = heap.get(child) else { break };
            if let Some(c1) = heap.get(child + 1) {
                if cmp(c, c1) == Ordering::Less {
                    child += 1;
                }
            }
            let (Some(r), Some(c)) = (heap.get(root), heap.get(child)) else {
                break;
            };
            if cmp(r, c) != Ordering::Less {
                break;
            }
            heap.swap(root, child);
            root = child;
        }
    };
    for i in (0..n / 2).rev() {
        sift(v, i, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift(v, 0, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate alloc;
    use alloc::vec::Vec;

    #[test]
    fn equals_sort_unstable() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for n in [0usize, 1, 2, 3, 7, 64, 1000, 4097] {
            let v: Vec<(u32, u32)> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x % 97) as u32, (x >> 40) as u32)
                })
                .collect();
            let mut a = v.clone();
            let mut b = v.clone();
            heap_sort_by(&mut a, |p, q| p.cmp(q));
            b.sort_unstable();
            assert_eq!(a, b, "n={n}");
        }
    }
}
