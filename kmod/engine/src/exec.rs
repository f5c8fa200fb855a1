//! How the forward pass hands out its heavy work.
//!
//! Matmuls and attention are split into independent tasks (ranges of rows,
//! heads); an [`Exec`] runs them. User space runs them on threads, the
//! kernel module on per-CPU workers, each task inside its own short FPU
//! section. The engine never waits on anything else.

use core::cell::UnsafeCell;

/// Runs `n` independent tasks, in any order, possibly concurrently.
pub trait Exec {
    /// How many tasks can run at once (a hint for splitting work).
    fn parallelism(&self) -> usize;
    /// Returns when all `n` tasks have run.
    fn run(&mut self, n: usize, task: &(dyn Fn(usize) + Sync));
}

/// Runs every task on the calling thread.
pub struct Serial;

impl Exec for Serial {
    fn parallelism(&self) -> usize {
        1
    }

    fn run(&mut self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        (0..n).for_each(task);
    }
}

/// A buffer tasks write disjoint parts of.
///
/// Tasks of one `Exec::run` share it; each takes only the indices it owns
/// (its rows), which is what makes the unsynchronized writes sound.
pub(crate) struct Disjoint<'a, T> {
    cells: &'a [UnsafeCell<T>],
}

// SAFETY: access goes through `slice_mut`, whose contract requires tasks to
// use disjoint ranges; T: Send lets values move between the threads.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    pub(crate) fn new(buf: &'a mut [T]) -> Self {
        let len = buf.len();
        // SAFETY: UnsafeCell<T> has the same layout as T, and the exclusive
        // borrow of `buf` is held for 'a, so nobody else sees these values.
        let cells =
            unsafe { core::slice::from_raw_parts(buf.as_mut_ptr() as *const UnsafeCell<T>, len) };
        Disjoint { cells }
    }

    /// The elements `start..start + len`.
    ///
    /// # Safety
    /// No two live slices obtained from this `Disjoint` may overlap.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, start: usize, len: usize) -> &mut [T] {
        let cells = &self.cells[start..start + len];
        // SAFETY: the range is in bounds (indexed above); the caller promises
        // no other live reference overlaps it.
        unsafe { core::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), len) }
    }
}
