//! Allocation that fails as a value instead of panicking (inside the
//! module a panic is an oops): the engine's one set of helpers for it.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::Layout;

/// The allocator refused; each error type of the engine turns it into its
/// own `OutOfMemory` (a `From` impl), so `?` works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfMemory;

/// An empty vector with room for exactly `n` items.
pub fn with_capacity<T>(n: usize) -> Result<Vec<T>, OutOfMemory> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| OutOfMemory)?;
    Ok(v)
}

/// `n` copies of `x`.
pub fn filled<T: Clone>(n: usize, x: T) -> Result<Vec<T>, OutOfMemory> {
    let mut v = with_capacity(n)?;
    v.resize(n, x);
    Ok(v)
}

/// `n` default values (zeros for numbers).
pub fn zeroed<T: Clone + Default>(n: usize) -> Result<Vec<T>, OutOfMemory> {
    filled(n, T::default())
}

/// A copy of `b`.
pub fn copy_of<T: Copy>(b: &[T]) -> Result<Vec<T>, OutOfMemory> {
    let mut v = with_capacity(b.len())?;
    v.extend_from_slice(b);
    Ok(v)
}

/// `Box::new` that fails instead of panicking.
pub fn try_box<T>(v: T) -> Result<Box<T>, OutOfMemory> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(v)); // allocates nothing
    }
    // SAFETY: a layout of non-zero size, as alloc requires.
    let p = unsafe { alloc::alloc::alloc(layout) }.cast::<T>();
    if p.is_null() {
        return Err(OutOfMemory);
    }
    // SAFETY: `p` is a fresh, non-null allocation of T's layout from the
    // global allocator: writing one T into it and owning it as a Box (which
    // frees it with that layout) is what Box::new does.
    unsafe {
        p.write(v);
        Ok(Box::from_raw(p))
    }
}

/// `impl From<OutOfMemory> for $err` giving `$err::OutOfMemory`.
macro_rules! oom_from {
    ($($err:ty),*) => {$(
        impl From<OutOfMemory> for $err {
            fn from(_: OutOfMemory) -> Self {
                <$err>::OutOfMemory
            }
        }
    )*};
}
oom_from!(
    crate::gguf::GgufError,
    crate::model::ModelError,
    crate::sample::SampleError,
    crate::session::SessionError,
    crate::tokenizer::TokenizerError
);
