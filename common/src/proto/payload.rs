//! [`Payload`]: data bytes of an RPC, serialized straight from the sender's buffer.
//!
//! A payload is `bytes::Bytes`: built from whatever buffer holds the bytes (a chunkserver's
//! pooled, 4 KiB-aligned read buffer, a client's write buffer) without copying them, and cloned
//! by reference count (a chunkserver writing its replica while it forwards the same bytes down
//! the chain, a client keeping a write for a retry). Serialization copies them once, into the
//! frame; on the receiving side a payload owns the decoded `Vec`. On the wire it is a byte
//! string (like `serde_bytes`), never a sequence of numbers.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::Deref;

/// Data bytes of an RPC; see the module docs.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload(Bytes);

impl Payload {
    pub fn from_vec(bytes: Vec<u8>) -> Payload {
        Payload(Bytes::from(bytes))
    }

    /// Wraps a buffer the bytes already live in (it is dropped once every clone is gone).
    pub fn from_buffer(buffer: impl AsRef<[u8]> + Send + 'static) -> Payload {
        Payload(Bytes::from_owner(buffer))
    }

    /// Wraps shared bytes (a slice of a larger buffer, say).
    pub fn from_bytes(bytes: Bytes) -> Payload {
        Payload(bytes)
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as a `Vec` (no copy when this is their only owner and they came as a `Vec`).
    pub fn into_vec(self) -> Vec<u8> {
        Vec::from(self.0)
    }

    /// The bytes, shared.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload::from_vec(bytes)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Payload, D::Error> {
        serde_bytes::ByteBuf::deserialize(deserializer).map(|b| Payload::from_vec(b.into_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_travel_as_byte_strings() {
        let from_buffer = Payload::from_buffer(vec![1u8, 2, 3]);
        let bytes = bincode::serialize(&from_buffer).unwrap();
        assert_eq!(
            bytes,
            bincode::serialize(&serde_bytes::ByteBuf::from(vec![1u8, 2, 3])).unwrap()
        );
        let back: Payload = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, from_buffer);
        assert_eq!(back.into_vec(), vec![1, 2, 3]);
        assert_eq!(format!("{from_buffer:?}"), "Payload(3 bytes)");
    }
}
