//! HTTP/1 connections to a plain-HTTP backend, driven by the task that calls (decision 0017).
//!
//! hyper-util's pooled client runs each backend connection in a task of its own: a call
//! hands its request to that task over a channel, the task writes it, reads the answer
//! and hands it back over another channel. Each hand-over is a wake-up of another task,
//! and under load every wake-up waits its turn behind every other ready connection. Here
//! the calling task polls the connection itself while it waits for the answer, as nginx's
//! worker handles its upstream connection in the same event loop: the backend's bytes wake
//! the caller, and no one else.
//!
//! Owns: the idle connections to one backend address (most recently used first), opening
//! new ones (connect timeout, `TCP_NODELAY`), telling a reusable connection from a spent
//! one, and closing idle ones past [`IDLE_TIMEOUT`] or closed by the backend. Does not own:
//! the request and its deadlines, the bulkhead or retries of failed calls
//! ([`super::transport`]); TLS backends and HTTP/2 (hyper-util's client, in the transport).

use super::{AdapterError, TransportCause};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// An idle connection unused for this long is closed (as hyper-util's pool did).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How often idle connections are looked at when no call takes them: the ones the backend
/// closed, or past [`IDLE_TIMEOUT`], are closed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(15);

type Driver = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// The idle connections, each with when it was given back.
type IdleList = Vec<(Box<Conn>, Instant)>;

/// One HTTP/1 connection to the backend: the sending half and the connection itself, which
/// only makes progress while someone polls it (see [`Conn::drive`]).
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
    /// `None` once the connection has ended (closed by either side, or failed).
    driver: Option<Driver>,
    /// Whether it served a call before (a request on it may find it closed by the backend).
    reused: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("open", &self.driver.is_some())
            .field("reused", &self.reused)
            .finish()
    }
}

/// Why a call on a connection did not give an answer.
#[derive(Debug)]
pub enum Failed {
    /// The request was never written (the connection closed before): it may be sent again
    /// on another connection, whatever its method.
    Unsent(Box<Request<Full<Bytes>>>, hyper::Error),
    /// The call failed as the adapter sees it.
    Call(AdapterError),
}

/// Polls the connection: `Ready` when it has ended (closed by either side, or failed), and
/// then it is dropped, which fails what still waits on it (an answer, its body).
fn poll_end(driver: &mut Option<Driver>, cx: &mut std::task::Context<'_>) -> Poll<()> {
    let Some(connection) = driver.as_mut() else {
        return Poll::Ready(());
    };
    let Poll::Ready(result) = Pin::new(connection).poll(cx) else {
        return Poll::Pending;
    };
    if let Err(error) = result {
        tracing::debug!(error = %error, "backend connection ended");
    }
    *driver = None;
    Poll::Ready(())
}

impl Conn {
    /// Whether it served a call before.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Polls `future` and, while it waits, the connection, until `future` is ready. Once
    /// the connection has ended it is dropped (see [`poll_end`]), so `future` always
    /// completes.
    async fn drive<F: Future>(driver: &mut Option<Driver>, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            if poll_end(driver, cx).is_pending() {
                return Poll::Pending;
            }
            future.as_mut().poll(cx)
        })
        .await
    }

    /// Polls the connection once, so that it reads what arrived (an end of file, the
    /// backend's close) and tells the sending half it wants the next request; `false` when
    /// it has ended.
    async fn settle(&mut self) -> bool {
        let driver = &mut self.driver;
        std::future::poll_fn(|cx| {
            let _ = poll_end(driver, cx);
            Poll::Ready(())
        })
        .await;
        self.driver.is_some() && self.send.is_ready()
    }

    /// Sends `request` and reads the answer's body (at most `cap` bytes), driving the
    /// connection meanwhile.
    pub async fn call(
        &mut self,
        request: Request<Full<Bytes>>,
        cap: usize,
    ) -> Result<(u16, Bytes), Failed> {
        let response: Response<Incoming> =
            match Self::drive(&mut self.driver, self.send.try_send_request(request)).await {
                Ok(response) => response,
                Err(mut error) => {
                    return Err(match error.take_message() {
                        Some(request) => Failed::Unsent(Box::new(request), error.into_error()),
                        None => Failed::Call(super::transport::describe(
                            error.error(),
                            TransportCause::Other,
                        )),
                    });
                }
            };
        let status = response.status().as_u16();
        if super::transport::declared_length(response.headers()).is_some_and(|len| len > cap as u64)
        {
            // The body is left unread: the connection cannot be reused.
            self.driver = None;
            return Err(Failed::Call(AdapterError::BodyTooLarge(cap)));
        }
        let body = Self::drive(
            &mut self.driver,
            super::transport::collect_capped(response.into_body(), cap),
        )
        .await
        .map_err(|error| {
            self.driver = None;
            Failed::Call(error)
        })?;
        Ok((status, body))
    }
}

/// The idle connections to one backend address, and how to open new ones.
#[derive(Debug)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `host:port`, resolved at each connect.
    address: String,
    connect_timeout: Duration,
    max_idle: usize,
    /// Most recently used last. `None` until the first connection is given back: the
    /// sweeper starts with it (a pool built outside a runtime, by `datagate check`, spawns
    /// nothing).
    /// Boxed: a connection is moved out and back on every call, and hyper's connection
    /// state is several hundred bytes; a box moves as a pointer (issue 12).
    idle: Mutex<Option<IdleList>>,
}

impl Pool {
    /// A pool for `address` (`host:port`) keeping at most `max_idle` idle connections.
    pub fn new(address: String, connect_timeout: Duration, max_idle: usize) -> Self {
        Pool {
            inner: Arc::new(Inner {
                address,
                connect_timeout,
                max_idle,
                idle: Mutex::new(None),
            }),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Option<IdleList>> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection ready for a request: the most recently used idle one that is still
    /// open, or a new one.
    pub async fn checkout(&self) -> Result<Box<Conn>, AdapterError> {
        loop {
            let taken = self.idle().as_mut().and_then(Vec::pop);
            let Some((mut conn, since)) = taken else {
                return self.connect().await;
            };
            if since.elapsed() < IDLE_TIMEOUT && conn.settle().await {
                return Ok(conn);
            }
            // Closed by the backend while idle, or idle too long: dropped, next.
        }
    }

    /// Opens a new connection.
    pub async fn connect(&self) -> Result<Box<Conn>, AdapterError> {
        let stream = tokio::time::timeout(
            self.inner.connect_timeout,
            TcpStream::connect(self.inner.address.as_str()),
        )
        .await
        .map_err(|_| AdapterError::Unavailable(TransportCause::ConnectTimeout))?
        .map_err(|error| super::transport::describe(&error, TransportCause::Other))?;
        stream
            .set_nodelay(true)
            .map_err(|error| super::transport::describe(&error, TransportCause::Other))?;
        let (send, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| super::transport::describe(&error, TransportCause::Other))?;
        metrics::counter!("datagate_adapter_connections_opened_total").increment(1);
        Ok(Box::new(Conn {
            send,
            driver: Some(driver),
            reused: false,
        }))
    }

    /// Gives a connection back after a call that read its whole answer: kept for the next
    /// call when it is still open and ready, closed otherwise (or when the pool is full).
    pub async fn checkin(&self, mut conn: Box<Conn>) {
        if !conn.settle().await {
            return;
        }
        conn.reused = true;
        let mut idle = self.idle();
        let list = match idle.as_mut() {
            Some(list) => list,
            None => {
                tokio::spawn(sweep(Arc::downgrade(&self.inner)));
                idle.insert(Vec::new())
            }
        };
        if list.len() < self.inner.max_idle {
            list.push((conn, Instant::now()));
        }
    }
}

/// Closes idle connections the backend closed, or past [`IDLE_TIMEOUT`], while no call
/// takes them; ends with the pool.
async fn sweep(pool: Weak<Inner>) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.sweep_once();
    }
}

impl Inner {
    /// One look at the idle connections: the ones past [`IDLE_TIMEOUT`], and the ones the
    /// backend closed (a poll reads its end of file), are closed.
    fn sweep_once(&self) {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = idle.as_mut() {
            list.retain_mut(|(conn, since)| {
                if since.elapsed() >= IDLE_TIMEOUT {
                    return false;
                }
                // The next poll, by a call, registers that call's own waker.
                poll_end(&mut conn.driver, &mut cx).is_pending()
            });
        }
    }
}

#[cfg(test)]
impl Pool {
    /// How many idle connections the pool holds.
    pub fn idle_count(&self) -> usize {
        self.idle().as_ref().map_or(0, Vec::len)
    }

    /// What the sweeper does at each tick.
    pub fn sweep_once(&self) {
        self.inner.sweep_once();
    }
}
