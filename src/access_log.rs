//! The access log: one JSON line per request, formatted straight into a shared, reused buffer
//! and written to stdout by a background thread, so the request path makes no allocation, no
//! `tracing` field formatting and no write syscall.
//!
//! A line has the shape `tracing`'s JSON formatter gave it before (log pipelines keep working):
//! `{"timestamp":"2026-12-01T21:50:30.123456Z","level":"INFO","fields":{"tenant":"acme",
//! "request_id":"…","method":"GET","path":"/","status":200,"upstream":"127.0.0.1:3000",
//! "duration_ms":1.234},"target":"access"}`.
//!
//! The writer wakes at most every [`FLUSH_INTERVAL`]; lines waiting when the process exits are
//! written by [`flush`]. While stdout blocks, at most [`MAX_PENDING`] bytes wait; later lines are
//! dropped and counted in a line of their own.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Datelike;

/// How long the writer lets lines gather before writing them in one go.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// Bytes that may wait for a blocked stdout before lines are dropped.
pub const MAX_PENDING: usize = 8 << 20;

/// What one access-log line says about a request.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub time: SystemTime,
    pub tenant: &'a str,
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// Why the gateway refused the request before admission (`canonical_path` / request view
    /// reasons); written only when set.
    pub refusal: Option<&'a str>,
    pub upstream: Option<SocketAddr>,
    pub duration: Duration,
}

/// Lines waiting for the writer.
struct Pending {
    buf: Vec<u8>,
    /// The date and time of day of the last line (most lines share their second).
    clock: SecondText,
    /// The writer sleeps on the condvar (only then does a new line wake it).
    writer_waiting: bool,
    dropped: u64,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// A handle to an access-log writer; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

/// The process-wide access log on stdout (its writer thread starts on first use).
pub fn stdout() -> &'static AccessLog {
    static STDOUT: OnceLock<AccessLog> = OnceLock::new();
    STDOUT.get_or_init(|| AccessLog::spawn(std::io::stdout))
}

/// Writes the lines still waiting in the stdout log (call before the process exits).
pub fn flush() {
    stdout().flush_into(&mut std::io::stdout().lock());
}

impl AccessLog {
    /// Starts a writer thread that writes batches to the writer `open` returns.
    pub fn spawn<W: Write, F: FnOnce() -> W + Send + 'static>(open: F) -> Self {
        let log = Self::detached();
        let shared = log.shared.clone();
        let started = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(&shared, open()));
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the access-log writer; lines stay buffered");
        }
        log
    }

    /// A log without a writer thread: lines wait until [`AccessLog::flush_into`].
    pub fn detached() -> Self {
        Self {
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending {
                    buf: Vec::with_capacity(64 * 1024),
                    clock: SecondText::default(),
                    writer_waiting: false,
                    dropped: 0,
                }),
                wake: Condvar::new(),
            }),
        }
    }

    /// Appends one line; wakes the writer only if it sleeps.
    pub fn record(&self, entry: &Entry<'_>) {
        let Ok(mut p) = self.shared.pending.lock() else {
            return;
        };
        if p.buf.len() >= MAX_PENDING {
            p.dropped += 1;
            return;
        }
        let p = &mut *p;
        format_line_with(&mut p.buf, &mut p.clock, entry);
        if p.writer_waiting {
            p.writer_waiting = false;
            self.shared.wake.notify_one();
        }
    }

    /// Writes every waiting line to `out` now.
    pub fn flush_into(&self, out: &mut impl Write) {
        let mut batch = Vec::new();
        let dropped = take_pending(&self.shared, &mut batch);
        write_batch(out, &batch, dropped);
    }
}

/// Moves the waiting lines into `batch` (swapping buffers, so both keep their capacity).
fn take_pending(shared: &Shared, batch: &mut Vec<u8>) -> u64 {
    let Ok(mut p) = shared.pending.lock() else {
        return 0;
    };
    std::mem::swap(&mut p.buf, batch);
    std::mem::take(&mut p.dropped)
}

fn write_batch(out: &mut impl Write, batch: &[u8], dropped: u64) {
    let mut result = out.write_all(batch);
    if dropped > 0 && result.is_ok() {
        result = writeln!(
            out,
            "{{\"level\":\"WARN\",\"fields\":{{\"message\":\"access log lines dropped while stdout blocked\",\"dropped\":{dropped}}},\"target\":\"access\"}}"
        );
    }
    if result.is_ok() {
        result = out.flush();
    }
    if let Err(e) = result {
        // stdout is gone (closed pipe): nothing to report the error on but the diagnostic log.
        tracing::debug!(error = %e, "access log write failed");
    }
}

fn write_loop<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        {
            let Ok(mut p) = shared.pending.lock() else {
                return;
            };
            while p.buf.is_empty() {
                p.writer_waiting = true;
                p = match shared.wake.wait(p) {
                    Ok(p) => p,
                    Err(_) => return,
                };
            }
        }
        batch.clear();
        let dropped = take_pending(shared, &mut batch);
        write_batch(&mut out, &batch, dropped);
        std::thread::sleep(FLUSH_INTERVAL);
    }
}

/// Formats one line (with its `\n`) onto `buf`.
pub fn format_line(buf: &mut Vec<u8>, e: &Entry<'_>) {
    format_line_with(buf, &mut SecondText::default(), e);
}

/// [`format_line`], with the date and time of day kept in `clock` from one line to the next.
fn format_line_with(buf: &mut Vec<u8>, clock: &mut SecondText, e: &Entry<'_>) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    push_timestamp(buf, clock, e.time);
    buf.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"tenant\":\"");
    push_escaped(buf, e.tenant);
    buf.extend_from_slice(b"\",\"request_id\":\"");
    push_escaped(buf, e.request_id);
    buf.extend_from_slice(b"\",\"method\":\"");
    push_escaped(buf, e.method);
    buf.extend_from_slice(b"\",\"path\":\"");
    push_escaped(buf, e.path);
    buf.extend_from_slice(b"\",\"status\":");
    push_uint(buf, u64::from(e.status));
    if let Some(refusal) = e.refusal {
        buf.extend_from_slice(b",\"refusal\":\"");
        push_escaped(buf, refusal);
        buf.push(b'"');
    }
    buf.extend_from_slice(b",\"upstream\":\"");
    match e.upstream {
        Some(SocketAddr::V4(addr)) => {
            let mut ip = [0u8; 15];
            let n = crate::ipv4_text::write_ipv4(*addr.ip(), &mut ip);
            buf.extend_from_slice(&ip[..n]);
            buf.push(b':');
            push_uint(buf, u64::from(addr.port()));
        }
        // Display of a socket address writes into the Vec without a temporary String.
        Some(addr) => {
            let _ = write!(buf, "{addr}");
        }
        None => {}
    }
    buf.extend_from_slice(b"\",\"duration_ms\":");
    let micros = u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX);
    push_uint(buf, micros / 1000);
    buf.push(b'.');
    push_digits::<3>(buf, micros % 1000);
    buf.extend_from_slice(b"},\"target\":\"access\"}\n");
}

fn push_uint(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// `v` as exactly `N` decimal digits, zero-padded (`v < 10^N`; higher digits are dropped).
fn push_digits<const N: usize>(buf: &mut Vec<u8>, mut v: u64) {
    let mut digits = [b'0'; N];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    buf.extend_from_slice(&digits);
}

/// `YYYY-MM-DDTHH:MM:SS` of one second (UTC), made again only when the second changes.
#[derive(Default)]
struct SecondText {
    secs: Option<u64>,
    text: Vec<u8>,
}

impl SecondText {
    /// The text of `secs` since the epoch.
    fn of(&mut self, secs: u64) -> &[u8] {
        if self.secs != Some(secs) {
            let date = chrono::DateTime::from_timestamp(secs as i64, 0)
                .unwrap_or_default()
                .date_naive();
            let rem = secs % 86_400;
            let t = &mut self.text;
            t.clear();
            let year = date.year().max(0) as u64;
            if year > 9999 {
                push_uint(t, year);
            } else {
                push_digits::<4>(t, year);
            }
            t.push(b'-');
            push_digits::<2>(t, u64::from(date.month()));
            t.push(b'-');
            push_digits::<2>(t, u64::from(date.day()));
            t.push(b'T');
            push_digits::<2>(t, rem / 3600);
            t.push(b':');
            push_digits::<2>(t, rem / 60 % 60);
            t.push(b':');
            push_digits::<2>(t, rem % 60);
            self.secs = Some(secs);
        }
        &self.text
    }
}

/// RFC 3339 UTC with microseconds, as `tracing-subscriber` writes it.
fn push_timestamp(buf: &mut Vec<u8>, clock: &mut SecondText, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    buf.extend_from_slice(clock.of(since.as_secs()));
    buf.push(b'.');
    push_digits::<6>(buf, u64::from(since.subsec_micros()));
    buf.push(b'Z');
}

/// Bytes a JSON string cannot hold as they are: `"`, `\` and the controls.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    t
};

/// How many leading bytes need no escape: eight at a time (a word test for "some byte is
/// below 0x20, `"` or `\`"), then byte by byte from the first word that has one.
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut i = 0;
    for chunk in bytes.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_ne_bytes(word);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        if below(x, 0x20) | below(quote, 1) | below(backslash, 1) != 0 {
            break;
        }
        i += 8;
    }
    i + bytes[i..]
        .iter()
        .take_while(|&&b| !NEEDS_ESCAPE[usize::from(b)])
        .count()
}

/// A JSON string body: `"`, `\` and control characters escaped.
fn push_escaped(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let clean = clean_prefix(bytes);
    if clean == bytes.len() {
        buf.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        if !NEEDS_ESCAPE[usize::from(b)] {
            continue;
        }
        buf.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry<'a>(tenant: &'a str, path: &'a str, micros: u64) -> Entry<'a> {
        Entry {
            time: UNIX_EPOCH + Duration::from_micros(1_796_161_830_123_456),
            tenant,
            request_id: "rid-1",
            method: "GET",
            path,
            status: 200,
            refusal: None,
            upstream: Some("127.0.0.1:3000".parse().unwrap()),
            duration: Duration::from_micros(micros),
        }
    }

    #[test]
    fn line_has_the_tracing_json_shape() {
        let mut buf = Vec::new();
        format_line(&mut buf, &entry("acme", "/a", 1_234));
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"timestamp\":\"2026-12-01T21:50:30.123456Z\",\"level\":\"INFO\",\"fields\":{\"tenant\":\"acme\",\"request_id\":\"rid-1\",\"method\":\"GET\",\"path\":\"/a\",\"status\":200,\"upstream\":\"127.0.0.1:3000\",\"duration_ms\":1.234},\"target\":\"access\"}\n"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_micros_utc() {
        for secs in (0..200_000u64 * 86_400)
            .step_by(37 * 86_400 + 3_599)
            .chain([0, 59 * 86_400, 951_782_400, 1_764_547_200])
        {
            let t = UNIX_EPOCH + Duration::new(secs, 123_456_789);
            let mut buf = Vec::new();
            push_timestamp(&mut buf, &mut SecondText::default(), t);
            let want = chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            assert_eq!(String::from_utf8(buf).unwrap(), want, "second {secs}");
        }
    }

    /// One clock kept across lines in any order (same second, the next one, a day later,
    /// backwards) writes what a fresh one writes.
    #[test]
    fn a_kept_clock_writes_what_a_fresh_one_writes() {
        let mut kept = SecondText::default();
        let mut secs = 1_764_547_199u64;
        for step in [
            0i64,
            0,
            1,
            1,
            86_400,
            -86_401,
            0,
            3_600,
            -1,
            400 * 365 * 86_400,
        ] {
            secs = secs.saturating_add_signed(step);
            for micros in [0u32, 999_999] {
                let t = UNIX_EPOCH + Duration::new(secs, micros * 1000);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                push_timestamp(&mut a, &mut kept, t);
                push_timestamp(&mut b, &mut SecondText::default(), t);
                assert_eq!(a, b, "second {secs}");
            }
        }
    }

    #[test]
    fn detached_log_keeps_lines_until_flushed_and_drops_past_the_cap() {
        let log = AccessLog::detached();
        log.record(&entry("a", "/1", 5));
        log.record(&entry("b", "/2", 5));
        let mut out = Vec::new();
        log.flush_into(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("\"tenant\":\"b\""));
        let mut again = Vec::new();
        log.flush_into(&mut again);
        assert!(again.is_empty(), "flushed lines are gone");

        let long = "x".repeat(MAX_PENDING);
        log.record(&entry("big", &long, 1));
        log.record(&entry("lost", "/", 1));
        let mut out = Vec::new();
        log.flush_into(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("\"tenant\":\"lost\""));
        assert!(
            text.contains("\"dropped\":1"),
            "{}",
            &text[text.len() - 200..]
        );
    }

    #[test]
    fn writer_thread_writes_recorded_lines() {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        struct Chan(std::sync::mpsc::Sender<Vec<u8>>);
        impl Write for Chan {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.send(b.to_vec());
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = AccessLog::spawn(move || Chan(tx));
        for i in 0..3u64 {
            log.record(&entry("t", "/", i));
            std::thread::sleep(FLUSH_INTERVAL * 2);
        }
        let mut got = Vec::new();
        while got.iter().filter(|&&b| b == b'\n').count() < 3 {
            got.extend(
                rx.recv_timeout(Duration::from_secs(5))
                    .expect("line written"),
            );
        }
        assert_eq!(String::from_utf8(got).unwrap().lines().count(), 3);
    }

    proptest! {
        /// The word-at-a-time prefix test agrees with the byte table on any bytes.
        #[test]
        fn clean_prefix_agrees_with_the_table(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let want = bytes.iter().take_while(|&&b| !NEEDS_ESCAPE[usize::from(b)]).count();
            prop_assert_eq!(clean_prefix(&bytes), want);
        }

        /// Whatever the request carries, the line is one valid JSON object with those values.
        #[test]
        fn any_values_make_one_valid_json_line(
            tenant in "\\PC{0,20}",
            path in any::<String>(),
            method in "[A-Za-z\"\\\\\u{0}-\u{1f}]{0,8}",
            micros in any::<u64>(),
            status in any::<u16>(),
            upstream in proptest::option::of(any::<SocketAddr>()),
        ) {
            let mut e = entry(&tenant, &path, micros);
            e.method = &method;
            e.status = status;
            e.upstream = upstream;
            let mut buf = Vec::new();
            format_line(&mut buf, &e);
            prop_assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
            let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            let f = &v["fields"];
            prop_assert_eq!(f["tenant"].as_str(), Some(tenant.as_str()));
            prop_assert_eq!(f["path"].as_str(), Some(path.as_str()));
            prop_assert_eq!(f["method"].as_str(), Some(method.as_str()));
            prop_assert_eq!(f["status"].as_u64(), Some(u64::from(status)));
            let want = upstream.map(|a| a.to_string()).unwrap_or_default();
            prop_assert_eq!(f["upstream"].as_str(), Some(want.as_str()));
            let ms = f["duration_ms"].as_f64().unwrap();
            prop_assert!((ms - micros as f64 / 1000.0).abs() <= 1e-3 * ms.max(1.0));
        }
    }
}
