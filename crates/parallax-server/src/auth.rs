//! Who may do what: bearer tokens for the API, session cookies and CSRF tokens for the
//! portal.
//!
//! The server keeps only the SHA-256 of each token. A browser signs in with a token once
//! and gets a session cookie: `<expiry>.<token hash prefix>.<HMAC>`, signed with the
//! session key. Servers that share `PARALLAX_SESSION_KEY` (and their tokens) accept each
//! other's cookies, so a portal behind a load balancer keeps its sessions; without it each
//! process draws a key of its own and sessions end when it stops. Revoking a token (taking
//! it out of the token file) ends its sessions too: the cookie names its token's hash.
//!
//! Forms carry a CSRF token: the HMAC of the session cookie, so it needs no server state
//! either, and a page of another origin can neither read nor forge it.

use std::path::Path;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "parallax_session";
/// How long a sign-in lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;

/// Tokens (as hashes) and the key that signs sessions.
#[derive(Clone)]
pub struct Auth {
    tokens: Vec<[u8; 32]>,
    key: [u8; 32],
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither hashes nor the key belong in a log.
        write!(f, "Auth {{ {} tokens }}", self.tokens.len())
    }
}

impl Auth {
    /// `tokens`: the tokens' hashes. `session_key`: any secret text shared by the servers
    /// that should accept each other's sessions; `None` draws a random one.
    pub fn new(tokens: Vec<[u8; 32]>, session_key: Option<&str>) -> Auth {
        let key = match session_key {
            Some(k) => Sha256::digest(k.as_bytes()).into(),
            None => rand::random(),
        };
        Auth { tokens, key }
    }

    /// The tokens of `PARALLAX_API_TOKEN` (`env_token`) and of a token file: one per line,
    /// either the token itself or `sha256:<64 hex digits>` (so the file need not hold a
    /// secret); blank lines and `#` comments are skipped. Errors name the file and line,
    /// never the token.
    pub fn tokens_from(env_token: Option<&str>, file: Option<&Path>) -> Result<Vec<[u8; 32]>, String> {
        let mut tokens = Vec::new();
        if let Some(t) = env_token.map(str::trim).filter(|t| !t.is_empty()) {
            tokens.push(hash(t));
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the token file `{}`: {e}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match line.strip_prefix("sha256:") {
                    Some(digest) => {
                        let bytes = hex::decode(digest.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
                        let Some(bytes) = bytes else {
                            return Err(format!(
                                "{}:{}: `sha256:` must be followed by 64 hex digits (the SHA-256 of a token)",
                                path.display(),
                                i + 1
                            ));
                        };
                        tokens.push(bytes);
                    }
                    None if line.len() < 16 => {
                        return Err(format!(
                            "{}:{}: a token must be at least 16 characters long",
                            path.display(),
                            i + 1
                        ));
                    }
                    None => tokens.push(hash(line)),
                }
            }
        }
        Ok(tokens)
    }

    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Which token this is, if it is one.
    fn token_index(&self, token: &str) -> Option<usize> {
        let h = hash(token);
        // Every hash is compared in full, so the time taken says nothing about which matched.
        let mut found = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if constant_time_eq(t, &h) && found.is_none() {
                found = Some(i);
            }
        }
        found
    }

    pub fn token_ok(&self, token: &str) -> bool {
        self.token_index(token).is_some()
    }

    /// The request carries `Authorization: Bearer <a known token>`.
    pub fn bearer(&self, headers: &HeaderMap) -> bool {
        headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .is_some_and(|t| self.token_ok(t.trim()))
    }

    /// A session cookie for the token, valid from `now_s` (Unix seconds); `None` if the
    /// token is not known.
    pub fn sign_in(&self, token: &str, now_s: i64) -> Option<String> {
        let i = self.token_index(token)?;
        let expiry = now_s + SESSION_SECONDS;
        let token_hash = hex::encode(self.tokens[i]);
        Some(format!("{expiry}.{}.{}", &token_hash[..16], self.mac(&format!("session|{expiry}|{token_hash}"))))
    }

    /// The request's session cookie, if it is valid at `now_s`.
    pub fn session(&self, headers: &HeaderMap, now_s: i64) -> Option<String> {
        let value = cookie(headers, SESSION_COOKIE)?;
        let mut parts = value.splitn(3, '.');
        let (expiry, prefix, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let expiry: i64 = expiry.parse().ok()?;
        if expiry <= now_s {
            return None;
        }
        let valid = self.tokens.iter().map(hex::encode).filter(|h| h.starts_with(prefix)).any(|token_hash| {
            let expected = self.mac(&format!("session|{expiry}|{token_hash}"));
            constant_time_eq(expected.as_bytes(), mac.as_bytes())
        });
        valid.then(|| value.to_owned())
    }

    /// The CSRF token for forms of this session.
    pub fn csrf(&self, session: &str) -> String {
        self.mac(&format!("csrf|{session}"))
    }

    pub fn csrf_ok(&self, session: &str, given: &str) -> bool {
        constant_time_eq(self.csrf(session).as_bytes(), given.as_bytes())
    }

    fn mac(&self, message: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A fresh random token (48 hex digits), for a server started without one.
pub fn draw_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// The SHA-256 of a token: all the server keeps of it.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&format!("other=1; {SESSION_COOKIE}={value}")).unwrap());
        h
    }

    #[test]
    fn sessions_are_signed_expire_and_end_with_their_token() {
        let token = "a-token-of-some-length";
        let auth = Auth::new(vec![hash(token)], Some("shared key"));
        assert!(auth.sign_in("not the token", 0).is_none());
        let cookie = auth.sign_in(token, 1_000).unwrap();
        assert!(!cookie.contains(token) && !cookie.contains(&hex::encode(hash(token))));
        assert_eq!(auth.session(&with_cookie(&cookie), 1_000).as_deref(), Some(cookie.as_str()));
        assert!(auth.session(&with_cookie(&cookie), 1_000 + SESSION_SECONDS).is_none(), "expired");
        // Another server with the same key and tokens accepts it; with another key, not.
        assert!(Auth::new(vec![hash(token)], Some("shared key")).session(&with_cookie(&cookie), 1_000).is_some());
        assert!(Auth::new(vec![hash(token)], Some("other key")).session(&with_cookie(&cookie), 1_000).is_none());
        // Its token revoked, the session ends.
        assert!(
            Auth::new(vec![hash("another-token-here")], Some("shared key"))
                .session(&with_cookie(&cookie), 1_000)
                .is_none()
        );
        // Tampering with the expiry breaks the signature.
        let (expiry, rest) = cookie.split_once('.').unwrap();
        let later = format!("{}.{rest}", expiry.parse::<i64>().unwrap() + 1_000_000);
        assert!(auth.session(&with_cookie(&later), 1_000).is_none());
        let csrf = auth.csrf(&cookie);
        assert!(auth.csrf_ok(&cookie, &csrf));
        assert!(!auth.csrf_ok(&later, &csrf));
    }

    #[test]
    fn token_files_take_tokens_and_hashes_and_name_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        let digest = hex::encode(hash("hashed-token-123456"));
        std::fs::write(&file, format!("# team tokens\n\nplain-token-1234567\nsha256:{digest}\n")).unwrap();
        let tokens = Auth::tokens_from(Some("env-token-12345678"), Some(&file)).unwrap();
        let auth = Auth::new(tokens, None);
        for t in ["env-token-12345678", "plain-token-1234567", "hashed-token-123456"] {
            assert!(auth.token_ok(t), "{t}");
        }
        assert!(!auth.token_ok("sha256:".to_owned().as_str()));
        std::fs::write(&file, "short\n").unwrap();
        let e = Auth::tokens_from(None, Some(&file)).unwrap_err();
        assert!(e.contains(":1:") && !e.contains("short"), "{e}");
        std::fs::write(&file, "sha256:abc\n").unwrap();
        assert!(Auth::tokens_from(None, Some(&file)).unwrap_err().contains("64 hex digits"));
    }

    #[test]
    fn bearer_needs_a_known_token() {
        let auth = Auth::new(vec![hash("a-token-of-some-length")], None);
        let mut h = HeaderMap::new();
        assert!(!auth.bearer(&h));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a-token-of-some-length"));
        assert!(auth.bearer(&h));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer wrong"));
        assert!(!auth.bearer(&h));
    }
}
