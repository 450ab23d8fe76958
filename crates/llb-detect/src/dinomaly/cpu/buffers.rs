//! Buffers reused from one training step to the next.
//!
//! Every step asks for the same sizes, so after the first one nothing is allocated: fresh
//! allocations of this size cost page faults and, when freed, TLB shootdowns on both cores.

use std::collections::BTreeMap;

/// Spare `f32` buffers by length.
#[derive(Default)]
pub(crate) struct Buffers(BTreeMap<usize, Vec<Vec<f32>>>);

impl Buffers {
    /// A buffer of `len` values whose contents are unspecified: for callers that overwrite
    /// every value.
    pub(super) fn take(&mut self, len: usize) -> Vec<f32> {
        self.0.get_mut(&len).and_then(Vec::pop).unwrap_or_else(|| vec![0.0; len])
    }

    /// A buffer of `len` zeros.
    pub(super) fn zeroed(&mut self, len: usize) -> Vec<f32> {
        let mut buffer = self.take(len);
        buffer.fill(0.0);
        buffer
    }

    /// Returns `buffer` for reuse.
    pub(crate) fn give(&mut self, buffer: Vec<f32>) {
        self.0.entry(buffer.len()).or_default().push(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_length_and_zeroed_on_request() {
        let mut buffers = Buffers::default();
        let mut a = buffers.take(4);
        a.fill(7.0);
        let address = a.as_ptr();
        buffers.give(a);
        assert!(buffers.take(3).iter().all(|&v| v == 0.0), "another length is a new buffer");
        let again = buffers.zeroed(4);
        assert_eq!(again.as_ptr(), address);
        assert_eq!(again, vec![0.0; 4]);
    }
}
