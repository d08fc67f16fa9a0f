//! Raw answers are kept gzip-compressed: JSON bodies shrink several times, and a body is
//! read back only when someone asks (`results --raw`).

use std::io::{Read, Write};

use crate::RawFields;

/// The most a kept body may inflate to when read back: the endpoint's cap on answers
/// (`max_response_bytes`) is at most this, so a larger one is not ours.
const MAX_INFLATED: u64 = 1 << 30;

/// Compresses a body for [`crate::RawRecord::body_gzip`].
pub fn compress(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4 + 32), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    e.write_all(body).expect("write to memory");
    e.finish().expect("write to memory")
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
}
