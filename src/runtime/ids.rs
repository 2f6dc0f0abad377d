//! Request ids: the client's `X-Request-Id` when usable, else a new one from a
//! per-process random prefix and a counter.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::atomic::{AtomicU64, Ordering};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids longer than this are replaced: they end up in every log line.
const MAX_REQUEST_ID_LEN: usize = 200;

/// Generates request ids: a per-process random prefix and a counter, unique
/// without a random draw or lock per request.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        RequestIds {
            prefix: h.finish(),
            counter: AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    /// The client's `X-Request-Id` if it sent a usable one, else a new one.
    pub fn for_request(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(v) = headers.get(&X_REQUEST_ID) {
            if !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN {
                return v.clone();
            }
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 33];
        hex(&mut buf[..16], self.prefix);
        buf[16] = b'-';
        hex(&mut buf[17..], n);
        HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

fn hex(out: &mut [u8], v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let ids = RequestIds::default();
        let a = ids.for_request(&HeaderMap::new());
        let b = ids.for_request(&HeaderMap::new());
        assert_ne!(a, b);
        assert_eq!(a.len(), 33);
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("given"));
        assert_eq!(ids.for_request(&h), "given");
    }
}
