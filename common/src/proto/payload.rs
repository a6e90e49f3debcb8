//! [`Payload`]: data bytes of an RPC, serialized straight from the sender's buffer.
//!
//! A reply or request carrying chunk data is built from whatever buffer holds the bytes (a
//! chunkserver's pooled, 4 KiB-aligned read buffer, say) without copying them into a `Vec` first;
//! serialization copies them once, into the frame. On the receiving side a payload owns a `Vec`.
//! On the wire it is a byte string (like `serde_bytes`), never a sequence of numbers.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::Deref;

/// Data bytes of an RPC; see the module docs.
pub struct Payload(Repr);

enum Repr {
    Owned(Vec<u8>),
    Buffer(Box<dyn AsRef<[u8]> + Send + Sync>),
}

impl Payload {
    pub fn from_vec(bytes: Vec<u8>) -> Payload {
        Payload(Repr::Owned(bytes))
    }

    /// Wraps a buffer the bytes already live in (it is dropped once the payload is sent).
    pub fn from_buffer(buffer: impl AsRef<[u8]> + Send + Sync + 'static) -> Payload {
        Payload(Repr::Buffer(Box::new(buffer)))
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::Buffer(b) => (**b).as_ref(),
        }
    }

    /// The bytes as a `Vec` (a copy only if the payload wraps a buffer).
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Buffer(b) => (*b).as_ref().to_vec(),
        }
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

impl Clone for Payload {
    fn clone(&self) -> Payload {
        Payload::from_vec(self.as_slice().to_vec())
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Payload {}

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
