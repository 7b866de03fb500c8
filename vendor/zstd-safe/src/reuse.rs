//! Lakesink patch: contexts are reused on the thread that dropped them.
//!
//! `ZSTD_createCCtx` and `ZSTD_createDCtx` each run the `cpuid` instruction (to pick the BMI2
//! code paths), and in a virtual machine `cpuid` traps to the hypervisor: some 4 µs a call on
//! the benchmark machine. parquet-rs creates a compression *and* a decompression context for
//! every column of every row group it writes, so a lake of many small Parquet files spent 15 %
//! of its CPU in those two instructions. A dropped context is reset to its initial state
//! (`ZSTD_reset_session_and_parameters`, zstd's documented way to reuse one: it forgets the
//! parameters and any dictionary, and keeps its memory) and kept for the next `create` on the
//! same thread.
//!
//! Bounded: at most [`MAX_KEPT`] contexts of each kind per thread, none larger than
//! [`MAX_CONTEXT_BYTES`], and at most [`MAX_THREAD_BYTES`] of them in all; the rest are freed
//! as before. Kept contexts are freed when their thread ends.

use core::cell::RefCell;
use core::ptr::NonNull;
use std::vec::Vec;

/// Contexts of each kind kept per thread (Lakesink's widest table has 45 columns).
pub(crate) const MAX_KEPT: usize = 64;
/// A context whose memory grew past this is freed, not kept.
pub(crate) const MAX_CONTEXT_BYTES: usize = 1 << 20;
/// Memory of the contexts kept by one thread, both kinds together.
pub(crate) const MAX_THREAD_BYTES: usize = 16 << 20;

struct Kept {
    cctx: Vec<(NonNull<zstd_sys::ZSTD_CCtx>, usize)>,
    dctx: Vec<(NonNull<zstd_sys::ZSTD_DCtx>, usize)>,
    bytes: usize,
}

/// What the pool needs of each kind of context.
trait Context: Copy {
    /// `ZSTD_reset_session_and_parameters`; whether it succeeded.
    fn reset(self) -> bool;
    fn size(self) -> usize;
    fn free(self);
    /// The kept contexts of this kind.
    fn kept(k: &mut Kept) -> &mut Vec<(Self, usize)>;
}

impl Context for NonNull<zstd_sys::ZSTD_CCtx> {
    fn reset(self) -> bool {
        // Safety: the caller owns the context.
        let code = unsafe {
            zstd_sys::ZSTD_CCtx_reset(
                self.as_ptr(),
                zstd_sys::ZSTD_ResetDirective::ZSTD_reset_session_and_parameters,
            )
        };
        // Safety: Just FFI
        unsafe { zstd_sys::ZSTD_isError(code) == 0 }
    }
    fn size(self) -> usize {
        // Safety: the caller owns the context.
        unsafe { zstd_sys::ZSTD_sizeof_CCtx(self.as_ptr()) }
    }
    fn free(self) {
        // Safety: the caller owns the context and gives it up.
        unsafe { zstd_sys::ZSTD_freeCCtx(self.as_ptr()) };
    }
    fn kept(k: &mut Kept) -> &mut Vec<(Self, usize)> {
        &mut k.cctx
    }
}

impl Context for NonNull<zstd_sys::ZSTD_DCtx> {
    fn reset(self) -> bool {
        // Safety: the caller owns the context.
        let code = unsafe {
            zstd_sys::ZSTD_DCtx_reset(
                self.as_ptr(),
                zstd_sys::ZSTD_ResetDirective::ZSTD_reset_session_and_parameters,
            )
        };
        // Safety: Just FFI
        unsafe { zstd_sys::ZSTD_isError(code) == 0 }
    }
    fn size(self) -> usize {
        // Safety: the caller owns the context.
        unsafe { zstd_sys::ZSTD_sizeof_DCtx(self.as_ptr()) }
    }
    fn free(self) {
        // Safety: the caller owns the context and gives it up.
        unsafe { zstd_sys::ZSTD_freeDCtx(self.as_ptr()) };
    }
    fn kept(k: &mut Kept) -> &mut Vec<(Self, usize)> {
        &mut k.dctx
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        // A kept context is owned by the pool alone.
        self.cctx.drain(..).for_each(|(c, _)| c.free());
        self.dctx.drain(..).for_each(|(d, _)| d.free());
    }
}

std::thread_local! {
    static KEPT: RefCell<Kept> = const {
        RefCell::new(Kept { cctx: Vec::new(), dctx: Vec::new(), bytes: 0 })
    };
}

/// A kept context of this kind, in its initial state.
fn take<C: Context>() -> Option<C> {
    KEPT.try_with(|k| {
        let mut k = k.borrow_mut();
        let (c, size) = C::kept(&mut k).pop()?;
        k.bytes -= size;
        Some(c)
    })
    .ok()
    .flatten()
}

/// Resets `c` and keeps it, or frees it.
fn give<C: Context>(c: C) {
    let size = c.size();
    let kept = c.reset()
        && size <= MAX_CONTEXT_BYTES
        && KEPT
            .try_with(|k| {
                let mut k = k.borrow_mut();
                if C::kept(&mut k).len() < MAX_KEPT && k.bytes + size <= MAX_THREAD_BYTES {
                    k.bytes += size;
                    C::kept(&mut k).push((c, size));
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
    if !kept {
        c.free();
    }
}

/// A kept compression context, in its initial state.
pub(crate) fn take_cctx() -> Option<NonNull<zstd_sys::ZSTD_CCtx>> {
    take()
}

/// A kept decompression context, in its initial state.
pub(crate) fn take_dctx() -> Option<NonNull<zstd_sys::ZSTD_DCtx>> {
    take()
}

/// Resets `c` and keeps it, or frees it (the caller gives it up).
pub(crate) fn give_cctx(c: NonNull<zstd_sys::ZSTD_CCtx>) {
    give(c)
}

/// Resets `d` and keeps it, or frees it (the caller gives it up).
pub(crate) fn give_dctx(d: NonNull<zstd_sys::ZSTD_DCtx>) {
    give(d)
}
