//! Crash points for tests of the ledger's crash table (`LEDGER.md`): the process aborts,
//! without unwinding or cleanup, when the n-th execution reaches the named point. Off
//! unless a caller sets them; the CLI reads them from `PARALLAX_TEST_CRASH`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The claim and its attempt rows are committed; the request has not been sent.
    AfterClaim,
    /// The answer has arrived; it is not recorded yet.
    AfterSend,
    /// The answer is recorded; it has not been reported.
    AfterFinish,
}

impl CrashPoint {
    pub fn parse(s: &str) -> Option<CrashPoint> {
        match s {
            "after-claim" => Some(CrashPoint::AfterClaim),
            "after-send" => Some(CrashPoint::AfterSend),
            "after-finish" => Some(CrashPoint::AfterFinish),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    crash: Option<(CrashPoint, u64, Arc<AtomicU64>)>,
    /// Panic in the n-th call task, after its answer arrived.
    panic: Option<(u64, Arc<AtomicU64>)>,
}

impl TestHooks {
    /// Abort when the `nth` execution (from 1) reaches `point`.
    pub fn crash_at(point: CrashPoint, nth: u64) -> TestHooks {
        TestHooks { crash: Some((point, nth.max(1), Arc::new(AtomicU64::new(0)))), panic: None }
    }

    /// Also panic in the `nth` call (from 1) once its answer has arrived, as a bug in
    /// answer handling would: the run must record that attempt as failed and go on.
    pub fn panic_in_call_at(mut self, nth: u64) -> TestHooks {
        self.panic = Some((nth.max(1), Arc::new(AtomicU64::new(0))));
        self
    }

    pub(crate) fn panic_in_call(&self) {
        if let Some((nth, seen)) = &self.panic
            && seen.fetch_add(1, Ordering::SeqCst) + 1 == *nth
        {
            panic!("test hook: a panic in call {nth}");
        }
    }

    /// Counts `n` executions reaching `point`; aborts the process at the configured one.
    pub(crate) fn reached(&self, point: CrashPoint, n: u64) {
        if let Some((at, nth, seen)) = &self.crash
            && *at == point
            && n > 0
            && seen.fetch_add(n, Ordering::SeqCst) + n >= *nth
        {
            eprintln!("test hook: crashing {point:?}");
            std::process::abort();
        }
    }
}
