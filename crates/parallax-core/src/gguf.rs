//! Reading a GGUF file's metadata: architecture, chat template, special tokens.
//!
//! Only the header is read — the key/value section before the tensors — from a reader
//! the caller opens, so this module does no I/O of its own. Format: GGUF v2 and v3 as
//! specified in ggml's `docs/gguf.md` (little-endian; strings are a u64 length and UTF-8
//! bytes; arrays are an element type, a u64 count and the elements).

use std::collections::BTreeMap;
use std::io::{self, Read};

/// Errors reading a GGUF header.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (magic {0:02x?}, expected `GGUF`)")]
    Magic([u8; 4]),
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    Version(u32),
    #[error("unknown GGUF value type {value_type} for key `{key}`")]
    ValueType { key: String, value_type: u32 },
    #[error("GGUF string of {0} bytes is implausibly long")]
    TooLong(u64),
    #[error("metadata `{key}` is not valid UTF-8")]
    Utf8 { key: String },
    #[error("reading the GGUF header")]
    Io(#[from] io::Error),
}

/// A metadata value. Numeric arrays are kept only as their length: templates and tokens
/// are what parallax needs, not the merges or scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    IntArray(Vec<i64>),
    OtherArray(u64),
}

/// The metadata parallax uses, with every key kept in `raw`.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufMetadata {
    pub version: u32,
    pub tensor_count: u64,
    pub raw: BTreeMap<String, Value>,
}

impl GgufMetadata {
    pub fn read(r: &mut impl Read) -> Result<GgufMetadata, GgufError> {
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic)?;
        if &magic != b"GGUF" {
            return Err(GgufError::Magic(magic));
        }
        let version = u32_le(r)?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version(version));
        }
        let tensor_count = u64_le(r)?;
        let kv_count = u64_le(r)?;
        let mut raw = BTreeMap::new();
        for _ in 0..kv_count {
            let key = string(r, "<key>")?;
            let value_type = u32_le(r)?;
            let value = value(r, &key, value_type)?;
            raw.insert(key, value);
        }
        Ok(GgufMetadata { version, tensor_count, raw })
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.raw.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn uint(&self, key: &str) -> Option<u64> {
        match self.raw.get(key) {
            Some(Value::Uint(u)) => Some(*u),
            Some(Value::Int(i)) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    pub fn architecture(&self) -> Option<&str> {
        self.str("general.architecture")
    }

    pub fn name(&self) -> Option<&str> {
        self.str("general.name")
    }

    /// `tokenizer.chat_template`: absent for base models.
    pub fn chat_template(&self) -> Option<&str> {
        self.str("tokenizer.chat_template")
    }

    fn tokens(&self) -> &[String] {
        match self.raw.get("tokenizer.ggml.tokens") {
            Some(Value::StrArray(t)) => t,
            _ => &[],
        }
    }

    fn token(&self, id_key: &str) -> Option<&str> {
        let id = usize::try_from(self.uint(id_key)?).ok()?;
        self.tokens().get(id).map(String::as_str)
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.token("tokenizer.ggml.bos_token_id")
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.token("tokenizer.ggml.eos_token_id")
    }

    /// Whether the tokenizer adds BOS itself (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos_token(&self) -> Option<bool> {
        match self.raw.get("tokenizer.ggml.add_bos_token") {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// Tokens of type *control* (GGUF token type 3): the markers that must never appear
    /// in a raw-mode prompt. User-defined tokens (type 4) are not included: Gemma's
    /// vocabulary marks even `\n` as user-defined.
    pub fn control_tokens(&self) -> Vec<&str> {
        const CONTROL: i64 = 3;
        let Some(Value::IntArray(types)) = self.raw.get("tokenizer.ggml.token_type") else { return Vec::new() };
        self.tokens()
            .iter()
            .zip(types)
            .filter(|(t, ty)| **ty == CONTROL && !t.is_empty())
            .map(|(t, _)| t.as_str())
            .collect()
    }
}

fn u32_le(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn u64_le(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn string(r: &mut impl Read, key: &str) -> Result<String, GgufError> {
    let len = u64_le(r)?;
    if len > 64 << 20 {
        return Err(GgufError::TooLong(len));
    }
    let mut b = vec![0u8; len as usize];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(|_| GgufError::Utf8 { key: key.to_owned() })
}

/// Bytes of a fixed-size scalar type, or `None` for strings and arrays.
fn scalar_size(value_type: u32) -> Option<usize> {
    match value_type {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

fn scalar(r: &mut impl Read, key: &str, value_type: u32) -> Result<Value, GgufError> {
    let size = scalar_size(value_type).ok_or_else(|| GgufError::ValueType { key: key.to_owned(), value_type })?;
    let mut b = [0u8; 8];
    r.read_exact(&mut b[..size])?;
    let u = u64::from_le_bytes(b);
    Ok(match value_type {
        0 | 2 | 4 | 10 => Value::Uint(u),
        1 => Value::Int(i64::from(b[0] as i8)),
        3 => Value::Int(i64::from(i16::from_le_bytes([b[0], b[1]]))),
        5 => Value::Int(i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        11 => Value::Int(u as i64),
        6 => Value::Float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        12 => Value::Float(f64::from_bits(u)),
        7 => Value::Bool(b[0] != 0),
        _ => unreachable!("scalar_size covers exactly these types"),
    })
}

fn value(r: &mut impl Read, key: &str, value_type: u32) -> Result<Value, GgufError> {
    match value_type {
        8 => Ok(Value::Str(string(r, key)?)),
        9 => {
            let item_type = u32_le(r)?;
            let count = u64_le(r)?;
            match item_type {
                8 => (0..count).map(|_| string(r, key)).collect::<Result<_, _>>().map(Value::StrArray),
                1 | 3 | 5 | 11 | 0 | 2 | 4 | 10 if key == "tokenizer.ggml.token_type" => (0..count)
                    .map(|_| {
                        scalar(r, key, item_type).map(|v| match v {
                            Value::Int(i) => i,
                            Value::Uint(u) => u as i64,
                            _ => 0,
                        })
                    })
                    .collect::<Result<_, _>>()
                    .map(Value::IntArray),
                _ => {
                    // Skip numeric arrays (scores, merges' ids) without keeping them.
                    let size = scalar_size(item_type)
                        .ok_or_else(|| GgufError::ValueType { key: key.to_owned(), value_type: item_type })?;
                    io::copy(&mut r.take(count.saturating_mul(size as u64)), &mut io::sink())?;
                    Ok(Value::OtherArray(count))
                }
            }
        }
        t => scalar(r, key, t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv_string(out: &mut Vec<u8>, key: &str, value: &str) {
        out.extend((key.len() as u64).to_le_bytes());
        out.extend(key.as_bytes());
        out.extend(8u32.to_le_bytes());
        out.extend((value.len() as u64).to_le_bytes());
        out.extend(value.as_bytes());
    }

    #[test]
    fn reads_a_minimal_header() {
        let mut f = b"GGUF".to_vec();
        f.extend(3u32.to_le_bytes());
        f.extend(0u64.to_le_bytes());
        f.extend(2u64.to_le_bytes());
        kv_string(&mut f, "general.architecture", "llama");
        kv_string(&mut f, "tokenizer.chat_template", "{{ bos_token }}");
        let m = GgufMetadata::read(&mut f.as_slice()).unwrap();
        assert_eq!(m.architecture(), Some("llama"));
        assert_eq!(m.chat_template(), Some("{{ bos_token }}"));
        assert_eq!(m.bos_token(), None);
    }

    #[test]
    fn rejects_what_is_not_gguf() {
        assert!(matches!(GgufMetadata::read(&mut &b"GGML\x03\0\0\0"[..]), Err(GgufError::Magic(_))));
        assert!(matches!(GgufMetadata::read(&mut &b"GGUF\x09\0\0\0"[..]), Err(GgufError::Version(9))));
        assert!(matches!(GgufMetadata::read(&mut &b"GGUF\x03\0"[..]), Err(GgufError::Io(_))));
    }
}
