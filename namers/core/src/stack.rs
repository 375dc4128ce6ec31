//! Stack growth for the recursions over name trees (binding, delegation, simplification,
//! mapping, rendering). Their depth is bounded by `bind::BindLimits` and the parser's nesting
//! limit, but a debug build's frames are several KB, so even a bounded depth could overflow a
//! small thread stack. `grow` runs its closure on a heap-allocated stack segment when the
//! current stack is nearly used up (the `stacker` crate, which rustc uses for the same
//! purpose). It does not bound work; the limits do.

/// Below this much stack left, a new segment is allocated.
const RED_ZONE: usize = 128 * 1024;
/// Size of each new segment.
const SEGMENT: usize = 2 * 1024 * 1024;

/// Runs `f`, on a fresh stack segment if this thread's stack is nearly exhausted.
#[inline]
pub fn grow<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, SEGMENT, f)
}
