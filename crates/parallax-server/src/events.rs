//! `GET /api/v1/jobs/{id}/events`: server-sent events, read from the store.
//!
//! Each execution carries the number of its latest event (an end reached, a label
//! written), from the store (see `Store::events`). The stream sends every execution of the
//! job whose number is above the one the client saw last — `Last-Event-ID` when it
//! reconnects, `?after=` when it starts from a page rendered at a known point, else 0 —
//! and below the store's horizon, in order, as `event: execution` with that number as the
//! event id; then `event: progress` with the job's counts. Any server sharing the store
//! answers a resumed stream the same way, so a client that reconnects misses nothing.
//!
//! One task per server moves the horizon on (every [`HORIZON_EVERY`]) and wakes the
//! streams; a comment line every 15 s keeps proxies from closing an idle one.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use parallax_store::Store;
use serde::Deserialize;
use tokio::sync::watch;
use utoipa::IntoParams;

use crate::AppState;
use crate::api::{Execution, JobView, require_read};
use crate::error::ApiError;

/// How often the horizon is moved on: the longest a finished execution waits for its
/// event, besides the store's own commit.
pub const HORIZON_EVERY: Duration = Duration::from_millis(100);
/// Executions read per query.
const BATCH: usize = 500;

/// Keeps a watch channel at the store's event horizon until the server stops.
pub fn horizon(store: Store) -> watch::Receiver<i64> {
    let (tx, rx) = watch::channel(0);
    tokio::spawn(async move {
        loop {
            match store.event_horizon().await {
                Ok(h) => {
                    tx.send_if_modified(|old| {
                        let moved = h > *old;
                        *old = (*old).max(h);
                        moved
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the event horizon"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(HORIZON_EVERY).await;
        }
    });
    rx
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after this event id (as `Last-Event-ID` does; the header wins).
    pub after: Option<i64>,
}

/// A job's live events.
#[utoipa::path(
    get, path = "/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path, description = "The job id"), EventsQuery,
           ("Last-Event-ID" = Option<i64>, Header, description = "The last event id seen: resume after it")),
    responses(
        (status = 200, description = "`text/event-stream`: `execution` events (data: an Execution, id: its event number) and `progress` events (data: a JobView)", content_type = "text/event-stream", body = String),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError)
    )
)]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(job): Path<String>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    require_read(&state, &headers)?;
    let q = crate::api::query(q)?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::bad_request("`Last-Event-ID` must be an event id this server sent"))?,
        ),
        None => None,
    };
    let after = resume.or(q.after).unwrap_or(0).max(0);
    let status = state.store().status(&job).await?; // 404 for an unknown job
    let feed = Feed {
        store: state.store().clone(),
        job,
        last: after,
        horizon: state.horizon(),
        closing: state.closing(),
        queued: VecDeque::from([progress(&status)]),
        first: true,
        failed: false,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct Feed {
    store: Store,
    job: String,
    last: i64,
    horizon: watch::Receiver<i64>,
    closing: watch::Receiver<bool>,
    queued: VecDeque<Event>,
    first: bool,
    failed: bool,
}

impl Feed {
    /// The next event; `None` ends the stream (the store failed: the client reconnects
    /// with its last event id and misses nothing).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Some(e);
            }
            if self.failed {
                return None;
            }
            if *self.closing.borrow() {
                return None;
            }
            if !self.first {
                tokio::select! {
                    changed = self.horizon.changed() => if changed.is_err() { return None },
                    _ = self.closing.changed() => return None,
                }
            }
            self.first = false;
            let upto = *self.horizon.borrow_and_update();
            if let Err(e) = self.read(upto).await {
                tracing::warn!(error = %e, job = %self.job, "event stream ends: the store failed");
                self.failed = true;
            }
        }
    }

    async fn read(&mut self, upto: i64) -> Result<(), parallax_store::StoreError> {
        let mut any = false;
        loop {
            let rows = self.store.events(&self.job, self.last, upto, BATCH).await?;
            let n = rows.len();
            for row in rows {
                let seq = row.event_seq.unwrap_or(self.last);
                self.last = self.last.max(seq);
                let data = serde_json::to_string(&Execution::from(row)).unwrap_or_default();
                self.queued.push_back(Event::default().event("execution").id(seq.to_string()).data(data));
                any = true;
            }
            if n < BATCH {
                break;
            }
        }
        if any {
            let status = self.store.status(&self.job).await?;
            self.queued.push_back(progress(&status));
        }
        Ok(())
    }
}

fn progress(status: &parallax_store::JobStatus) -> Event {
    Event::default().event("progress").data(serde_json::to_string(&JobView::from(status)).unwrap_or_default())
}
