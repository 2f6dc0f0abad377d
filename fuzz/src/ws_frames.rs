//! `ws_frames`: the WebSocket frame tracker of upgraded connections
//! (`proxy::tunnel`), which decides where a shutdown may inject its close
//! frame. Two streams per input, each fed in chunks of sizes drawn from the
//! input (1 byte to all of it):
//!
//! 1. the input itself, as arbitrary bytes: after every chunk,
//!    `at_boundary` must agree with an independent reading of RFC 6455 §5.2
//!    (header, extended length, mask key, payload), i.e. be true exactly at
//!    the start and at the end of each complete frame;
//! 2. well-formed frames built from the input (3 bytes per frame: first
//!    byte, mask bit and length encoding, length; 7-bit, 16-bit and 64-bit
//!    lengths, minimal or not, payloads up to 70 000 bytes): after every
//!    chunk, `at_boundary` is true exactly when the chunk ends a frame, and
//!    always after the last one, whatever the chunking.
//!
//! Never panicking is checked along the way.

use crate::api::FrameTracker;

/// Generated streams stop growing past this (keeps executions fast).
const MAX_STREAM: usize = 96 * 1024;

/// As [`check`]: no open finding is tolerated here.
pub fn check_strict(data: &[u8]) -> Result<(), String> {
    check(data)
}

/// Runs one input; `Err` names the first broken invariant.
pub fn check(data: &[u8]) -> Result<(), String> {
    let mut rng = Rng::new(data);
    let ends = frame_ends(data);
    feed("raw input", data, &ends, &mut rng)?;

    let (stream, ends) = frames_from(data);
    feed("well-formed frames", &stream, &ends, &mut rng)?;
    let mut t = FrameTracker::default();
    t.advance(&stream);
    if !t.at_boundary() {
        return Err(format!(
            "not at a boundary after {} whole frames fed at once",
            ends.len() - 1
        ));
    }
    Ok(())
}

/// Feeds `stream` in chunks, comparing `at_boundary` with `ends` (sorted
/// frame ends, 0 first) after each.
fn feed(what: &str, stream: &[u8], ends: &[usize], rng: &mut Rng) -> Result<(), String> {
    let mut t = FrameTracker::default();
    // Chunks of 1 to `max` bytes; a long stream is not fed byte by byte
    // (it would cost a call per byte), though its chunks still can be 1.
    let sizes = [1, 2, 3, 16, 255, 4096, stream.len().max(1)];
    let from = if stream.len() > 4096 { 3 } else { 0 };
    let max = sizes[from + rng.below(sizes.len() - from)];
    let mut pos = 0;
    while pos < stream.len() {
        let n = (1 + rng.below(max)).min(stream.len() - pos);
        t.advance(&stream[pos..pos + n]);
        pos += n;
        let want = ends.binary_search(&pos).is_ok();
        if t.at_boundary() != want {
            return Err(format!(
                "{what}: at_boundary {} after {pos} of {} bytes (chunk {n}); frame ends {:?}",
                !want,
                stream.len(),
                &ends[..ends.len().min(16)]
            ));
        }
    }
    Ok(())
}

/// Where the complete frames of `data` end, read by the RFC (0 first).
pub fn frame_ends(data: &[u8]) -> Vec<usize> {
    let mut ends = vec![0];
    let mut pos = 0usize;
    while let Some(&[_, b1]) = data.get(pos..pos + 2) {
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let head = 2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 };
        let Some(h) = data.get(pos..pos + head) else {
            break;
        };
        let len: u64 = match ext {
            2 => u16::from_be_bytes([h[2], h[3]]).into(),
            8 => u64::from_be_bytes(h[2..10].try_into().unwrap()),
            _ => (b1 & 0x7f).into(),
        };
        let end = (pos + head) as u128 + u128::from(len);
        if end > data.len() as u128 {
            break;
        }
        pos = end as usize;
        ends.push(pos);
    }
    ends
}

/// A stream of well-formed frames described by `data`, and its frame ends.
pub fn frames_from(data: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut stream = Vec::new();
    let mut ends = vec![0];
    for spec in data.chunks_exact(3) {
        let [first, shape, n] = [spec[0], spec[1], spec[2]];
        let masked = shape & 0x80 != 0;
        let m = if masked { 0x80 } else { 0 };
        stream.push(first);
        let len = match shape & 0x03 {
            0 => {
                let len = usize::from(n % 126);
                stream.push(m | len as u8);
                len
            }
            1 => {
                // Minimal (126..) or not (a short payload in 16 bits).
                let len = if shape & 0x04 != 0 {
                    126 + usize::from(n) * 64
                } else {
                    usize::from(n)
                };
                stream.push(m | 126);
                stream.extend_from_slice(&(len as u16).to_be_bytes());
                len
            }
            2 => {
                let len = 65_536 + usize::from(n) * 17;
                stream.push(m | 127);
                stream.extend_from_slice(&(len as u64).to_be_bytes());
                len
            }
            _ => {
                let len = usize::from(n);
                stream.push(m | 127);
                stream.extend_from_slice(&(len as u64).to_be_bytes());
                len
            }
        };
        if masked {
            stream.extend_from_slice(&[n, first, shape, 0x55]);
        }
        // Payload bytes that look like frame headers, to be skipped.
        stream.extend(std::iter::repeat_n(first, len));
        ends.push(stream.len());
        if stream.len() > MAX_STREAM {
            break;
        }
    }
    (stream, ends)
}

/// A small deterministic generator seeded by the input (chunk sizes).
struct Rng(u64);

impl Rng {
    fn new(data: &[u8]) -> Rng {
        // FNV-1a.
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &b in data {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Rng(h | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}
