//! What to claim next. Per-endpoint slots and rates, and residency (only one in-process
//! model loaded at a time) decide how many items each endpoint may claim, whichever job
//! the items belong to (a job's own limits — its concurrency and pacing — are its slot's).
//! Owned by the scheduler task alone, so it needs no lock, and does no I/O, so each rule
//! can be read and tested alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::EndpointRuntime;
use crate::limits::{Gate, TokenBucket};
use parallax_providers::Provider;
use parallax_store::Claim;

/// One endpoint as the scheduler sees it.
pub(crate) struct Lane {
    pub name: String,
    pub provider: Arc<dyn Provider>,
    /// Keeps the endpoint's calls within its concurrency (claims may run ahead of them):
    /// a worker's share of it, when it shares the endpoint with other workers.
    pub permits: Option<Gate>,
    concurrency: Option<usize>,
    /// A worker's: it shares the endpoint's concurrency with other workers, and its gate is
    /// sized to its share (one job's run has all of it).
    shared: bool,
    /// Whether the last claim that asked this endpoint for items got any: a worker that
    /// found none wants no share of it (unless it holds items there), so that a worker
    /// holding items it cannot send yet is not kept waiting by shares nobody uses.
    found_work: bool,
    rate_per_s: Option<f64>,
    bucket: Option<TokenBucket>,
    /// Calls claimed and not yet returned.
    in_flight: usize,
    /// Index into [`Schedule::residencies`].
    residency: Option<usize>,
}

impl Lane {
    /// How many items per round of its calls it may hold: its share, else its concurrency.
    /// A share of none still allows one item: a worker without a share claims it, finds
    /// that it has work there and asks for a share.
    fn limit(&self) -> Option<usize> {
        self.permits.as_ref().map(|g| if self.shared { g.size().max(1) } else { g.size() })
    }
}

pub(crate) struct Schedule {
    /// Sorted by name, so the order of claims does not depend on a hash map's.
    lanes: Vec<Lane>,
    index: HashMap<String, usize>,
    /// What must be resident for in-process endpoints, in a fixed order; `active` is the
    /// one whose endpoints may claim now.
    residencies: Vec<String>,
    active: usize,
    /// Residencies moved past in a row without finding work.
    idle_turns: usize,
    /// Which endpoint asks first, rotating so none is always last.
    rotate: usize,
    /// How many items per endpoint slot may be claimed: 2 when claims run ahead of calls.
    ahead: usize,
}

/// What one round of claiming asks the store for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Wants {
    /// `(endpoint, n)`.
    pub per_endpoint: Vec<(String, usize)>,
    pub max_total: usize,
}

impl Schedule {
    /// With `shared`, endpoint limits are shared with other workers: each starts with no
    /// share until [`Schedule::set_share`] gives it one.
    pub fn new(endpoints: HashMap<String, EndpointRuntime>, claim_ahead: bool, shared: bool) -> Schedule {
        let mut endpoints: Vec<(String, EndpointRuntime)> = endpoints.into_iter().collect();
        endpoints.sort_by(|a, b| a.0.cmp(&b.0));
        let mut residencies: Vec<String> = endpoints.iter().filter_map(|(_, e)| e.residency.clone()).collect();
        residencies.sort_unstable();
        residencies.dedup();
        let lanes: Vec<Lane> = endpoints
            .into_iter()
            .map(|(name, e)| Lane {
                residency: e.residency.as_ref().and_then(|r| residencies.binary_search(r).ok()),
                permits: e.concurrency.map(|c| Gate::new(if shared { 0 } else { c })),
                shared: shared && e.concurrency.is_some(),
                found_work: true,
                bucket: e.rate_per_s.map(TokenBucket::new),
                rate_per_s: e.rate_per_s,
                concurrency: e.concurrency,
                provider: e.provider,
                in_flight: 0,
                name,
            })
            .collect();
        let index = lanes.iter().enumerate().map(|(i, l)| (l.name.clone(), i)).collect();
        Schedule {
            lanes,
            index,
            residencies,
            active: 0,
            idle_turns: 0,
            rotate: 0,
            ahead: if claim_ahead { 2 } else { 1 },
        }
    }

    /// How many items each endpoint may claim now for a job with `free` slots (`ahead`:
    /// whether the job's claims may run ahead of its calls). Endpoints of a residency other
    /// than the active one ask for nothing.
    pub fn wants(&mut self, free: usize, ahead: bool) -> Wants {
        let mut per_endpoint = Vec::new();
        if free == 0 {
            return Wants { per_endpoint, max_total: 0 };
        }
        let n_lanes = self.lanes.len();
        for k in 0..n_lanes {
            let i = (self.rotate + k) % n_lanes;
            let (active, ahead) = (self.active, if ahead { self.ahead } else { 1 });
            let lane = &mut self.lanes[i];
            if lane.residency.is_some_and(|r| r != active) {
                continue;
            }
            let cap = lane.limit().map_or(usize::MAX, |c| (ahead * c).saturating_sub(lane.in_flight));
            let rate = lane.bucket.as_mut().map_or(usize::MAX, TokenBucket::available);
            let n = free.min(cap).min(rate);
            if n > 0 {
                per_endpoint.push((lane.name.clone(), n));
            }
        }
        self.rotate = self.rotate.wrapping_add(1);
        Wants { per_endpoint, max_total: free }
    }

    /// The endpoint names, for asking the store which jobs have work here.
    pub fn endpoint_names(&self) -> Vec<String> {
        self.lanes.iter().map(|l| l.name.clone()).collect()
    }

    pub fn lane_of(&self, endpoint: &str) -> Option<usize> {
        self.index.get(endpoint).copied()
    }

    /// An endpoint's rate (calls a second), if it has one.
    pub fn rate_of(&self, endpoint: &str) -> Option<f64> {
        self.lane_of(endpoint).and_then(|i| self.lanes[i].rate_per_s)
    }

    /// The endpoints whose concurrency is shared with other workers: `(lane, concurrency,
    /// what this worker wants of it, calls holding a slot now)`. It wants all of it while it
    /// has items there or found some last time, and none otherwise.
    pub fn shared(&self) -> Vec<(usize, usize, usize, usize)> {
        let lanes = self.lanes.iter().enumerate();
        lanes
            .filter(|(_, l)| l.shared)
            .filter_map(|(i, l)| {
                let cap = l.concurrency?;
                let want = if l.found_work || l.in_flight > 0 { cap } else { 0 };
                Some((i, cap, want, l.permits.as_ref().map_or(0, Gate::outstanding)))
            })
            .collect()
    }

    /// A claim asked `asked` items of lane `i` and got `got`. True when it found work
    /// there again after none (its share should be asked for at once).
    pub fn found(&mut self, i: usize, asked: usize, got: usize) -> bool {
        let lane = &mut self.lanes[i];
        let again = asked > 0 && got > 0 && !lane.found_work;
        if asked > 0 {
            lane.found_work = got > 0;
        }
        again
    }

    /// Lane `i`'s share of its endpoint's concurrency is now `granted`.
    pub fn set_share(&mut self, i: usize, granted: usize) {
        let lane = &mut self.lanes[i];
        if let Some(gate) = lane.permits.as_ref().filter(|_| lane.shared) {
            gate.resize(granted);
        }
    }

    /// Closes every endpoint's gate: the run stops (see [`Gate::close`]).
    pub fn close_gates(&self) {
        self.lanes.iter().filter_map(|l| l.permits.as_ref()).for_each(Gate::close);
    }

    pub fn lane(&self, i: usize) -> &Lane {
        &self.lanes[i]
    }

    /// Whether the resident model has calls in flight (asked before a round of claims).
    pub fn resident_busy(&self) -> bool {
        let active = Some(self.active);
        self.lanes.iter().any(|l| l.residency == active && l.in_flight > 0)
    }

    /// Whether any of these claims is for the resident model.
    pub fn for_resident(&self, claims: &[Claim]) -> bool {
        let active = Some(self.active);
        claims.iter().any(|c| self.lane_of(&c.endpoint).is_some_and(|i| self.lanes[i].residency == active))
    }

    /// After a round of claims: when the resident model had nothing in flight before it
    /// (`busy`) and nothing was claimed for it, the next residency gets its turn. Returns
    /// true when the caller should claim again at once (nothing was claimed at all).
    pub fn after_round(&mut self, claimed_resident: bool, busy: bool, claimed_any: bool) -> bool {
        if self.residencies.is_empty() {
            return false;
        }
        if claimed_resident || busy {
            self.idle_turns = 0;
            false
        } else if self.idle_turns < self.residencies.len() {
            self.active = (self.active + 1) % self.residencies.len();
            self.idle_turns += 1;
            !claimed_any
        } else {
            false
        }
    }

    /// After a wait, work may have come due for any model: look at each again.
    pub fn waited(&mut self) {
        self.idle_turns = 0;
    }

    /// A call of lane `i` was claimed: it takes a rate token and a slot.
    pub fn claimed(&mut self, i: usize) {
        let lane = &mut self.lanes[i];
        if let Some(b) = lane.bucket.as_mut() {
            b.take();
        }
        lane.in_flight += 1;
    }

    /// A call of lane `i` returned: its slot is free.
    pub fn freed(&mut self, i: usize) {
        self.lanes[i].in_flight -= 1;
    }

    /// How long until an endpoint's rate allows one more call; `None` if none is waiting.
    pub fn refill_wait(&self) -> Option<Duration> {
        self.lanes
            .iter()
            .filter_map(|l| l.bucket.as_ref())
            .map(TokenBucket::time_to_next)
            .filter(|d| !d.is_zero())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parallax_core::{EndpointKind, ItemKey};
    use parallax_providers::{SendError, SendFuture, SendRequest};

    struct Never;
    impl Provider for Never {
        fn send<'a>(&'a self, _: SendRequest<'a>) -> SendFuture<'a> {
            Box::pin(async { Err(SendError::Connect("never".into())) })
        }
    }

    fn runtime(concurrency: Option<usize>, residency: Option<&str>) -> EndpointRuntime {
        EndpointRuntime {
            provider: Arc::new(Never),
            concurrency,
            rate_per_s: None,
            residency: residency.map(str::to_owned),
        }
    }

    fn claim(endpoint: &str) -> Claim {
        Claim {
            execution_id: 1,
            attempt_id: 1,
            lease_token: "t".into(),
            key: ItemKey { question_id: "q".into(), model_id: "m".into(), region: "r".into(), sample: 0 },
            endpoint: endpoint.into(),
            kind: EndpointKind::OpenAiChat,
            requested_model: "m".into(),
            model_aliases: vec![],
            request_body: vec![],
            idempotency_key: "k".into(),
            attempt_in_budget: 1,
            question_text: "q?".into(),
        }
    }

    #[test]
    fn an_endpoint_asks_for_no_more_than_its_slots_ahead_of_its_calls() {
        let endpoints =
            HashMap::from([("r/a".to_owned(), runtime(Some(3), None)), ("r/b".to_owned(), runtime(None, None))]);
        let mut s = Schedule::new(endpoints, true, false);
        let w = s.wants(100, true);
        assert_eq!(w.max_total, 100);
        assert!(w.per_endpoint.contains(&("r/a".to_owned(), 6)), "{w:?}");
        assert!(w.per_endpoint.contains(&("r/b".to_owned(), 100)), "{w:?}");
        let a = s.lane_of("r/a").unwrap();
        for _ in 0..6 {
            s.claimed(a);
        }
        assert!(!s.wants(100, true).per_endpoint.iter().any(|(e, _)| e == "r/a"), "a full endpoint asks for nothing");
        s.freed(a);
        assert!(s.wants(100, true).per_endpoint.contains(&("r/a".to_owned(), 1)));
    }

    #[test]
    fn no_free_slot_means_no_claim() {
        let mut s = Schedule::new(HashMap::from([("r/a".to_owned(), runtime(None, None))]), false, false);
        assert_eq!(s.wants(0, true), Wants { per_endpoint: vec![], max_total: 0 });
    }

    #[test]
    fn endpoints_take_turns_asking_first() {
        let endpoints =
            HashMap::from([("r/a".to_owned(), runtime(None, None)), ("r/b".to_owned(), runtime(None, None))]);
        let mut s = Schedule::new(endpoints, false, false);
        let first: Vec<String> = (0..4).map(|_| s.wants(1, true).per_endpoint[0].0.clone()).collect();
        assert_eq!(first, ["r/a", "r/b", "r/a", "r/b"]);
    }

    #[test]
    fn one_residency_claims_at_a_time_and_moves_on_when_it_has_nothing_left() {
        let endpoints = HashMap::from([
            ("r/e/m1".to_owned(), runtime(Some(1), Some("/models/one.gguf"))),
            ("r/e/m2".to_owned(), runtime(Some(1), Some("/models/two.gguf"))),
            ("r/http".to_owned(), runtime(None, None)),
        ]);
        let mut s = Schedule::new(endpoints, false, false);
        let asked = |w: &Wants| w.per_endpoint.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>();
        let w = s.wants(8, true);
        assert!(asked(&w).contains(&"r/e/m1".to_owned()) && !asked(&w).contains(&"r/e/m2".to_owned()), "{w:?}");
        assert!(asked(&w).contains(&"r/http".to_owned()), "HTTP endpoints are never held back");
        // m1 claimed something: it stays resident while its call is in flight.
        let round = |s: &mut Schedule, claims: &[Claim]| {
            let busy = s.resident_busy();
            let resident = s.for_resident(claims);
            s.after_round(resident, busy, !claims.is_empty())
        };
        assert!(!round(&mut s, &[claim("r/e/m1")]));
        s.claimed(s.lane_of("r/e/m1").unwrap());
        assert!(!round(&mut s, &[]));
        assert!(!asked(&s.wants(8, true)).contains(&"r/e/m2".to_owned()));
        // Its call returned and nothing more was claimed for it: m2's turn, at once.
        s.freed(s.lane_of("r/e/m1").unwrap());
        assert!(round(&mut s, &[]));
        let w = s.wants(8, true);
        assert!(asked(&w).contains(&"r/e/m2".to_owned()) && !asked(&w).contains(&"r/e/m1".to_owned()), "{w:?}");
        // Neither has work: after one round each, it stops moving until a wait.
        assert!(round(&mut s, &[]));
        assert!(!round(&mut s, &[]));
        s.waited();
        assert!(round(&mut s, &[]));
        // Work claimed for another endpoint (HTTP) moves the residency on, without an immediate retry.
        assert!(!round(&mut s, &[claim("r/http")]));
    }
}
