//! HTTP/2 framing seen from the socket: where frames start and end in each direction, so the
//! connection guard can count client resets and add a GOAWAY between two of h2's frames.
//!
//! This is not a second HTTP/2 implementation: only the 9-byte frame headers are read (length,
//! type, stream id); payloads pass untouched and HPACK is never decoded here.

use std::time::{Duration, Instant};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FLAG_END_STREAM: u8 = 0x1;
/// RST_STREAM error code CANCEL.
const CANCEL: u32 = 0x8;

/// GOAWAY error codes the guard sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoawayReason {
    NoError = 0x0,
    EnhanceYourCalm = 0xb,
}

/// A GOAWAY frame (type 0x7, stream 0) with `last_stream_id` and `reason`.
pub fn goaway(last_stream_id: u32, reason: GoawayReason) -> [u8; 17] {
    let mut f = [0u8; 17];
    f[2] = 8; // payload length
    f[3] = 0x7;
    f[9..13].copy_from_slice(&(last_stream_id & 0x7fff_ffff).to_be_bytes());
    f[13..17].copy_from_slice(&(reason as u32).to_be_bytes());
    f
}

/// A RST_STREAM (CANCEL) for `stream_id`, as if the client had sent it.
pub fn rst_stream(stream_id: u32) -> [u8; 13] {
    let mut f = [0u8; 13];
    f[2] = 4;
    f[3] = FRAME_RST_STREAM;
    f[5..9].copy_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    f[9..13].copy_from_slice(&CANCEL.to_be_bytes());
    f
}

/// A frame header the tracker finished reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub kind: u8,
    pub flags: u8,
    pub stream_id: u32,
}

impl FrameHead {
    fn ends_stream(&self) -> bool {
        matches!(self.kind, FRAME_DATA | FRAME_HEADERS) && self.flags & FLAG_END_STREAM != 0
    }

    pub fn is_reset(&self) -> bool {
        self.kind == FRAME_RST_STREAM
    }
    pub fn opens_stream(&self) -> bool {
        self.kind == FRAME_HEADERS
    }
}

/// Follows frame boundaries through a byte stream delivered in arbitrary pieces.
#[derive(Debug, Default)]
pub struct FrameTracker {
    /// Bytes of a preface still to skip before the first frame.
    skip: usize,
    head: [u8; 9],
    head_len: usize,
    payload_left: usize,
}

impl FrameTracker {
    /// A tracker for bytes the client sends (they start with the preface).
    pub fn client() -> Self {
        Self {
            skip: PREFACE.len(),
            ..Self::default()
        }
    }

    /// A tracker for bytes the server sends (frames from the first byte).
    pub fn server() -> Self {
        Self::default()
    }

    /// True between two frames: a frame of our own may be written here.
    pub fn at_boundary(&self) -> bool {
        self.skip == 0 && self.head_len == 0 && self.payload_left == 0
    }

    /// How many bytes may pass before the next boundary (0 at a boundary = any amount).
    pub fn bytes_to_boundary(&self) -> usize {
        if self.skip > 0 {
            self.skip
        } else if self.head_len > 0 {
            9 - self.head_len
        } else {
            self.payload_left
        }
    }

    /// Consumes `bytes`, calling `on_head` for each frame header completed in them.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_head: impl FnMut(FrameHead)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let n = (9 - self.head_len).min(bytes.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
                self.head_len += n;
                bytes = &bytes[n..];
                if self.head_len == 9 {
                    let h = &self.head;
                    self.payload_left =
                        (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                    let stream_id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    self.head_len = 0;
                    on_head(FrameHead {
                        kind: h[3],
                        flags: h[4],
                        stream_id,
                    });
                }
            }
        }
    }
}

/// Client resets counted in fixed windows: more than `budget` within `window` trips it.
#[derive(Debug)]
pub struct ResetBudget {
    budget: u32,
    window: Duration,
    window_start: Instant,
    count: u32,
}

impl ResetBudget {
    pub fn new(budget: u32, window: Duration) -> Self {
        Self {
            budget,
            window,
            window_start: Instant::now(),
            count: 0,
        }
    }

    /// Records one reset at `now`; true when the budget is exceeded.
    pub fn record(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) > self.window {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count > self.budget
    }
}

/// Request bodies in progress on one HTTP/2 connection and when each last moved: pingora has
/// no body-read timeout for HTTP/2, so the guard ends a stream whose body stalls longer than
/// `request_body_timeout` by handing h2 a RST_STREAM in the client's name.
#[derive(Debug)]
pub struct OpenBodies {
    timeout: Duration,
    cap: usize,
    last_moved: Vec<(u32, Instant)>,
}

impl OpenBodies {
    /// `cap` bounds the streams followed (h2 refuses streams past its concurrency limit anyway).
    pub fn new(timeout: Duration, cap: usize) -> Self {
        Self {
            timeout,
            cap,
            last_moved: Vec::new(),
        }
    }

    /// Follows one client frame header.
    pub fn observe(&mut self, h: FrameHead, now: Instant) {
        let pos = self
            .last_moved
            .iter()
            .position(|(id, _)| *id == h.stream_id);
        if h.is_reset() || h.ends_stream() {
            if let Some(i) = pos {
                self.last_moved.swap_remove(i);
            }
            return;
        }
        match (h.kind, pos) {
            (FRAME_DATA, Some(i)) => self.last_moved[i].1 = now,
            (FRAME_HEADERS, None) if h.stream_id != 0 && self.last_moved.len() < self.cap => {
                self.last_moved.push((h.stream_id, now));
            }
            _ => {}
        }
    }

    /// A stream whose body has not moved for the timeout (forgotten once returned).
    pub fn take_stalled(&mut self, now: Instant) -> Option<u32> {
        let i = self
            .last_moved
            .iter()
            .position(|(_, t)| now.duration_since(*t) >= self.timeout)?;
        Some(self.last_moved.swap_remove(i).0)
    }

    /// When the next body would stall.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.last_moved.iter().map(|(_, t)| *t + self.timeout).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(kind: u8, stream: u32, payload: usize) -> Vec<u8> {
        let mut f = vec![
            (payload >> 16) as u8,
            (payload >> 8) as u8,
            payload as u8,
            kind,
            0,
        ];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend(std::iter::repeat_n(0xAB, payload));
        f
    }

    proptest! {
        /// Whatever the pieces, the same frame heads come out and the end is a boundary.
        #[test]
        fn any_split_finds_the_same_frames(
            frames in proptest::collection::vec((0u8..10, 1u32..1000, 0usize..300), 0..20),
            cuts in proptest::collection::vec(1usize..50, 0..40),
        ) {
            let mut wire = PREFACE.to_vec();
            for (k, s, p) in &frames {
                wire.extend(frame(*k, *s, *p));
            }
            let mut t = FrameTracker::client();
            let mut seen = Vec::new();
            let mut rest = &wire[..];
            for c in cuts {
                let n = c.min(rest.len());
                t.feed(&rest[..n], |h| seen.push((h.kind, h.stream_id)));
                rest = &rest[n..];
            }
            t.feed(rest, |h| seen.push((h.kind, h.stream_id)));
            let expected: Vec<_> = frames.iter().map(|(k, s, _)| (*k, *s)).collect();
            prop_assert_eq!(seen, expected);
            prop_assert!(t.at_boundary());
        }
    }

    #[test]
    fn boundary_arithmetic_inside_a_frame() {
        let mut t = FrameTracker::server();
        assert!(t.at_boundary());
        t.feed(&frame(0, 1, 10)[..4], |_| {});
        assert_eq!(t.bytes_to_boundary(), 5);
        t.feed(&[0; 5], |_| {});
        assert_eq!(t.bytes_to_boundary(), 10);
        t.feed(&[0; 10], |_| {});
        assert!(t.at_boundary());
    }

    #[test]
    fn stalled_bodies_are_found_and_finished_ones_forgotten() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let head = |kind, flags, stream_id| FrameHead {
            kind,
            flags,
            stream_id,
        };
        let mut b = OpenBodies::new(s, 10);
        b.observe(head(FRAME_HEADERS, 0x4, 1), t0); // body follows
        b.observe(head(FRAME_HEADERS, 0x5, 3), t0); // no body
        b.observe(head(FRAME_HEADERS, 0x4, 5), t0);
        b.observe(head(FRAME_DATA, 0x1, 5), t0); // body done
        b.observe(head(FRAME_HEADERS, 0x4, 7), t0);
        b.observe(head(FRAME_RST_STREAM, 0, 7), t0); // reset by the client
        assert_eq!(b.next_deadline(), Some(t0 + s));
        b.observe(head(FRAME_DATA, 0, 1), t0 + s / 2); // moved
        assert_eq!(b.take_stalled(t0 + s), None);
        assert_eq!(b.take_stalled(t0 + s * 2), Some(1));
        assert_eq!(b.take_stalled(t0 + s * 9), None);
        let f = rst_stream(9);
        assert_eq!(&f[..9], &[0, 0, 4, 3, 0, 0, 0, 0, 9]);
    }

    #[test]
    fn goaway_frame_layout() {
        let f = goaway(7, GoawayReason::EnhanceYourCalm);
        assert_eq!(&f[..9], &[0, 0, 8, 7, 0, 0, 0, 0, 0]);
        assert_eq!(&f[9..], &[0, 0, 0, 7, 0, 0, 0, 0x0b]);
    }

    #[test]
    fn budget_trips_only_inside_one_window() {
        let start = Instant::now();
        let mut b = ResetBudget::new(3, Duration::from_secs(1));
        assert!(!(0..3).any(|_| b.record(start)));
        assert!(b.record(start));
        let mut b = ResetBudget::new(3, Duration::from_secs(1));
        for i in 0..10u64 {
            // One reset every 400 ms never exceeds 3 per second.
            assert!(!b.record(start + Duration::from_millis(400 * i)));
        }
    }
}
