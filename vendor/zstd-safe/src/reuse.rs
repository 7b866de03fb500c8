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

impl Drop for Kept {
    fn drop(&mut self) {
        for (c, _) in self.cctx.drain(..) {
            // Safety: a kept context is owned by the pool alone.
            unsafe { zstd_sys::ZSTD_freeCCtx(c.as_ptr()) };
        }
        for (d, _) in self.dctx.drain(..) {
            // Safety: as above.
            unsafe { zstd_sys::ZSTD_freeDCtx(d.as_ptr()) };
        }
    }
}

std::thread_local! {
    static KEPT: RefCell<Kept> = const {
        RefCell::new(Kept { cctx: Vec::new(), dctx: Vec::new(), bytes: 0 })
    };
}

/// A kept compression context, in its initial state.
pub(crate) fn take_cctx() -> Option<NonNull<zstd_sys::ZSTD_CCtx>> {
    KEPT.try_with(|k| {
        let mut k = k.borrow_mut();
        let (c, size) = k.cctx.pop()?;
        k.bytes -= size;
        Some(c)
    })
    .ok()
    .flatten()
}

/// A kept decompression context, in its initial state.
pub(crate) fn take_dctx() -> Option<NonNull<zstd_sys::ZSTD_DCtx>> {
    KEPT.try_with(|k| {
        let mut k = k.borrow_mut();
        let (d, size) = k.dctx.pop()?;
        k.bytes -= size;
        Some(d)
    })
    .ok()
    .flatten()
}

/// Resets `c` and keeps it, or frees it.
pub(crate) fn give_cctx(c: NonNull<zstd_sys::ZSTD_CCtx>) {
    // Safety: the caller owns `c` and gives it up.
    let reset = unsafe {
        zstd_sys::ZSTD_CCtx_reset(
            c.as_ptr(),
            zstd_sys::ZSTD_ResetDirective::ZSTD_reset_session_and_parameters,
        )
    };
    // Safety: as above.
    let size = unsafe { zstd_sys::ZSTD_sizeof_CCtx(c.as_ptr()) };
    let kept = zstd_sys_is_ok(reset)
        && size <= MAX_CONTEXT_BYTES
        && KEPT
            .try_with(|k| {
                let mut k = k.borrow_mut();
                if k.cctx.len() < MAX_KEPT && k.bytes + size <= MAX_THREAD_BYTES {
                    k.bytes += size;
                    k.cctx.push((c, size));
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
    if !kept {
        // Safety: not kept, so still the caller's to free.
        unsafe { zstd_sys::ZSTD_freeCCtx(c.as_ptr()) };
    }
}

/// Resets `d` and keeps it, or frees it.
pub(crate) fn give_dctx(d: NonNull<zstd_sys::ZSTD_DCtx>) {
    // Safety: the caller owns `d` and gives it up.
    let reset = unsafe {
        zstd_sys::ZSTD_DCtx_reset(
            d.as_ptr(),
            zstd_sys::ZSTD_ResetDirective::ZSTD_reset_session_and_parameters,
        )
    };
    // Safety: as above.
    let size = unsafe { zstd_sys::ZSTD_sizeof_DCtx(d.as_ptr()) };
    let kept = zstd_sys_is_ok(reset)
        && size <= MAX_CONTEXT_BYTES
        && KEPT
            .try_with(|k| {
                let mut k = k.borrow_mut();
                if k.dctx.len() < MAX_KEPT && k.bytes + size <= MAX_THREAD_BYTES {
                    k.bytes += size;
                    k.dctx.push((d, size));
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
    if !kept {
        // Safety: not kept, so still the caller's to free.
        unsafe { zstd_sys::ZSTD_freeDCtx(d.as_ptr()) };
    }
}

fn zstd_sys_is_ok(code: usize) -> bool {
    // Safety: Just FFI
    unsafe { zstd_sys::ZSTD_isError(code) == 0 }
}
