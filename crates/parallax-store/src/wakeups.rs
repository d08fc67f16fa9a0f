//! Wake-ups for idle workers: a hint that work may have arrived, never the work itself.
//!
//! On PostgreSQL a worker keeps one connection of its own (outside the pool) that
//! `LISTEN`s on `parallax_work`; `enqueue` and `cancel_job` notify it when they commit. A
//! lost listening connection is re-opened with capped backoff, and every (re)connect also
//! wakes the worker once, since notices sent meanwhile are lost. A notice can always be
//! missed, so a waiting worker polls anyway, just rarely. SQLite has no notices: the
//! worker polls.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub struct Wakeups {
    notify: Arc<Notify>,
    listener: Option<JoinHandle<()>>,
}

/// The channel `enqueue` and `cancel_job` notify on.
pub(crate) const CHANNEL: &str = "parallax_work";

impl Wakeups {
    /// Wake-ups by polling only.
    pub(crate) fn polling() -> Wakeups {
        Wakeups { notify: Arc::new(Notify::new()), listener: None }
    }

    /// Wake-ups from `LISTEN` on a connection of its own, made from `config`.
    pub(crate) fn listening(config: tokio_postgres::Config) -> Wakeups {
        let notify = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(config, notify.clone()));
        Wakeups { notify, listener: Some(listener) }
    }

    /// Whether notices can arrive (PostgreSQL), or only the poll (SQLite).
    pub fn listens(&self) -> bool {
        self.listener.is_some()
    }

    /// Waits for a notice, or `poll` at most.
    pub async fn wait(&self, poll: Duration) {
        let _ = tokio::time::timeout(poll, self.notify.notified()).await;
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

async fn listen(config: tokio_postgres::Config, notify: Arc<Notify>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Ok((client, mut connection)) = config.connect(tokio_postgres::NoTls).await {
            let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            let woken = notify.clone();
            let drain = tokio::spawn(async move {
                let mut messages = std::pin::pin!(messages);
                while let Some(Ok(message)) = messages.next().await {
                    if matches!(message, tokio_postgres::AsyncMessage::Notification(_)) {
                        woken.notify_one();
                    }
                }
            });
            if client.batch_execute(&format!("LISTEN {CHANNEL}")).await.is_ok() {
                backoff = Duration::from_millis(100);
                // Notices sent while this connection was down are lost: look once.
                notify.notify_one();
                let _ = drain.await;
            } else {
                drain.abort();
            }
            drop(client);
        }
        let jitter = backoff.mul_f64(rand::random::<f64>());
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
