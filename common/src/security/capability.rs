//! Capabilities: the master's signed word that the holder of one certificate may read or write
//! one chunk at one version until a time, checked by chunkservers without asking the master.
//!
//! A [`Capability`] is an HMAC-SHA256 (keyed by a [`CapabilityKey`] the master made) over the
//! chunk, its version, the access, the byte range it opens, the file whose record it opens (a
//! packed file's), when it was issued and expires, the key's id and the SHA-256 of the holder's
//! certificate. The holder is not carried: the chunkserver supplies the
//! certificate the connection proved, so a capability copied to another connection opens
//! nothing.
//!
//! Keys: the master's [`KeyRing`] makes a new key every [`KEY_ROLL_MS`], and makes it one roll
//! before it signs with it, so chunkservers (which fetch the ring's published keys before every
//! hello and with every heartbeat) know a key before any capability of it arrives. A key is
//! published until the last capability it signed has expired. Keys live in memory only: a
//! restarted master makes new ones, and capabilities of the old are refused as expired (clients
//! ask again). Why these numbers: docs/security.md ("Capabilities").
//!
//! Invariants: a capability verifies only under the key that signed it, for the certificate it
//! was issued to, for its own chunk, version, access, range and file; expiry is checked against
//! the verifier's clock with [`CLOCK_SKEW_MS`] of grace.

use crate::ids::{ChunkId, ChunkVersion, FileId};
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// How long a capability is valid from when the master signs it.
pub const LIFETIME_MS: u64 = 10 * 60 * 1000;
/// How often the master starts signing with a new key.
pub const KEY_ROLL_MS: u64 = 60 * 60 * 1000;
/// How long past its expiry a chunkserver still takes a capability (its clock may be behind
/// the master's): this, or half the capability's lifetime if that is shorter.
pub const CLOCK_SKEW_MS: u64 = 30 * 1000;
/// How long before its expiry a client asks for a new capability rather than use the old:
/// this, or a quarter of the capability's lifetime if that is shorter ([`Capability::usable_for_ms`]).
pub const RENEW_BEFORE_MS: u64 = 60 * 1000;

/// What a capability allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    /// Read the chunk's bytes in the capability's range (`read`, `read_record`, `checksum`).
    Read,
    /// Write the chunk through its primary (`write`), and `sync` it.
    Write,
    /// Append records to a volume through its primary (`append`), and `sync` it.
    Append,
}

impl Access {
    fn code(self) -> u8 {
        match self {
            Access::Read => 1,
            Access::Write => 2,
            Access::Append => 3,
        }
    }
}

/// The master's signed word for one chunk (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    pub access: Access,
    /// The bytes of the chunk it opens: `[offset, offset + len)` (reads only; writes and
    /// appends open the whole chunk).
    pub offset: u64,
    pub len: u64,
    /// The file whose record it opens, for a packed file's (a volume holds many files'
    /// records, and a writer chooses where its own extent points: the record read must be
    /// this file's, as its header says).
    pub fid: Option<FileId>,
    /// When the master signed it and when it expires: milliseconds since the UNIX epoch, by
    /// the master's clock.
    pub issued_ms: u64,
    pub expires_ms: u64,
    /// The id of the key that signed it.
    pub key: u64,
    pub mac: ByteBuf,
}

impl Capability {
    /// Whether it opens `[offset, offset + len)`.
    pub fn covers(&self, offset: u64, len: u64) -> bool {
        offset >= self.offset
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= self.offset.saturating_add(self.len))
    }

    fn lifetime_ms(&self) -> u64 {
        self.expires_ms.saturating_sub(self.issued_ms)
    }

    /// How long after it arrived a client may use it, before asking for a new one: its
    /// lifetime less [`RENEW_BEFORE_MS`] (or a quarter of it). Measured by the client's own
    /// clock from arrival, so a client whose clock is off from the master's renews on time.
    pub fn usable_for_ms(&self) -> u64 {
        let lifetime = self.lifetime_ms();
        lifetime - RENEW_BEFORE_MS.min(lifetime / 4)
    }

    /// Until when (ms) a chunkserver takes it.
    fn honoured_until(&self) -> u64 {
        let grace = CLOCK_SKEW_MS.min(self.lifetime_ms() / 2);
        self.expires_ms.saturating_add(grace)
    }

    /// The bytes the MAC is over.
    fn signed_bytes(&self, holder: &super::CertDigest) -> Vec<u8> {
        let mut b = Vec::with_capacity(96);
        b.extend_from_slice(b"kfs-capability-1");
        b.extend_from_slice(&self.chunk.0.to_be_bytes());
        b.extend_from_slice(&self.version.0.to_be_bytes());
        b.push(self.access.code());
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.len.to_be_bytes());
        b.extend_from_slice(&self.fid.map_or(0, |f| f.0).to_be_bytes());
        b.extend_from_slice(&self.issued_ms.to_be_bytes());
        b.extend_from_slice(&self.expires_ms.to_be_bytes());
        b.extend_from_slice(&self.key.to_be_bytes());
        b.extend_from_slice(holder);
        b
    }
}

/// A key capabilities are signed with, as the master hands it to chunkservers (over their TLS
/// connection to it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityKey {
    pub id: u64,
    pub secret: ByteBuf,
}

/// Why a chunkserver refused a capability.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Past its expiry, or signed with a key the chunkserver does not know (a key of a master
    /// that has since restarted, or retired): the client asks the master for a new one.
    #[error("the capability for {chunk} has expired ({why})")]
    Expired { chunk: ChunkId, why: String },
    /// Not the master's word for this call: a forged or altered one, another chunk's, another
    /// version's, another access, another range, or another certificate's.
    #[error("the capability does not allow this: {0}")]
    Invalid(String),
}

impl From<Refusal> for crate::KfsError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Expired { chunk, .. } => crate::KfsError::CapabilityExpired { chunk },
            Refusal::Invalid(why) => crate::KfsError::PermissionDenied(why),
        }
    }
}

/// What a chunkserver checks a call against.
pub struct Wanted<'a> {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    /// `None`: any access will do (a `sync`: durability only, no change).
    pub access: Option<Access>,
    pub offset: u64,
    pub len: u64,
    /// The file a record read names (`None` for every other call).
    pub fid: Option<FileId>,
    /// The certificate of the connection the call came on.
    pub holder: &'a super::CertDigest,
}

/// The keys a chunkserver accepts: the master's published keys, replaced as a whole at each
/// fetch.
#[derive(Default)]
pub struct Verifier {
    keys: std::sync::RwLock<Vec<(u64, hmac::Key)>>,
}

impl Verifier {
    /// Replaces the keys with the master's published ones.
    pub fn set_keys(&self, keys: &[CapabilityKey]) {
        let keys = keys
            .iter()
            .map(|k| (k.id, hmac::Key::new(hmac::HMAC_SHA256, &k.secret)))
            .collect();
        *self.keys.write().expect("capability keys lock") = keys;
    }

    /// Checks `cap` for the call `wanted` at `now_ms` (the chunkserver's clock).
    pub fn verify(
        &self,
        cap: &Capability,
        wanted: &Wanted<'_>,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        if now_ms > cap.honoured_until() {
            return Err(Refusal::Expired {
                chunk: cap.chunk,
                why: format!("{} ms ago", now_ms - cap.expires_ms),
            });
        }
        {
            let keys = self.keys.read().expect("capability keys lock");
            let Some((_, key)) = keys.iter().find(|(id, _)| *id == cap.key) else {
                return Err(Refusal::Expired {
                    chunk: cap.chunk,
                    why: "signed with a key this chunkserver does not hold".into(),
                });
            };
            hmac::verify(key, &cap.signed_bytes(wanted.holder), &cap.mac).map_err(|_| {
                Refusal::Invalid(format!(
                    "the capability for {} is not the master's, or not this certificate's",
                    cap.chunk
                ))
            })?;
        }
        if cap.chunk != wanted.chunk || cap.version != wanted.version {
            return Err(Refusal::Invalid(format!(
                "it is for {} at {}, not {} at {}",
                cap.chunk, cap.version, wanted.chunk, wanted.version
            )));
        }
        if let Some(access) = wanted.access
            && access != cap.access
        {
            return Err(Refusal::Invalid(format!(
                "it allows {:?} of {}, not {access:?}",
                cap.access, cap.chunk
            )));
        }
        if cap.fid.is_some() && cap.fid != wanted.fid {
            return Err(Refusal::Invalid(format!(
                "it opens the record of {} only",
                cap.fid.map_or_else(String::new, |f| f.to_string())
            )));
        }
        if !cap.covers(wanted.offset, wanted.len) {
            return Err(Refusal::Invalid(format!(
                "it opens bytes {}..{} of {}, not {}..{}",
                cap.offset,
                cap.offset.saturating_add(cap.len),
                cap.chunk,
                wanted.offset,
                wanted.offset.saturating_add(wanted.len)
            )));
        }
        Ok(())
    }
}

/// The master's keys: signs capabilities, and says which keys chunkservers must hold.
pub struct KeyRing {
    rng: ring::rand::SystemRandom,
    /// Oldest first; the last is the next one (published, not yet signing), the one before it
    /// signs; each with when it started signing (ms).
    keys: std::sync::Mutex<Vec<RingKey>>,
    lifetime_ms: u64,
}

struct RingKey {
    public: CapabilityKey,
    key: hmac::Key,
    /// When it starts (or started) signing.
    from_ms: u64,
}

impl KeyRing {
    /// A ring whose capabilities last `lifetime_ms`, with its first signing key and the next.
    pub fn new(lifetime_ms: u64, now_ms: u64) -> KeyRing {
        let ring = KeyRing {
            rng: ring::rand::SystemRandom::new(),
            keys: Default::default(),
            lifetime_ms,
        };
        {
            let mut keys = ring.keys.lock().expect("key ring lock");
            keys.push(ring.make_key(now_ms));
            keys.push(ring.make_key(now_ms + KEY_ROLL_MS));
        }
        ring
    }

    fn make_key(&self, from_ms: u64) -> RingKey {
        use ring::rand::SecureRandom;
        let mut secret = [0u8; 32];
        let mut id = [0u8; 8];
        self.rng
            .fill(&mut secret)
            .and_then(|()| self.rng.fill(&mut id))
            .expect("the system's random source works");
        RingKey {
            public: CapabilityKey {
                id: u64::from_be_bytes(id),
                secret: ByteBuf::from(secret.to_vec()),
            },
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            from_ms,
        }
    }

    /// Rolls at `now_ms`: once the next key's time has come it signs, a new next key is made,
    /// and keys whose every capability has expired are dropped.
    fn roll(&self, keys: &mut Vec<RingKey>, now_ms: u64) {
        while keys.last().is_some_and(|k| k.from_ms <= now_ms) {
            let from = keys.last().map_or(now_ms, |k| k.from_ms) + KEY_ROLL_MS;
            keys.push(self.make_key(from.max(now_ms)));
        }
        // Key i signed until key i+1 began; keep it until its last capability expired.
        let horizon = self.lifetime_ms + CLOCK_SKEW_MS;
        while keys.len() > 2 && keys[1].from_ms.saturating_add(horizon) < now_ms {
            keys.remove(0);
        }
    }

    /// Signs a capability for `holder` (a certificate's SHA-256).
    pub fn sign(&self, grant: Grant, holder: &super::CertDigest, now_ms: u64) -> Capability {
        let mut keys = self.keys.lock().expect("key ring lock");
        self.roll(&mut keys, now_ms);
        // The newest key whose time has come; the oldest if the clock went back before every
        // key's start (published all the same, so chunkservers hold it).
        let signing = keys
            .iter()
            .rev()
            .find(|k| k.from_ms <= now_ms)
            .unwrap_or(&keys[0]);
        let mut cap = Capability {
            chunk: grant.chunk,
            version: grant.version,
            access: grant.access,
            offset: grant.offset,
            len: grant.len,
            fid: grant.fid,
            issued_ms: now_ms,
            expires_ms: now_ms + self.lifetime_ms,
            key: signing.public.id,
            mac: ByteBuf::new(),
        };
        let tag = hmac::sign(&signing.key, &cap.signed_bytes(holder));
        cap.mac = ByteBuf::from(tag.as_ref().to_vec());
        cap
    }

    /// The keys chunkservers must hold at `now_ms`: every one that may have signed a
    /// capability not yet expired, and the next.
    pub fn published(&self, now_ms: u64) -> Vec<CapabilityKey> {
        let mut keys = self.keys.lock().expect("key ring lock");
        self.roll(&mut keys, now_ms);
        keys.iter().map(|k| k.public.clone()).collect()
    }
}

/// What one capability is to allow (the master fills in expiry and key).
#[derive(Clone, Copy, Debug)]
pub struct Grant {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    pub access: Access,
    pub offset: u64,
    pub len: u64,
    pub fid: Option<FileId>,
}

impl Grant {
    /// The whole chunk.
    pub fn whole(chunk: ChunkId, version: ChunkVersion, access: Access) -> Grant {
        Grant {
            chunk,
            version,
            access,
            offset: 0,
            len: u64::MAX,
            fid: None,
        }
    }
}

/// Milliseconds since the UNIX epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: [u8; 32] = [1; 32];
    const MALLORY: [u8; 32] = [2; 32];

    fn wanted(access: Access, offset: u64, len: u64) -> Wanted<'static> {
        Wanted {
            chunk: ChunkId(7),
            version: ChunkVersion(3),
            access: Some(access),
            offset,
            len,
            fid: None,
            holder: &ALICE,
        }
    }

    fn setup(now: u64) -> (KeyRing, Verifier) {
        let ring = KeyRing::new(LIFETIME_MS, now);
        let verifier = Verifier::default();
        verifier.set_keys(&ring.published(now));
        (ring, verifier)
    }

    #[test]
    fn a_capability_opens_only_what_it_names_for_whom_it_names() {
        let now = 1_000_000;
        let (ring, v) = setup(now);
        let grant = Grant {
            offset: 100,
            len: 50,
            ..Grant::whole(ChunkId(7), ChunkVersion(3), Access::Read)
        };
        let cap = ring.sign(grant, &ALICE, now);
        v.verify(&cap, &wanted(Access::Read, 100, 50), now).unwrap();
        v.verify(&cap, &wanted(Access::Read, 120, 10), now).unwrap();
        for (w, says) in [
            (wanted(Access::Read, 90, 20), "opens bytes"),
            (wanted(Access::Read, 140, 20), "opens bytes"),
            (wanted(Access::Write, 100, 10), "allows Read"),
            (
                Wanted {
                    chunk: ChunkId(8),
                    ..wanted(Access::Read, 100, 10)
                },
                "not chunk:8",
            ),
            (
                Wanted {
                    version: ChunkVersion(4),
                    ..wanted(Access::Read, 100, 10)
                },
                "at v3, not",
            ),
            (
                Wanted {
                    holder: &MALLORY,
                    ..wanted(Access::Read, 100, 10)
                },
                "not this certificate's",
            ),
        ] {
            let e = v.verify(&cap, &w, now).unwrap_err();
            assert!(matches!(e, Refusal::Invalid(_)), "{e}");
            assert!(e.to_string().contains(says), "{e} / {says}");
        }
        // Altered in any field, or its MAC: refused.
        let mut wider = cap.clone();
        wider.len = 1 << 30;
        assert!(matches!(
            v.verify(&wider, &wanted(Access::Read, 100, 1000), now),
            Err(Refusal::Invalid(_))
        ));
        let mut forged = cap.clone();
        forged.mac[0] ^= 1;
        assert!(matches!(
            v.verify(&forged, &wanted(Access::Read, 100, 10), now),
            Err(Refusal::Invalid(_))
        ));
        // A record's capability: for its file's record alone.
        let record = ring.sign(
            Grant {
                fid: Some(FileId(9)),
                ..grant
            },
            &ALICE,
            now,
        );
        let of = |fid| Wanted {
            fid,
            ..wanted(Access::Read, 100, 50)
        };
        v.verify(&record, &of(Some(FileId(9))), now).unwrap();
        for other in [None, Some(FileId(10))] {
            let e = v.verify(&record, &of(other), now).unwrap_err();
            assert!(e.to_string().contains("record of fid:9 only"), "{e}");
        }
        // A clock stepped back before the ring began still signs (with the oldest key).
        ring.sign(grant, &ALICE, now - 10_000);
        // Another ring's (another master's) key is unknown: asked again, as expired.
        let (other, _) = setup(now);
        let theirs = other.sign(grant, &ALICE, now);
        assert!(matches!(
            v.verify(&theirs, &wanted(Access::Read, 100, 10), now),
            Err(Refusal::Expired { .. })
        ));
    }

    #[test]
    fn capabilities_expire_and_keys_roll_ahead_of_use() {
        let now = 5_000_000;
        let (ring, v) = setup(now);
        let cap = ring.sign(
            Grant::whole(ChunkId(7), ChunkVersion(3), Access::Write),
            &ALICE,
            now,
        );
        let w = wanted(Access::Write, 0, 10);
        v.verify(&cap, &w, now + LIFETIME_MS + CLOCK_SKEW_MS)
            .unwrap();
        assert!(matches!(
            v.verify(&cap, &w, now + LIFETIME_MS + CLOCK_SKEW_MS + 1),
            Err(Refusal::Expired { .. })
        ));
        assert_eq!(cap.usable_for_ms(), LIFETIME_MS - RENEW_BEFORE_MS);
        // A short-lived one (a test cluster's) is usable for three quarters of its life, and
        // honoured half its life past its expiry.
        let short = KeyRing::new(2_000, now);
        v.set_keys(&short.published(now));
        let brief = short.sign(
            Grant::whole(ChunkId(7), ChunkVersion(3), Access::Write),
            &ALICE,
            now,
        );
        assert_eq!(brief.usable_for_ms(), 1_500);
        v.verify(&brief, &w, now + 3_000).unwrap();
        assert!(v.verify(&brief, &w, now + 3_001).is_err());
        v.set_keys(&ring.published(now));
        // A roll later, capabilities are signed with the key published a roll before: a
        // verifier that fetched keys only at the start still knows it.
        let later = now + KEY_ROLL_MS + 1;
        let rolled = ring.sign(
            Grant::whole(ChunkId(7), ChunkVersion(3), Access::Write),
            &ALICE,
            later,
        );
        assert_ne!(rolled.key, cap.key);
        v.verify(&rolled, &w, later).unwrap();
        // The old key stays published while its capabilities may live, then goes.
        let ids = |t| ring.published(t).iter().map(|k| k.id).collect::<Vec<_>>();
        assert!(ids(later).contains(&cap.key));
        assert!(!ids(later + LIFETIME_MS + CLOCK_SKEW_MS + 1).contains(&cap.key));
        // A sync (any access) may go under a write capability.
        let sync = Wanted {
            access: None,
            ..wanted(Access::Read, 0, 0)
        };
        v.verify(&rolled, &sync, later).unwrap();
    }
}
