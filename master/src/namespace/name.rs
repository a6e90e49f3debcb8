//! [`Name`]: a file or attribute name stored inline in 24 bytes.
//!
//! Names of up to 23 bytes (almost every name: `IMG_20240101_123456.jpg` is 23) sit inside the
//! key itself, so a directory entry costs no heap allocation; longer names (up to 255 bytes) are
//! boxed. Invariant: the bytes are always valid UTF-8 (names come from validated `&str`).

use std::cmp::Ordering;
use std::fmt;

const INLINE_CAP: usize = 23;

/// Length of an inline name. An enum rather than a `u8` so that the values 24..=255 are free for
/// the compiler to tag the `Heap` variant: `Name` is 24 bytes, not 32.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[rustfmt::skip]
enum InlineLen {
    L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11,
    L12, L13, L14, L15, L16, L17, L18, L19, L20, L21, L22, L23,
}

#[rustfmt::skip]
const INLINE_LENS: [InlineLen; INLINE_CAP + 1] = {
    use InlineLen::*;
    [L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11,
     L12, L13, L14, L15, L16, L17, L18, L19, L20, L21, L22, L23]
};

#[derive(Clone)]
enum Repr {
    Inline {
        bytes: [u8; INLINE_CAP],
        len: InlineLen,
    },
    Heap(Box<str>),
}

/// A name, compared by its bytes.
#[derive(Clone)]
pub struct Name(Repr);

const _: () = assert!(std::mem::size_of::<Name>() == 24);

impl Name {
    pub fn new(name: &str) -> Name {
        if name.len() <= INLINE_CAP {
            let mut bytes = [0u8; INLINE_CAP];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            Name(Repr::Inline {
                bytes,
                len: INLINE_LENS[name.len()],
            })
        } else {
            Name(Repr::Heap(name.into()))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { bytes, len } => std::str::from_utf8(&bytes[..*len as usize])
                .expect("an inline name holds the bytes of a &str"),
            Repr::Heap(s) => s,
        }
    }

    /// The name's bytes, without the UTF-8 check of [`Name::as_str`] (for comparisons).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { bytes, len } => &bytes[..*len as usize],
            Repr::Heap(s) => s.as_bytes(),
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_round_trip_and_order_by_bytes() {
        let long = "x".repeat(200);
        let names = [
            "",
            "a",
            "IMG_20240101_123456.jpg",
            "IMG_20240101_123456.jpeg",
            &long,
            "é",
        ];
        for n in names {
            assert_eq!(Name::new(n).as_str(), n);
        }
        let mut sorted: Vec<Name> = names.iter().map(|n| Name::new(n)).collect();
        sorted.sort();
        let mut expect = names.to_vec();
        expect.sort();
        assert_eq!(sorted.iter().map(Name::as_str).collect::<Vec<_>>(), expect);
    }
}
