//! The accept loop and per-connection HTTP/1.1 serving.
//!
//! `axum::serve` cannot drop a connection on purpose, and [`Fault::Reset`]
//! needs exactly that. So the stub owns the accept loop and drives hyper
//! directly: the router marks a response with [`AbortConnection`], the
//! per-connection service turns that marker into a service error (hyper then
//! drops the connection without writing anything), and the socket wrapper
//! closes with `SO_LINGER = 0` so that the peer sees a real TCP reset.
//!
//! [`Fault::Reset`]: crate::Fault::Reset

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tower_service::Service;

/// Response extension asking the connection layer to abort the connection
/// instead of sending the response.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("connection aborted by an injected reset fault")]
pub(crate) struct AbortConnection;

/// Accepts connections until `shutdown` fires (or its sender is dropped),
/// then aborts every open connection, including hung requests, and returns.
pub(crate) async fn serve(listener: TcpListener, router: Router, mut shutdown: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                Err(err) => {
                    // Typically EMFILE under a burst: back off briefly
                    // rather than spinning, as axum::serve does.
                    tracing::warn!(error = %err, "parallax-stub: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, router: Router) {
    // Small request/response exchanges: do not let Nagle delay them.
    let _ = stream.set_nodelay(true);
    let abort = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(AbortableStream { inner: stream, abort: Arc::clone(&abort) });
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let mut router = router.clone();
        let abort = Arc::clone(&abort);
        async move {
            let ready =
                std::future::poll_fn(|cx| Service::<hyper::Request<Incoming>>::poll_ready(&mut router, cx)).await;
            if let Err(never) = ready {
                match never {}
            }
            let response: Response = match router.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<AbortConnection>().is_some() {
                abort.store(true, Ordering::Relaxed);
                return Err(AbortConnection);
            }
            Ok(response)
        }
    });
    let mut builder = http1::Builder::new();
    // Keep idle keep-alive connections open for as long as the client wants:
    // a server-side idle close racing a pooled client request would inject
    // failures nobody asked for.
    builder.keep_alive(true).header_read_timeout(None);
    if let Err(err) = builder.serve_connection(io, service).await {
        tracing::debug!(error = %err, "parallax-stub: connection ended with an error");
    }
}

/// A `TcpStream` that, once `abort` is set, skips the orderly FIN on
/// shutdown and closes with `SO_LINGER = 0`, which sends an RST.
struct AbortableStream {
    inner: TcpStream,
    abort: Arc<AtomicBool>,
}

impl AbortableStream {
    fn aborting(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }
}

impl Drop for AbortableStream {
    fn drop(&mut self) {
        if self.aborting() {
            // Failing here only means the peer sees a FIN instead of an RST.
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for AbortableStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AbortableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.aborting() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
