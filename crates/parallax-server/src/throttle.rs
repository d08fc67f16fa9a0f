//! Guessing tokens is slow: a client address that fails to authenticate
//! [`MAX_FAILURES`] times within [`WINDOW`] gets `429 Too Many Requests` for every request
//! carrying credentials until the window ends. Requests without credentials (public reads,
//! health) are never throttled, and a correct token does not lift the block early.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

pub const MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most (the oldest windows are forgotten first).
const REMEMBERED: usize = 10_000;

#[derive(Default)]
pub struct Throttle {
    /// Failures of each address in its current window, and when that window began.
    failures: Mutex<HashMap<Option<IpAddr>, (u32, Instant)>>,
}

impl Throttle {
    fn blocked(&self, ip: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let &(n, since) = failures.get(&ip)?;
        let left = WINDOW.checked_sub(now.duration_since(since)).filter(|d| !d.is_zero())?;
        (n >= MAX_FAILURES).then_some(left)
    }

    fn failed(&self, ip: Option<IpAddr>, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= REMEMBERED {
            failures.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
        }
        let entry = failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

/// Whether a request tries credentials: a bearer token, a sign-in, or a token in the
/// submit form.
fn credentialed(req: &Request) -> bool {
    req.headers().contains_key(header::AUTHORIZATION)
        || (req.method() == Method::POST && matches!(req.uri().path(), "/login" | "/jobs/new"))
}

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !credentialed(&req) {
        return next.run(req).await;
    }
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let throttle = state.throttle();
    if let Some(left) = throttle.blocked(ip, Instant::now()) {
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!("too many failed sign-ins from this address; try again in {} s", left.as_secs() + 1),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&(left.as_secs() + 1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let is_form = req.uri().path() == "/jobs/new";
    let response = next.run(req).await;
    let refused =
        response.status() == StatusCode::UNAUTHORIZED || (is_form && response.status() == StatusCode::FORBIDDEN);
    if refused {
        throttle.failed(ip, Instant::now());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures_until_the_window_ends() {
        let t = Throttle::default();
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        let start = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed(ip, start);
        }
        assert!(t.blocked(ip, start).is_none());
        t.failed(ip, start);
        assert!(t.blocked(ip, start).is_some());
        assert!(t.blocked(Some("10.0.0.2".parse().unwrap()), start).is_none(), "other addresses are not");
        assert!(t.blocked(ip, start + WINDOW).is_none(), "the window ends");
        t.failed(ip, start + WINDOW);
        assert!(t.blocked(ip, start + WINDOW).is_none(), "a new window starts from zero");
    }
}
