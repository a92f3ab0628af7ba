//! Connections, bounded: a client that opens connections and sends nothing, half a header,
//! or nothing more after a response must not hold a slot, or a file descriptor, for long.
//!
//! - Every connection is closed after `idle` without a byte moving either way, and a request
//!   whose headers take longer than `header` to arrive is dropped.
//! - At most `max` connections are open; a new one past that takes the place of the oldest
//!   that has no request in flight (which is closed), or is turned away if every one is busy.
//!   The limit stays under the open-files limit, so `accept` never fails for want of one.
//! - A client may half-close its side after its request and still get the answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max: usize,
    pub header: Duration,
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max: max_for_open_files(),
            header: Duration::from_secs(10),
            idle: Duration::from_secs(30),
        }
    }
}

/// Half the open-files limit (each response also opens its file), keeping some for the rest
/// of the process.
fn max_for_open_files() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    };
    (soft.min(1 << 20) as usize).saturating_sub(64).max(64) / 2
}

struct Open {
    /// Requests being answered.
    busy: Arc<AtomicUsize>,
    close: Option<oneshot::Sender<()>>,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    next: u64,
    open: BTreeMap<u64, Open>,
}

impl Registry {
    /// A slot for a new connection, if one can be had.
    fn admit(&mut self, max: usize) -> Option<(u64, Arc<AtomicUsize>, oneshot::Receiver<()>)> {
        if self.open.len() >= max {
            let idle = self
                .open
                .iter()
                .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                .map(|(&id, _)| id)?;
            if let Some(mut evicted) = self.open.remove(&idle)
                && let Some(close) = evicted.close.take()
            {
                let _ = close.send(());
            }
        }
        let id = self.next;
        self.next += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let (close, closed) = oneshot::channel();
        self.open.insert(
            id,
            Open {
                busy: busy.clone(),
                close: Some(close),
            },
        );
        Some((id, busy, closed))
    }

    /// Asks every connection to finish what it is answering and close.
    fn close_all(&mut self) {
        for connection in self.open.values_mut() {
            if let Some(close) = connection.close.take() {
                let _ = close.send(());
            }
        }
    }
}

/// Accepts on `listener` and serves each connection with `app` until `shutdown`, then waits
/// (a few seconds at most) for answers in flight.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    // Out of descriptors or a connection reset before it was taken: the
                    // listener itself is fine; wait a moment rather than spin.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let admitted = registry.lock().expect("no panics while locked").admit(limits.max);
                let Some((id, busy, closed)) = admitted else {
                    drop(stream);
                    continue;
                };
                let app = app.clone();
                let registry = registry.clone();
                tasks.spawn(async move {
                    connection(stream, peer, app, busy, closed, limits).await;
                    registry.lock().expect("no panics while locked").open.remove(&id);
                });
            }
            // Reap finished connection tasks as they end.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    registry.lock().expect("no panics while locked").close_all();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    busy: Arc<AtomicUsize>,
    closed: oneshot::Receiver<()>,
    limits: Limits,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Idle::new(stream, limits.idle));
    let app = hyper_util::service::TowerToHyperService::new(
        app.layer(axum::Extension(ConnectInfo(peer))),
    );
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            busy.fetch_add(1, Ordering::AcqRel);
            let answer = hyper::service::Service::call(&app, request);
            let busy = busy.clone();
            async move {
                let response = answer.await;
                busy.fetch_sub(1, Ordering::AcqRel);
                response
            }
        });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .half_close(true)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = closed => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A stream that fails once nothing has moved either way for `limit`.
struct Idle<S> {
    inner: S,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<S> Idle<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Idle {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }

    fn moved(&mut self) {
        let next = tokio::time::Instant::now() + self.limit;
        self.deadline.as_mut().reset(next);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }

    /// What a write of either kind answers: bytes written restart the clock; a write still
    /// pending when the clock runs out fails.
    fn written(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        match poll {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the connection was idle too long",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_registry_gives_an_idle_slot_to_the_newcomer_or_turns_it_away() {
        let mut registry = Registry::default();
        let (first, first_busy, mut first_closed) = registry.admit(2).unwrap();
        let (_, second_busy, _second_closed) = registry.admit(2).unwrap();
        first_busy.store(1, Ordering::Release);
        second_busy.store(1, Ordering::Release);
        assert!(registry.admit(2).is_none(), "every slot is busy");
        first_busy.store(0, Ordering::Release);
        let (third, _, _) = registry.admit(2).unwrap();
        assert!(third > first);
        assert!(
            first_closed.try_recv().is_ok(),
            "the idle one was asked to close"
        );
        assert_eq!(registry.open.len(), 2);
    }
}
