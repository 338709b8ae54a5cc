//! The guests' global allocator: wasi-libc's `malloc` (dlmalloc) with a
//! free list per small size in front of it.
//!
//! An operator decodes each record's key and value into owned buffers and
//! drops them when `process` returns, so the same few small sizes are
//! allocated and freed once per record. Through Rust's allocator API each
//! of those is four calls deep into dlmalloc; a map operator spent a third
//! of its time there. A block freed here goes onto the list of its size
//! class and is handed out again by the next allocation of that class,
//! without reaching dlmalloc. The lists are short, so the memory they keep
//! is small and bounded ([`KEPT_MAX`] blocks per class).
//!
//! Components are single-threaded (no threads in `wasm32-wasip2`), so the
//! lists need no lock. (`talc` was tried first: it slowed a windowed count
//! from 2.6 s to 9.3 s.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes are multiples of this; blocks up to [`CLASSES`] times it
/// are recycled.
const GRANULE: usize = 16;
const CLASSES: usize = 16;
/// Blocks kept per class at most; beyond, frees go to dlmalloc.
const KEPT_MAX: usize = 64;
/// dlmalloc's alignment on wasm32: blocks of a class are allocated with
/// it, so any request aligned at most this much may take them.
const ALIGN: usize = 8;

pub struct Recycling {
    lists: UnsafeCell<[List; CLASSES]>,
}

#[derive(Clone, Copy)]
struct List {
    /// The first free block; each free block starts with the next one.
    head: *mut u8,
    len: usize,
}

// SAFETY: components are single-threaded; nothing shares the lists.
unsafe impl Sync for Recycling {}

impl Recycling {
    pub const fn new() -> Self {
        Recycling {
            lists: UnsafeCell::new(
                [List {
                    head: ptr::null_mut(),
                    len: 0,
                }; CLASSES],
            ),
        }
    }
}

impl Default for Recycling {
    fn default() -> Self {
        Self::new()
    }
}

/// The class of a request, if it is small and aligned enough to recycle.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size();
    (size != 0 && size <= GRANULE * CLASSES && layout.align() <= ALIGN)
        .then(|| (size - 1) / GRANULE)
}

/// The layout every block of `class` is allocated with.
fn class_layout(class: usize) -> Layout {
    // GRANULE * (class + 1) is at most 256 and ALIGN a power of two.
    Layout::from_size_align(GRANULE * (class + 1), ALIGN).unwrap_or(Layout::new::<u8>())
}

unsafe impl GlobalAlloc for Recycling {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            // SAFETY: the caller's layout, as `GlobalAlloc::alloc` got it.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded (see `Sync`), and no reference to the
        // lists outlives this call.
        let list = unsafe { &mut (*self.lists.get())[class] };
        if list.len > 0 {
            let block = list.head;
            // SAFETY: a free block of at least GRANULE bytes, aligned to
            // ALIGN, whose first word holds the next free block.
            list.head = unsafe { block.cast::<*mut u8>().read() };
            list.len -= 1;
            return block;
        }
        // SAFETY: a valid, non-zero layout.
        unsafe { System.alloc(class_layout(class)) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            // SAFETY: allocated by `System` with this layout (see `alloc`).
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: as in `alloc`.
        let list = unsafe { &mut (*self.lists.get())[class] };
        if list.len < KEPT_MAX {
            // SAFETY: the block is ours again, at least GRANULE bytes and
            // ALIGN-aligned: it can hold a pointer.
            unsafe { block.cast::<*mut u8>().write(list.head) };
            list.head = block;
            list.len += 1;
            return;
        }
        // SAFETY: blocks of a class come from `System` with its layout.
        unsafe { System.dealloc(block, class_layout(class)) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` with the old alignment is valid (the caller
        // guarantees it), as `GlobalAlloc::realloc` requires.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // Large to large: dlmalloc may grow in place.
            // SAFETY: `block` came from `System` with `layout` (see `alloc`).
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            // Within one class the block already fits.
            (Some(old), Some(new)) if old == new => block,
            _ => {
                // SAFETY: `new_layout` is valid and non-zero (realloc's contract).
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and
                    // do not overlap (`moved` was just allocated).
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_recycled_within_their_class_and_keep_their_bytes() {
        let a = Recycling::new();
        unsafe {
            let small = Layout::from_size_align(24, 8).unwrap();
            let p = a.alloc(small);
            p.write_bytes(0xAB, 24);
            a.dealloc(p, small);
            // Same class (17..=32 bytes): the same block comes back.
            let q = a.alloc(Layout::from_size_align(32, 4).unwrap());
            assert_eq!(p, q);
            // Growing within the class keeps the block; past it, moves and
            // keeps the bytes.
            q.write_bytes(7, 32);
            let grown = a.realloc(q, Layout::from_size_align(32, 4).unwrap(), 300);
            assert!((0..32).all(|i| *grown.add(i) == 7));
            let shrunk = a.realloc(grown, Layout::from_size_align(300, 4).unwrap(), 10);
            assert!((0..10).all(|i| *shrunk.add(i) == 7));
            a.dealloc(shrunk, Layout::from_size_align(10, 4).unwrap());
            // Over-aligned and large requests pass through.
            let wide = Layout::from_size_align(64, 64).unwrap();
            let w = a.alloc(wide);
            assert_eq!(w as usize % 64, 0);
            a.dealloc(w, wide);
        }
    }

    #[test]
    fn a_class_keeps_at_most_kept_max_blocks() {
        let a = Recycling::new();
        let layout = Layout::from_size_align(100, 8).unwrap();
        unsafe {
            let blocks: Vec<*mut u8> = (0..KEPT_MAX + 10).map(|_| a.alloc(layout)).collect();
            for &b in &blocks {
                a.dealloc(b, layout);
            }
            let class = class_of(layout).unwrap();
            assert_eq!((*a.lists.get())[class].len, KEPT_MAX);
            // Drain what is kept, so the test gives its memory back.
            for _ in 0..KEPT_MAX {
                let b = a.alloc(layout);
                System.dealloc(b, class_layout(class));
            }
        }
    }
}
