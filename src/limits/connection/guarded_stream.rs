//! [`GuardedStream`]: the accepted stream with the guard's deadlines and HTTP/2 frame
//! accounting, as the `Stream` pingora reads and writes (every pingora IO trait forwarded).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::super::h2_frames::{
    goaway, rst_stream, FrameTracker, GoawayReason, OpenBodies, ResetBudget, PREFACE,
};
use super::super::{LimitMetrics, Limits};
use super::{ConnState, GOAWAY_NO_ERROR, NO_DEADLINE, PHASE_HEAD, PHASE_IDLE};

/// After GOAWAY ENHANCE_YOUR_CALM, how long the guard reads and discards what the client still
/// sends, so the close is a FIN after the GOAWAY rather than a reset that could discard it.
const GOAWAY_LINGER: Duration = Duration::from_millis(500);

const RESPONSE_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plain listener with h2c: decided by the preface peek.
    Unknown,
    H1,
    H2,
}

/// Bytes the guard writes itself, and what follows once they are out.
enum Closing {
    Open,
    /// 408 (HTTP/1) being written; then the connection ends.
    Reply408 {
        off: usize,
    },
    /// GOAWAY being written at a frame boundary; `close` ends the connection after it.
    Goaway {
        frame: [u8; 17],
        off: usize,
        close: bool,
    },
    /// GOAWAY sent, write side shut: discard input until EOF or the linger deadline.
    Draining,
    /// Reads fail, writes are discarded.
    Closed(io::ErrorKind),
}

/// A stream with the guard's deadlines and HTTP/2 frame accounting.
pub struct GuardedStream {
    inner: pingora::protocols::Stream,
    conn: Arc<ConnState>,
    mode: Mode,
    inbound: FrameTracker,
    outbound: FrameTracker,
    resets: ResetBudget,
    bodies: OpenBodies,
    /// Frames of ours for the client (RST_STREAM of a stalled body), written at a boundary.
    pending_out: Vec<u8>,
    max_stream_id: u32,
    goaway_sent: bool,
    sleep: Pin<Box<Sleep>>,
    armed_at: Option<Instant>,
    /// The waker the timer was last left pending with at `armed_at`: polling it again with
    /// the same waker would change nothing.
    registered: Option<Waker>,
    /// Bytes of the current request head read so far (for the 408 decision).
    head_bytes: usize,
    closing: Closing,
    metrics: LimitMetrics,
}

impl fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl GuardedStream {
    pub(super) fn new(
        inner: pingora::protocols::Stream,
        conn: Arc<ConnState>,
        limits: &Limits,
        metrics: LimitMetrics,
    ) -> Self {
        let mode = if inner.get_ssl_digest().is_some() {
            if matches!(inner.selected_alpn_proto(), Some(ALPN::H2)) {
                Mode::H2
            } else {
                Mode::H1
            }
        } else if limits.h2c {
            Mode::Unknown
        } else {
            Mode::H1
        };
        Self {
            inner,
            conn,
            mode,
            inbound: FrameTracker::client(),
            outbound: FrameTracker::server(),
            resets: ResetBudget::new(limits.h2_reset_budget, limits.h2_reset_window),
            bodies: OpenBodies::new(
                limits.request_body_timeout,
                2 * limits.h2_max_concurrent_streams as usize,
            ),
            pending_out: Vec::new(),
            max_stream_id: 0,
            goaway_sent: false,
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            armed_at: None,
            registered: None,
            head_bytes: 0,
            closing: Closing::Open,
            metrics,
        }
    }

    /// The connection's own deadline, if any.
    fn conn_deadline(&self) -> Option<Instant> {
        let deadline = self.conn.deadline_ms.load(Ordering::Acquire);
        (deadline != NO_DEADLINE).then(|| self.conn.epoch + Duration::from_millis(deadline))
    }

    /// True once the connection's deadline has passed; otherwise makes sure the task is woken
    /// no later than that deadline, or than when an HTTP/2 request body would stall.
    ///
    /// The timer is re-armed lazily: deadlines mostly move later (each request pushes the
    /// head and keep-alive deadlines forward), and a timer armed for an earlier instant still
    /// wakes the task in time, so it is kept; when it fires early, the next call sees the real
    /// deadline and arms for it. That is one timer reset per `request_header_timeout` rather
    /// than two per request.
    fn deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        let conn = self.conn_deadline();
        let wake = match (conn, self.bodies.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(at) = wake else {
            return false;
        };
        let in_time = self.armed_at.is_some_and(|armed| armed <= at) && !self.sleep.is_elapsed();
        if in_time
            && self
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            // Pending at or before `at` with this task's waker: `at` has not passed, and the
            // task is woken in time. No clock read needed.
            return false;
        }
        if conn.is_some_and(|c| Instant::now() >= c) {
            return true;
        }
        if !in_time {
            self.sleep.as_mut().reset(at.into());
            self.armed_at = Some(at);
            self.registered = None;
        }
        // Pending registers the wake-up; Ready means the armed instant passed since the clock
        // was read (the clock is read again only then).
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.registered = None;
            return conn.is_some_and(|c| Instant::now() >= c);
        }
        self.registered = Some(cx.waker().clone());
        false
    }

    fn on_deadline(&mut self) {
        let phase = self.conn.phase.load(Ordering::Acquire);
        let kind = if phase == PHASE_IDLE {
            "keepalive"
        } else {
            "request_head"
        };
        self.metrics
            .connection_timeouts
            .with_label_values(&[kind])
            .inc();
        tracing::debug!(kind, "client connection deadline passed; closing");
        self.closing = if phase == PHASE_HEAD && self.mode == Mode::H1 && self.head_bytes > 0 {
            Closing::Reply408 { off: 0 }
        } else {
            Closing::Closed(io::ErrorKind::TimedOut)
        };
    }

    /// Frame accounting of bytes the client sent; true when the reset budget is exceeded.
    fn account_inbound(&mut self, bytes: &[u8]) -> bool {
        let now = Instant::now();
        let mut tripped = false;
        let (resets, max_id, bodies) =
            (&mut self.resets, &mut self.max_stream_id, &mut self.bodies);
        self.inbound.feed(bytes, |h| {
            bodies.observe(h, now);
            if h.opens_stream() && h.stream_id > *max_id {
                *max_id = h.stream_id;
            }
            if h.is_reset() && resets.record(now) {
                tripped = true;
            }
        });
        tripped
    }

    /// Writes the guard's own bytes (`Reply408` / `Goaway`); Ready when done or failed.
    fn drive_own_write(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let (bytes, off): (&[u8], usize) = match &self.closing {
                Closing::Reply408 { off } => (RESPONSE_408, *off),
                Closing::Goaway { frame, off, .. } => (&frame[..], *off),
                _ => return Poll::Ready(()),
            };
            if off == bytes.len() {
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
                self.closing = match self.closing {
                    Closing::Goaway { close: false, .. } => Closing::Open,
                    Closing::Goaway { close: true, .. } => {
                        let _ = Pin::new(&mut self.inner).poll_shutdown(cx);
                        self.set_linger();
                        Closing::Draining
                    }
                    _ => {
                        let _ = Pin::new(&mut self.inner).poll_shutdown(cx);
                        Closing::Closed(io::ErrorKind::TimedOut)
                    }
                };
                return Poll::Ready(());
            }
            // At most 72 bytes (a 408 head or a GOAWAY frame): copied so `closing` can change.
            let mut chunk = [0u8; 80];
            let len = bytes.len() - off;
            chunk[..len].copy_from_slice(&bytes[off..]);
            match Pin::new(&mut self.inner).poll_write(cx, &chunk[..len]) {
                Poll::Ready(Ok(n)) if n > 0 => match &mut self.closing {
                    Closing::Reply408 { off } | Closing::Goaway { off, .. } => *off += n,
                    _ => {}
                },
                Poll::Ready(_) => {
                    self.closing = Closing::Closed(io::ErrorKind::ConnectionAborted);
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes `pending_out` when h2 is between frames; Pending only while the socket is full.
    fn flush_pending_out(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.pending_out.is_empty() && self.outbound.at_boundary() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending_out) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.pending_out.drain(..n);
                }
                Poll::Ready(_) => {
                    self.pending_out.clear();
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }

    /// After GOAWAY: reads and discards one chunk of what the client still sends. `None` when
    /// something was discarded (read again), else what `poll_read` returns. Out of line, so
    /// its 4 KiB scratch buffer is not part of every `poll_read` frame.
    #[cold]
    #[inline(never)]
    fn discard_input(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<()>>> {
        let mut scratch = [0u8; 4096];
        let mut sbuf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut self.inner).poll_read(cx, &mut sbuf) {
            Poll::Ready(Ok(())) if !sbuf.filled().is_empty() => None,
            Poll::Ready(_) => {
                self.closing = Closing::Closed(io::ErrorKind::ConnectionAborted);
                Some(Poll::Ready(Ok(())))
            }
            Poll::Pending => {
                if self.sleep.as_mut().poll(cx).is_ready() {
                    self.closing = Closing::Closed(io::ErrorKind::ConnectionAborted);
                    return Some(Poll::Ready(Ok(())));
                }
                Some(Poll::Pending)
            }
        }
    }

    fn set_linger(&mut self) {
        self.sleep
            .as_mut()
            .reset((Instant::now() + GOAWAY_LINGER).into());
        self.armed_at = None;
    }

    fn start_calm_goaway(&mut self) {
        self.metrics
            .h2_goaways
            .with_label_values(&["reset_budget"])
            .inc();
        tracing::info!(
            last_stream_id = self.max_stream_id,
            "HTTP/2 client exceeded the stream reset budget; GOAWAY ENHANCE_YOUR_CALM"
        );
        self.closing = if self.outbound.at_boundary() {
            Closing::Goaway {
                frame: goaway(self.max_stream_id, GoawayReason::EnhanceYourCalm),
                off: 0,
                close: true,
            }
        } else {
            // h2 is in the middle of a frame: no frame of ours can go in; just close.
            Closing::Closed(io::ErrorKind::ConnectionAborted)
        };
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &this.closing {
                Closing::Open => {}
                Closing::Goaway { close: false, .. } => {} // the write side sends it
                Closing::Reply408 { .. } | Closing::Goaway { .. } => {
                    if this.drive_own_write(cx).is_pending() {
                        return Poll::Pending;
                    }
                    continue;
                }
                Closing::Draining => match this.discard_input(cx) {
                    Some(done) => return done,
                    None => continue,
                },
                Closing::Closed(kind) => {
                    return Poll::Ready(Err(io::Error::new(
                        *kind,
                        "closed by the connection guard",
                    )))
                }
            }
            if this.deadline_passed(cx) {
                this.on_deadline();
                continue;
            }
            if this.mode == Mode::H2 && this.inbound.at_boundary() && buf.remaining() >= 13 {
                if let Some(stream) = this.bodies.take_stalled(Instant::now()) {
                    // h2 sees the stream reset: pingora stops waiting for the body and drops
                    // the upstream request.
                    this.metrics
                        .connection_timeouts
                        .with_label_values(&["request_body"])
                        .inc();
                    tracing::debug!(stream, "HTTP/2 request body stalled; stream reset");
                    buf.put_slice(&rst_stream(stream));
                    // ... and the client is told the same.
                    this.pending_out.extend_from_slice(&rst_stream(stream));
                    let _ = this.flush_pending_out(cx);
                    return Poll::Ready(Ok(()));
                }
            }
            let before = buf.filled().len();
            let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
            if let Poll::Ready(Ok(())) = polled {
                let n = buf.filled().len() - before;
                if n == 0 {
                    return polled;
                }
                match this.conn.phase.load(Ordering::Acquire) {
                    PHASE_IDLE => {
                        this.conn.phase.store(PHASE_HEAD, Ordering::Release);
                        this.conn.set_deadline(this.conn.header_timeout);
                        this.head_bytes = n;
                    }
                    PHASE_HEAD => this.head_bytes += n,
                    _ => {}
                }
                if this.mode == Mode::H2 && this.account_inbound(&buf.filled()[before..]) {
                    // h2 never sees the bytes that broke the budget.
                    buf.set_filled(before);
                    this.start_calm_goaway();
                    continue;
                }
            }
            return polled;
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match &this.closing {
            Closing::Open | Closing::Goaway { close: false, .. } => {}
            Closing::Closed(_) | Closing::Draining => return Poll::Ready(Ok(buf.len())),
            Closing::Reply408 { .. } | Closing::Goaway { .. } => {
                if this.drive_own_write(cx).is_pending() {
                    return Poll::Pending;
                }
                return Poll::Ready(Ok(buf.len()));
            }
        }
        if this.mode != Mode::H2 {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if !this.goaway_sent
            && matches!(this.closing, Closing::Open)
            && this.conn.goaway.load(Ordering::Acquire) == GOAWAY_NO_ERROR
        {
            this.goaway_sent = true;
            this.metrics
                .h2_goaways
                .with_label_values(&["max_requests"])
                .inc();
            this.closing = Closing::Goaway {
                frame: goaway(this.max_stream_id, GoawayReason::NoError),
                off: 0,
                close: false,
            };
        }
        let mut allowed = buf.len();
        if !this.pending_out.is_empty() {
            if this.outbound.at_boundary() {
                if this.flush_pending_out(cx).is_pending() {
                    return Poll::Pending;
                }
            } else {
                allowed = allowed.min(this.outbound.bytes_to_boundary());
            }
        }
        if matches!(this.closing, Closing::Goaway { .. }) {
            if this.outbound.at_boundary() {
                if this.drive_own_write(cx).is_pending() {
                    return Poll::Pending;
                }
            } else {
                // Stop at the end of h2's current frame so ours can follow it.
                allowed = allowed.min(this.outbound.bytes_to_boundary());
            }
        }
        match Pin::new(&mut this.inner).poll_write(cx, &buf[..allowed]) {
            Poll::Ready(Ok(n)) => {
                this.outbound.feed(&buf[..n], |_| {});
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if matches!(self.closing, Closing::Closed(_) | Closing::Draining) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if matches!(self.closing, Closing::Closed(_) | Closing::Draining) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        if !matches!(self.closing, Closing::Closed(_) | Closing::Draining) {
            self.inner.shutdown().await;
        }
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for GuardedStream {
    /// pingora peeks for the h2c preface and waits until 24 bytes came: bounded here by the
    /// head deadline.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let deadline = self.conn.deadline_ms.load(Ordering::Acquire);
        let at = self.conn.epoch + Duration::from_millis(deadline.min(86_400_000));
        match tokio::time::timeout_at(at.into(), self.inner.try_peek(buf)).await {
            Ok(Ok(true)) => {
                if self.mode == Mode::Unknown {
                    self.mode = if buf == PREFACE { Mode::H2 } else { Mode::H1 };
                }
                Ok(true)
            }
            Ok(other) => other,
            Err(_) => {
                self.metrics
                    .connection_timeouts
                    .with_label_values(&["request_head"])
                    .inc();
                tracing::debug!("no complete request head (h2c preface peek) before the deadline");
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head deadline passed",
                ))
            }
        }
    }
}
