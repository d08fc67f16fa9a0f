//! Raw answers are kept gzip-compressed: JSON bodies shrink several times, and a body is
//! read back only when someone asks (`results --raw`).

use std::cell::RefCell;
use std::io::Read;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::RawFields;

/// The most a kept body may inflate to when read back: the endpoint's cap on answers
/// (`max_response_bytes`) is at most this, so a larger one is not ours.
const MAX_INFLATED: u64 = 1 << 30;

/// A gzip member's header (RFC 1952): deflate, no flags, no time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

thread_local! {
    /// One deflate state per thread, reset for each body: a new one zeroes some 300 KiB of
    /// tables, which was most of a worker's page faults at one body per call.
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
}

/// Compresses a body for [`crate::RawRecord::body_gzip`]: one gzip member, as
/// `GzEncoder` writes it.
pub fn compress(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(GZIP_HEADER.len() + body.len() / 4 + 64);
    out.extend_from_slice(&GZIP_HEADER);
    DEFLATE.with_borrow_mut(|deflate| {
        deflate.reset();
        let start = deflate.total_in();
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let read = (deflate.total_in() - start) as usize;
            // Deflating into memory cannot fail: the only errors are misuse of the stream.
            match deflate.compress_vec(&body[read..], &mut out, FlushCompress::Finish).expect("deflate into memory") {
                Status::StreamEnd => break,
                Status::Ok | Status::BufError => {}
            }
        }
    });
    let mut crc = Crc::new();
    crc.update(body);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE: the input's length modulo 2^32.
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out
}

/// The body back, invalid UTF-8 replaced; a broken blob says so instead of failing a read.
pub(crate) fn inflate(gzip: &[u8]) -> String {
    let mut out = Vec::new();
    match flate2::read::GzDecoder::new(gzip).take(MAX_INFLATED).read_to_end(&mut out) {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => format!("(the stored body cannot be read: {e})"),
    }
}

/// `results --raw`'s fields from the stored columns.
pub(crate) fn fields(body: Option<Vec<u8>>, headers_json: Option<String>, fingerprint: Option<String>) -> RawFields {
    let response_headers = headers_json
        .and_then(|h| serde_json::from_str::<Vec<(String, String)>>(&h).ok())
        .map(|h| h.into_iter().map(|(name, value)| (name, serde_json::Value::String(value))).collect());
    RawFields { raw_response: body.as_deref().map(inflate), response_headers, system_fingerprint: fingerprint }
}

/// The stored form of kept headers.
pub(crate) fn headers_json(headers: &[(String, String)]) -> String {
    serde_json::to_string(headers).expect("strings serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_comes_back_as_it_went_in() {
        let body = br#"{"choices":[{"message":{"content":"h\u00e9llo"}}]}"#.repeat(50);
        let z = compress(&body);
        assert!(z.len() < body.len() / 4);
        assert_eq!(inflate(&z).as_bytes(), body.as_slice());
        assert!(inflate(b"not gzip").starts_with("(the stored body cannot be read"));
    }

    #[test]
    fn bodies_compressed_one_after_another_on_a_thread_each_come_back_whole() {
        // The deflate state is reused: nothing of one body may leak into the next.
        let bodies: Vec<Vec<u8>> = vec![
            br#"{"a":1}"#.repeat(3000),
            Vec::new(),
            (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect(),
            b"short".to_vec(),
        ];
        for body in &bodies {
            let z = compress(body);
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(z.as_slice()).read_to_end(&mut out).expect("a valid gzip member");
            assert_eq!(&out, body);
        }
    }
}
