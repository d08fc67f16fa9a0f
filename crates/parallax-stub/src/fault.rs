//! Injected faults and the deterministic rule that decides which request gets one.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A failure the stub injects instead of (or into) a normal answer.
///
/// Every variant targets a deterministic subset of idempotency keys
/// (`fraction` of them, chosen by hashing the key) and, for those keys, only
/// the first `first_n_attempts` requests the stub has received for that key.
/// That is exactly the shape a client retry loop has to survive: "this
/// request fails N times, then succeeds". Because the choice depends only on
/// the key and the per-key attempt counter, a test run is reproducible and a
/// test can predict the outcome with [`StubConfig::planned_fault`].
///
/// Faults are applied after the request is counted, the latency has elapsed
/// and the API key (if required) has been checked, but before the body is
/// decoded, like an overloaded upstream would; only [`Fault::BrokenBody`]
/// needs a valid request, since it corrupts the real answer.
///
/// [`StubConfig::planned_fault`]: crate::StubConfig::planned_fault
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with an HTTP error status and an OpenAI-style error body
    /// (`{"error":{"message":..,"type":..,"param":null,"code":..}}`), plus a
    /// `Retry-After` header when `retry_after_s` is set (typical for 429/503).
    Status {
        /// HTTP status to return; must be in `400..=599`.
        status: u16,
        /// How many requests per selected key get the fault (1 = only the first).
        first_n_attempts: u32,
        /// Value of the `Retry-After` header, in seconds, if any.
        retry_after_s: Option<u64>,
        /// Share of idempotency keys affected, in `0.0..=1.0`.
        fraction: f64,
    },
    /// Never answer (the handler sleeps for an hour), so the client's own
    /// timeout has to fire.
    Hang {
        /// How many requests per selected key get the fault.
        first_n_attempts: u32,
        /// Share of idempotency keys affected, in `0.0..=1.0`.
        fraction: f64,
    },
    /// Answer `200 OK` with a JSON body cut in half, so that transport
    /// succeeds but decoding fails.
    BrokenBody {
        /// How many requests per selected key get the fault.
        first_n_attempts: u32,
        /// Share of idempotency keys affected, in `0.0..=1.0`.
        fraction: f64,
    },
    /// Read the whole request, then abort the TCP connection (RST) without
    /// writing any response byte. The server, not the client, decides when
    /// the request "died", which is the hardest case for exactly-once
    /// accounting.
    Reset {
        /// How many requests per selected key get the fault.
        first_n_attempts: u32,
        /// Share of idempotency keys affected, in `0.0..=1.0`.
        fraction: f64,
    },
}

impl Fault {
    /// How many requests per selected key are affected.
    pub fn first_n_attempts(&self) -> u32 {
        match *self {
            Fault::Status { first_n_attempts, .. }
            | Fault::Hang { first_n_attempts, .. }
            | Fault::BrokenBody { first_n_attempts, .. }
            | Fault::Reset { first_n_attempts, .. } => first_n_attempts,
        }
    }

    /// Share of idempotency keys that are affected, in `0.0..=1.0`.
    pub fn fraction(&self) -> f64 {
        match *self {
            Fault::Status { fraction, .. }
            | Fault::Hang { fraction, .. }
            | Fault::BrokenBody { fraction, .. }
            | Fault::Reset { fraction, .. } => fraction,
        }
    }

    /// Whether this fault, at position `index` in the fault list, hits the
    /// `attempt`-th (1-based) request for `key`.
    ///
    /// The position salts the key hash so that two faults with the same
    /// fraction select independent sets of keys rather than the same ones.
    pub fn applies(&self, index: usize, key: &str, attempt: u64) -> bool {
        attempt >= 1
            && attempt <= u64::from(self.first_n_attempts())
            && key_position(key, index as u64) < self.fraction()
    }

    /// Checks that the fault is well formed; returns a human-readable reason otherwise.
    pub fn validate(&self) -> Result<(), FaultSpecError> {
        let fraction = self.fraction();
        if !(0.0..=1.0).contains(&fraction) {
            return Err(FaultSpecError::Fraction(fraction.to_string()));
        }
        if let Fault::Status { status, .. } = *self {
            if !(400..=599).contains(&status) {
                return Err(FaultSpecError::Kind(status.to_string()));
            }
        }
        Ok(())
    }
}

/// Maps `(key, salt)` to a point in `[0, 1)`, uniformly and stably across
/// platforms and releases (SHA-256, not `std`'s randomized hasher), so a key
/// selected by a fault today is selected tomorrow too.
pub fn key_position(key: &str, salt: u64) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(salt.to_le_bytes());
    hasher.update(key.as_bytes());
    let digest: [u8; 32] = hasher.finalize().into();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // Keep 53 bits so the conversion to f64 is exact.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Why a fault specification (CLI syntax, see [`Fault::from_str`]) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    /// The kind is neither an HTTP status in 400..=599 nor a known keyword.
    #[error("unknown fault kind {0:?}: expected an HTTP status 400..=599, `hang`, `broken` or `reset`")]
    Kind(String),
    /// `FIRST_N` is not a non-negative integer.
    #[error("invalid FIRST_N {0:?}: expected a non-negative integer")]
    FirstN(String),
    /// `FRACTION` is not a number in `0..=1`.
    #[error("invalid FRACTION {0:?}: expected a number between 0 and 1")]
    Fraction(String),
    /// `RETRY_AFTER_S` is not a non-negative integer.
    #[error("invalid RETRY_AFTER_S {0:?}: expected a non-negative integer number of seconds")]
    RetryAfter(String),
    /// `RETRY_AFTER_S` was given for a fault that is not an HTTP status.
    #[error("RETRY_AFTER_S is only meaningful for HTTP status faults")]
    RetryAfterNotStatus,
    /// More than four `:`-separated fields.
    #[error("too many fields: expected KIND[:FIRST_N[:FRACTION[:RETRY_AFTER_S]]]")]
    TooManyFields,
}

/// Parses the compact CLI syntax `KIND[:FIRST_N[:FRACTION[:RETRY_AFTER_S]]]`.
///
/// * `KIND`: an HTTP status (`500`, `429`, ...), `hang`, `broken` (or
///   `broken-body`) or `reset`.
/// * `FIRST_N`: affected requests per selected key, default `1`.
/// * `FRACTION`: share of keys affected, default `1` (all keys).
/// * `RETRY_AFTER_S`: `Retry-After` seconds, status faults only.
///
/// Examples: `500:1:0.2`, `429:2:0.5:1`, `reset:1:0.1`, `hang`.
impl FromStr for Fault {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = spec.trim().split(':').map(str::trim).collect();
        if fields.len() > 4 {
            return Err(FaultSpecError::TooManyFields);
        }
        let kind = fields[0].to_ascii_lowercase();
        let first_n_attempts = match fields.get(1) {
            None | Some(&"") => 1,
            Some(s) => s.parse::<u32>().map_err(|_| FaultSpecError::FirstN((*s).to_owned()))?,
        };
        let fraction = match fields.get(2) {
            None | Some(&"") => 1.0,
            Some(s) => s
                .parse::<f64>()
                .ok()
                .filter(|f| (0.0..=1.0).contains(f))
                .ok_or_else(|| FaultSpecError::Fraction((*s).to_owned()))?,
        };
        let retry_after_s = match fields.get(3) {
            None | Some(&"") => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| FaultSpecError::RetryAfter((*s).to_owned()))?),
        };
        let fault = match kind.as_str() {
            "hang" | "broken" | "broken-body" | "reset" if retry_after_s.is_some() => {
                return Err(FaultSpecError::RetryAfterNotStatus);
            }
            "hang" => Fault::Hang { first_n_attempts, fraction },
            "broken" | "broken-body" => Fault::BrokenBody { first_n_attempts, fraction },
            "reset" => Fault::Reset { first_n_attempts, fraction },
            other => match other.parse::<u16>() {
                Ok(status) if (400..=599).contains(&status) => {
                    Fault::Status { status, first_n_attempts, retry_after_s, fraction }
                }
                _ => return Err(FaultSpecError::Kind(fields[0].to_owned())),
            },
        };
        Ok(fault)
    }
}

/// Formats the fault in the CLI syntax accepted by [`Fault::from_str`].
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Status { status, first_n_attempts, retry_after_s, fraction } => {
                write!(f, "{status}:{first_n_attempts}:{fraction}")?;
                if let Some(secs) = retry_after_s {
                    write!(f, ":{secs}")?;
                }
                Ok(())
            }
            Fault::Hang { first_n_attempts, fraction } => write!(f, "hang:{first_n_attempts}:{fraction}"),
            Fault::BrokenBody { first_n_attempts, fraction } => write!(f, "broken:{first_n_attempts}:{fraction}"),
            Fault::Reset { first_n_attempts, fraction } => write!(f, "reset:{first_n_attempts}:{fraction}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_short_specs() {
        assert_eq!(
            "500:1:0.2".parse::<Fault>(),
            Ok(Fault::Status { status: 500, first_n_attempts: 1, retry_after_s: None, fraction: 0.2 })
        );
        assert_eq!(
            "429:2:0.5:3".parse::<Fault>(),
            Ok(Fault::Status { status: 429, first_n_attempts: 2, retry_after_s: Some(3), fraction: 0.5 })
        );
        assert_eq!("reset".parse::<Fault>(), Ok(Fault::Reset { first_n_attempts: 1, fraction: 1.0 }));
        assert_eq!("HANG:3".parse::<Fault>(), Ok(Fault::Hang { first_n_attempts: 3, fraction: 1.0 }));
        assert_eq!("broken-body::0.5".parse::<Fault>(), Ok(Fault::BrokenBody { first_n_attempts: 1, fraction: 0.5 }));
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(matches!("200".parse::<Fault>(), Err(FaultSpecError::Kind(_))));
        assert!(matches!("boom".parse::<Fault>(), Err(FaultSpecError::Kind(_))));
        assert!(matches!("500:x".parse::<Fault>(), Err(FaultSpecError::FirstN(_))));
        assert!(matches!("500:1:1.5".parse::<Fault>(), Err(FaultSpecError::Fraction(_))));
        assert!(matches!("500:1:NaN".parse::<Fault>(), Err(FaultSpecError::Fraction(_))));
        assert_eq!("reset:1:1:5".parse::<Fault>(), Err(FaultSpecError::RetryAfterNotStatus));
        assert_eq!("500:1:1:5:6".parse::<Fault>(), Err(FaultSpecError::TooManyFields));
    }

    #[test]
    fn display_round_trips() {
        for spec in ["500:1:0.2", "429:2:0.5:3", "hang:1:1", "broken:2:0.25", "reset:1:0"] {
            let fault: Fault = spec.parse().expect("valid spec");
            assert_eq!(fault.to_string().parse::<Fault>(), Ok(fault));
        }
    }

    #[test]
    fn fraction_selects_about_that_share_of_keys() {
        let fault = Fault::Status { status: 500, first_n_attempts: 1, retry_after_s: None, fraction: 0.2 };
        let hit = (0..10_000).filter(|i| fault.applies(0, &format!("key-{i}"), 1)).count();
        assert!((1_800..=2_200).contains(&hit), "hit {hit} of 10000");
        // Only the first attempt is affected.
        assert!((0..1_000).all(|i| !fault.applies(0, &format!("key-{i}"), 2)));
        assert!((0..1_000).all(|i| !fault.applies(0, &format!("key-{i}"), 0)));
    }

    #[test]
    fn key_position_is_stable_and_in_range() {
        let a = key_position("abc", 0);
        assert_eq!(a, key_position("abc", 0));
        assert_ne!(a, key_position("abc", 1));
        assert!((0.0..1.0).contains(&a));
    }
}
