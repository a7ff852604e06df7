//! A global allocator that can zero memory on free. Wizer stores only non-zero
//! memory in the snapshot, so zeroing the scratch buffers of model loading keeps
//! the raw NNEF archive and parse trees out of the shipped component.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

static ZERO_ON_FREE: AtomicBool = AtomicBool::new(false);

pub fn zero_on_free(on: bool) {
    ZERO_ON_FREE.store(on, Ordering::SeqCst);
}

pub struct ZeroingAlloc;

unsafe impl GlobalAlloc for ZeroingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ZERO_ON_FREE.load(Ordering::Relaxed) {
            // Volatile so the write is not elided as dead before the free.
            unsafe { std::ptr::write_bytes(ptr, 0, layout.size()) };
            std::hint::black_box(ptr);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ZERO_ON_FREE.load(Ordering::Relaxed) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}
