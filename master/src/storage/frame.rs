//! Framing of every record the master writes: `[len: u32][crc: u32][payload: len bytes]`, little
//! endian, where `crc` is crc32c over the length bytes and the payload. A frame is either whole
//! and intact or reported as truncated, too large or failing its checksum; never half-read.

use std::io::{self, Read};

/// Largest payload of one frame. Log records are far smaller (a path, a 64 KiB xattr at most);
/// checkpoint blocks are bounded by their record count.
pub const MAX_PAYLOAD: u32 = 64 << 20;
/// Bytes of a frame's header.
pub const HEADER_LEN: usize = 8;

fn checksum(len: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), payload)
}

/// Appends one frame holding `payload` to `out`.
pub fn write_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)
        .expect("frames are bounded by MAX_PAYLOAD");
    let len = len.to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why a frame could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The input ended inside the frame.
    Truncated,
    /// The length field is beyond [`MAX_PAYLOAD`].
    TooLarge(u32),
    /// The checksum does not match.
    BadChecksum,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated => write!(f, "record cut short"),
            FrameError::TooLarge(len) => write!(f, "record length {len} is impossible"),
            FrameError::BadChecksum => write!(f, "record checksum mismatch"),
        }
    }
}

/// Reads frames one after another from a byte stream, keeping track of the offset.
pub struct FrameReader<R> {
    inner: R,
    offset: u64,
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R, offset: u64) -> Self {
        FrameReader {
            inner,
            offset,
            buf: Vec::new(),
        }
    }

    /// Offset of the next frame (after the last one read successfully).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame's payload; `Ok(None)` at a clean end of input.
    pub fn next_frame(&mut self) -> io::Result<Result<Option<&[u8]>, FrameError>> {
        let mut header = [0u8; HEADER_LEN];
        let got = read_full(&mut self.inner, &mut header)?;
        if got == 0 {
            return Ok(Ok(None));
        }
        if got < HEADER_LEN {
            return Ok(Err(FrameError::Truncated));
        }
        let len_bytes: [u8; 4] = header[..4].try_into().expect("4 bytes");
        let len = u32::from_le_bytes(len_bytes);
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD {
            return Ok(Err(FrameError::TooLarge(len)));
        }
        self.buf.resize(len as usize, 0);
        if read_full(&mut self.inner, &mut self.buf)? < len as usize {
            return Ok(Err(FrameError::Truncated));
        }
        if checksum(len_bytes, &self.buf) != crc {
            return Ok(Err(FrameError::BadChecksum));
        }
        self.offset += (HEADER_LEN + len as usize) as u64;
        Ok(Ok(Some(&self.buf)))
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            write_frame(&mut out, p);
        }
        out
    }

    #[test]
    fn frames_round_trip() {
        let data = frames(&[b"one", b"", b"three"]);
        let mut r = FrameReader::new(&data[..], 0);
        assert_eq!(r.next_frame().unwrap().unwrap(), Some(&b"one"[..]));
        assert_eq!(r.offset(), 11);
        assert_eq!(r.next_frame().unwrap().unwrap(), Some(&b""[..]));
        assert_eq!(r.next_frame().unwrap().unwrap(), Some(&b"three"[..]));
        assert_eq!(r.next_frame().unwrap().unwrap(), None);
        assert_eq!(r.offset(), data.len() as u64);
    }

    #[test]
    fn every_cut_and_every_flipped_bit_is_detected() {
        let data = frames(&[b"first record", b"second record"]);
        let first_len = HEADER_LEN + 12;
        for cut in first_len + 1..data.len() {
            let mut r = FrameReader::new(&data[..cut], 0);
            assert!(r.next_frame().unwrap().unwrap().is_some());
            assert!(r.next_frame().unwrap().is_err(), "cut at {cut}");
            assert_eq!(r.offset(), first_len as u64);
        }
        for bit in 0..data.len() * 8 {
            let mut bad = data.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let mut r = FrameReader::new(&bad[..], 0);
            let first = r.next_frame().unwrap().map(|p| p.map(<[u8]>::to_vec));
            let second = r.next_frame().unwrap().map(|p| p.map(<[u8]>::to_vec));
            assert!(
                first.is_err() || second.is_err(),
                "flipped bit {bit} went unnoticed"
            );
        }
    }
}
