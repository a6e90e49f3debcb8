//! 4 KiB-aligned byte buffers for the data path.
//!
//! On this kind of machine a 64 KiB copy between buffers whose addresses differ in alignment
//! within a page runs at ~3 GB/s instead of ~45 GB/s; page-cache pages are 4 KiB-aligned, so
//! buffers that reads fill are too.

use aligned_vec::{AVec, ConstAlign};

/// A byte buffer whose start is 4 KiB-aligned.
pub type AlignedBuf = AVec<u8, ConstAlign<4096>>;

/// A zeroed aligned buffer of `len` bytes.
pub fn aligned_zeroed(len: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::with_capacity(4096, len);
    buf.resize(len, 0);
    buf
}

#[cfg(test)]
mod tests {
    #[test]
    fn buffers_are_page_aligned() {
        for len in [0, 1, 4096, 1 << 20] {
            let buf = super::aligned_zeroed(len);
            assert_eq!(buf.len(), len);
            assert_eq!(buf.as_ptr() as usize % 4096, 0);
            assert!(buf.iter().all(|b| *b == 0));
        }
    }
}
