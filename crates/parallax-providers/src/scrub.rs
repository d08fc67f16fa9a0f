//! Scrubbing what looks like a credential out of a text before it is stored or printed:
//! the user part of a URL (`https://user:pw@host`), the value of a key-like parameter
//! (`api_key=…`, `"token": "…"`), a `Bearer …` token, and tokens with a well-known
//! prefix (`sk-…`, `hf_…`, `ghp_…`, `AKIA…`). An error text is evidence, not a secret
//! store: a little over-scrubbing is the right side to err on.

/// Parameter names whose values are credentials (compared without case).
const NAMES: &[&str] = &[
    "api_key",
    "api-key",
    "apikey",
    "x-api-key",
    "key",
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "sig",
    "signature",
    "auth",
];

/// Prefixes of well-known token formats; a token is the prefix and 16 or more token
/// characters after it.
const PREFIXES: &[&str] =
    &["sk-", "sk_", "rk_", "hf_", "ghp_", "gho_", "ghs_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "AKIA", "AIza"];

const MASK: &str = "***";

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Where a value ends: the first delimiter at or after `from`.
fn value_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < bytes.len()
        && !matches!(
            bytes[i],
            b'&' | b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\'' | b'`' | b',' | b';' | b')' | b']' | b'}' | b'<' | b'>'
        )
    {
        i += 1;
    }
    i
}

fn starts_with_ignore_case(bytes: &[u8], at: usize, word: &str) -> bool {
    bytes.len() >= at + word.len() && bytes[at..at + word.len()].eq_ignore_ascii_case(word.as_bytes())
}

/// `text` with every credential-looking part replaced by `***`.
pub fn scrub(text: &str) -> String {
    let bytes = text.as_bytes();
    // Byte ranges to mask; every bound falls on an ASCII byte or the end, so on a char boundary.
    let mut masks: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !is_word(bytes[i - 1]);
        // scheme://user:pw@host — mask up to the last `@` of the authority.
        if bytes[i..].starts_with(b"://") {
            let start = i + 3;
            let end = start
                + bytes[start..]
                    .iter()
                    .position(|b| {
                        matches!(b, b'/' | b'?' | b'#' | b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'`' | b'<' | b'>')
                    })
                    .unwrap_or(bytes.len() - start);
            if let Some(at) = bytes[start..end].iter().rposition(|b| *b == b'@') {
                masks.push((start, start + at));
            }
            i = end;
            continue;
        }
        if boundary {
            if starts_with_ignore_case(bytes, i, "bearer ") {
                let start = i + "bearer ".len();
                let end = value_end(bytes, start);
                if end - start >= 8 {
                    masks.push((start, end));
                    i = end;
                    continue;
                }
            }
            if let Some(prefix) = PREFIXES.iter().find(|p| bytes[i..].starts_with(p.as_bytes())) {
                let start = i + prefix.len();
                let mut end = start;
                while end < bytes.len() && is_token(bytes[end]) {
                    end += 1;
                }
                if end - start >= 16 {
                    masks.push((start, end));
                    i = end;
                    continue;
                }
            }
            if let Some(name) = NAMES
                .iter()
                .filter(|n| starts_with_ignore_case(bytes, i, n))
                .max_by_key(|n| n.len())
                .filter(|n| bytes.get(i + n.len()).is_none_or(|b| !is_word(*b)))
            {
                // name, an optional closing quote, `=` or `:`, optional blanks and an opening quote.
                let mut j = i + name.len();
                while j < bytes.len() && matches!(bytes[j], b'"' | b'\'') {
                    j += 1;
                }
                if let Some(&sep) = bytes.get(j).filter(|b| matches!(b, b'=' | b':')) {
                    j += 1;
                    while j < bytes.len() && matches!(bytes[j], b' ' | b'"' | b'\'') {
                        j += 1;
                    }
                    let end = value_end(bytes, j);
                    // After a colon, short values are more likely prose than keys.
                    if end > j && (sep == b'=' || end - j >= 8) {
                        masks.push((j, end));
                        i = end;
                        continue;
                    }
                }
            }
        }
        i += 1;
    }
    if masks.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in masks {
        out.push_str(&text[last..start]);
        out.push_str(MASK);
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn credentials_are_masked() {
        let cases = [
            ("error sending request for url (http://user:hunter2@127.0.0.1:9/v1/chat/completions)", "hunter2"),
            ("http://127.0.0.1:9/v1?api_key=abc123/chat/completions", "abc123"),
            ("https://h/x?a=1&key=s3cr3t&b=2", "s3cr3t"),
            (r#"{"error": {"message": "bad", "api_key": "abcdefghijkl"}}"#, "abcdefghijkl"),
            ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "eyJhbGciOiJIUzI1NiJ9"),
            ("Incorrect API key provided: sk-proj-AbCdEfGhIjKlMnOpQrSt1234", "AbCdEfGhIjKlMnOpQrSt1234"),
            ("token hf_abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwxyz"),
            ("aws AKIAIOSFODNN7EXAMPLE1234", "IOSFODNN7EXAMPLE1234"),
            ("password=p@ss:word", "p@ss:word"),
        ];
        for (text, secret) in cases {
            let s = scrub(text);
            assert!(!s.contains(secret), "{text:?} → {s:?}");
            assert!(s.contains("***"), "{s:?}");
        }
    }

    #[test]
    fn ordinary_text_is_kept() {
        for text in [
            "HTTP 429: rate limited, try again in 20s",
            "invalid JSON: expected value at line 1 column 1",
            "monkey=banana; keyboard: qwerty",
            "cannot connect: tcp connect error: Connection refused (os error 111)",
            "the key: short",
            "http://127.0.0.1:8001/v1/chat/completions",
            "ünïcödé: ☃ skis-and-sleds",
        ] {
            assert_eq!(scrub(text), text);
        }
    }

    #[test]
    fn never_panics_on_odd_text() {
        for text in
            ["://", "://@", "a://x@", "key=", "key:", "Bearer ", "sk-", "=\u{1b}[2J", "ключ=значение", "token=☃☃"]
        {
            let _ = scrub(text);
        }
        assert_eq!(scrub("token=☃☃"), "token=***");
    }
}
