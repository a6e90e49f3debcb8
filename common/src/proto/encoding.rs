//! Replies encoded in the version of the protocol their peer speaks.
//!
//! A master serves clients of every client protocol from `OLDEST_CLIENT_PROTOCOL` on, and some
//! types grew fields for newer clients (`FileAttr`'s link count and change time, since client
//! protocol 11). A type like that encodes itself as the peer's version has it: the master's
//! transport for a connection encodes each reply inside [`encoding_for`] with the protocol its
//! client said at the handshake, and the type asks [`peer_protocol`]. Anything encoded outside
//! (a client's requests, files, tests) is encoded whole, as this build's newest version.
//!
//! Invariant: a type's encoding for protocol `p` is exactly what a build of protocol `p`
//! decodes; its decoding is always this build's (a client is never newer than its master: the
//! handshake refuses it).

use std::cell::Cell;

thread_local! {
    static PEER: Cell<Option<u32>> = const { Cell::new(None) };
}

/// The client protocol the value being encoded is for; `None`: this build's own.
pub fn peer_protocol() -> Option<u32> {
    PEER.with(|p| p.get())
}

/// Whether the value being encoded is for a peer of client protocol `version` or later.
pub fn peer_speaks(version: u32) -> bool {
    peer_protocol().is_none_or(|p| p >= version)
}

/// Runs `encode` (an encoding of a reply) for a peer of client protocol `protocol`.
pub fn encoding_for<R>(protocol: u32, encode: impl FnOnce() -> R) -> R {
    struct Restore(Option<u32>);
    impl Drop for Restore {
        fn drop(&mut self) {
            PEER.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PEER.with(|p| p.replace(Some(protocol))));
    encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_is_known_only_inside_and_restored_after() {
        assert_eq!(peer_protocol(), None);
        assert!(peer_speaks(99));
        encoding_for(9, || {
            assert_eq!(peer_protocol(), Some(9));
            assert!(peer_speaks(9) && !peer_speaks(10));
            encoding_for(11, || assert_eq!(peer_protocol(), Some(11)));
            assert_eq!(peer_protocol(), Some(9));
        });
        assert_eq!(peer_protocol(), None);
    }

    /// `FileAttr` as client protocol 10 and older have it.
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct FileAttrV10 {
        fid: crate::FileId,
        kind: crate::FileKind,
        size: u64,
        mode: u16,
        owner: u32,
        group: u32,
        replication: u8,
        mtime: i64,
        atime: i64,
    }

    #[test]
    fn file_attributes_encode_as_each_peer_decodes_them() {
        use super::super::master::FileAttr;
        use bincode::Options;
        let codec = bincode::DefaultOptions::new;
        let attr = FileAttr {
            fid: crate::FileId(7),
            kind: crate::FileKind::File,
            size: 5,
            mode: 0o644,
            owner: 1,
            group: 2,
            replication: 3,
            mtime: 10,
            atime: 11,
            nlink: 2,
            ctime: 12,
        };
        // The whole of it for this build (and a peer of protocol 11).
        let whole = codec().serialize(&attr).unwrap();
        assert_eq!(codec().deserialize::<FileAttr>(&whole).unwrap(), attr);
        assert_eq!(
            encoding_for(11, || codec().serialize(&attr).unwrap()),
            whole
        );
        // What a client of protocol 10 decodes, nothing after it.
        let old = encoding_for(10, || codec().serialize(&(attr.clone(), 99u8)).unwrap());
        let (decoded, after): (FileAttrV10, u8) = codec().deserialize(&old).unwrap();
        assert_eq!(
            (decoded.fid, decoded.size, decoded.atime, after),
            (attr.fid, 5, 11, 99)
        );
    }

    #[test]
    fn kinds_a_peer_does_not_know_are_empty_regular_files_to_it() {
        use super::super::master::FileAttr;
        use bincode::Options;
        let codec = bincode::DefaultOptions::new;
        let link = FileAttr {
            fid: crate::FileId(7),
            kind: crate::FileKind::Symlink,
            size: 12,
            mode: 0o777,
            owner: 1,
            group: 2,
            replication: 0,
            mtime: 10,
            atime: 11,
            nlink: 1,
            ctime: 10,
        };
        let old = encoding_for(9, || codec().serialize(&link).unwrap());
        let seen: FileAttrV10 = codec().deserialize(&old).unwrap();
        assert_eq!(
            (seen.kind, seen.size, seen.mode),
            (crate::FileKind::File, 0, 0o777)
        );
        let new = encoding_for(10, || codec().serialize(&link).unwrap());
        let seen: FileAttrV10 = codec().deserialize(&new).unwrap();
        assert_eq!((seen.kind, seen.size), (crate::FileKind::Symlink, 12));
        // Every kind encodes as `derive` numbers it, and decodes back.
        for kind in [
            crate::FileKind::File,
            crate::FileKind::Dir,
            crate::FileKind::Fifo,
            crate::FileKind::BlockDevice,
        ] {
            let bytes = codec().serialize(&kind).unwrap();
            assert_eq!(bytes, codec().serialize(&(kind as u32 - 1)).unwrap());
            assert_eq!(
                codec().deserialize::<crate::FileKind>(&bytes).unwrap(),
                kind
            );
        }
    }
}
