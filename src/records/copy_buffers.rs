//! The buffers copies are decrypted in, kept from one copy for the next.
//!
//! A copy small enough is read and decrypted in one buffer of its stored size (see
//! [`super::read`]). Made and freed per copy, each buffer above glibc's mmap threshold was a
//! fresh mapping, faulted in and zeroed page by page, then unmapped: for 1 MiB copies that was
//! most of the cost after the cipher (`scripts/bench` measures copies; see
//! docs/benchmarks.md). A kept buffer costs nothing after its first copy.
//!
//! Every byte of a buffer's capacity, in use or idle, holds a permit of the budget
//! (`HOSO_READ_MEMORY_BYTES`): copies in memory never hold more than the budget, busy or quiet,
//! and a copy that finds no room streams instead.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct CopyBuffers {
    /// The budget's bytes, and the semaphore counting those not held by any buffer.
    total: usize,
    budget: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
}

/// A kept buffer and the permits its capacity holds.
struct Idle {
    bytes: Vec<u8>,
    permit: OwnedSemaphorePermit,
}

/// A buffer taken for one copy; it goes back to be kept when dropped (after the copy is sent).
pub struct Buffer {
    pub bytes: Vec<u8>,
    permit: Option<OwnedSemaphorePermit>,
    home: Arc<CopyBuffers>,
}

impl CopyBuffers {
    pub fn new(budget_bytes: u64) -> Arc<Self> {
        let permits = usize::try_from(budget_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Arc::new(Self {
            total: permits,
            budget: Arc::new(Semaphore::new(permits)),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// An empty buffer with room for `len` bytes, or `None` when the budget has no room for it
    /// even after freeing the kept ones.
    pub fn take(self: &Arc<Self>, len: usize) -> Option<Buffer> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // The smallest kept buffer that fits.
        let fits = idle
            .iter()
            .enumerate()
            .filter(|(_, b)| b.bytes.capacity() >= len)
            .min_by_key(|(_, b)| b.bytes.capacity())
            .map(|(i, _)| i);
        if let Some(i) = fits {
            let Idle { mut bytes, permit } = idle.swap_remove(i);
            bytes.clear();
            return Some(self.buffer(bytes, permit));
        }
        let wanted = u32::try_from(len).ok()?;
        loop {
            if let Ok(permit) = self.budget.clone().try_acquire_many_owned(wanted) {
                drop(idle);
                return Some(self.buffer(Vec::with_capacity(len), permit));
            }
            // Freeing a kept buffer gives its permits back; none left means no room.
            drop(idle.pop()?);
        }
    }

    /// Bytes of the budget held by buffers out with copies (not yet sent, or not yet dropped).
    pub fn lent(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let kept: usize = idle.iter().map(|b| b.permit.num_permits()).sum();
        self.total - self.budget.available_permits() - kept
    }

    fn buffer(self: &Arc<Self>, bytes: Vec<u8>, permit: OwnedSemaphorePermit) -> Buffer {
        Buffer {
            bytes,
            permit: Some(permit),
            home: self.clone(),
        }
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        // A buffer that grew (an object longer than its row says) or was lost to a failed read
        // is not what its permits count: it is freed, and they are given back.
        if self.bytes.capacity() == permit.num_permits() {
            let bytes = std::mem::take(&mut self.bytes);
            let mut idle = self.home.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.push(Idle { bytes, permit });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_kept_and_never_exceed_the_budget() {
        let buffers = CopyBuffers::new(1000);
        let first = buffers.take(600).unwrap();
        assert_eq!(buffers.lent(), 600);
        let address = first.bytes.as_ptr();
        assert!(buffers.take(600).is_none(), "600 + 600 is over the budget");
        drop(first);
        // Kept, and handed out again for anything it fits.
        let again = buffers.take(500).unwrap();
        assert_eq!(again.bytes.as_ptr(), address);
        assert!(
            buffers.take(500).is_none(),
            "the kept buffer's 600 still count"
        );
        drop(again);
        // A bigger one than any kept: the kept one is freed to make room.
        let big = buffers.take(900).unwrap();
        assert_eq!(big.bytes.capacity(), 900);
        assert!(buffers.take(200).is_none());
        drop(big);
        assert!(buffers.take(1001).is_none());
        assert_eq!(buffers.lent(), 0);
    }

    #[test]
    fn a_buffer_that_grew_is_freed_not_kept() {
        let buffers = CopyBuffers::new(1000);
        let mut grown = buffers.take(100).unwrap();
        grown.bytes.extend_from_slice(&[0; 300]);
        drop(grown);
        assert!(buffers.idle.lock().unwrap().is_empty());
        assert!(buffers.take(1000).is_some(), "its permits were given back");
    }
}
