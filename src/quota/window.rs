//! Quota windows: fixed windows aligned to the UTC clock (second … day) and calendar months.

use crate::config::Period;

/// One window of a period: `[start, end)` in unix seconds, and its label in counter keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub period: Period,
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// The window of `period` that contains unix second `now`.
    pub fn of(period: Period, now: u64) -> Self {
        let fixed = |len: u64| {
            let start = now - now % len;
            Window {
                period,
                start,
                end: start + len,
            }
        };
        match period {
            Period::Second => fixed(1),
            Period::Minute => fixed(60),
            Period::Hour => fixed(3_600),
            Period::Day => fixed(86_400),
            Period::Month => {
                let (y, m, _) = civil_from_days((now / 86_400) as i64);
                let start = days_from_civil(y, m, 1) as u64 * 86_400;
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let end = days_from_civil(ny, nm, 1) as u64 * 86_400;
                Window { period, start, end }
            }
        }
    }

    /// The calendar month `year-month` (for billing reports).
    pub fn month(year: i64, month: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return None;
        }
        let start = days_from_civil(year, month, 1) as u64 * 86_400;
        Some(Self::of(Period::Month, start))
    }

    pub fn length(&self) -> u64 {
        self.end - self.start
    }

    /// Label used in counter keys: `2026-11` (month), `2026-11-28` (day), `2026-11-28T13`
    /// (hour), `2026-11-28T13:05` (minute), `2026-11-28T13:05:09` (second). Readable in
    /// `redis-cli`, and a month key is what the billing report reads.
    pub fn label(&self) -> String {
        let mut s = String::with_capacity(19);
        self.write_label(&mut s);
        s
    }

    /// Appends [`Window::label`] to `out` (builds a counter key with one allocation).
    pub fn write_label(&self, out: &mut String) {
        use std::fmt::Write;
        let (y, mo, d) = civil_from_days((self.start / 86_400) as i64);
        let secs = self.start % 86_400;
        let (h, mi, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        let _ = match self.period {
            Period::Month => write!(out, "{y:04}-{mo:02}"),
            Period::Day => write!(out, "{y:04}-{mo:02}-{d:02}"),
            Period::Hour => write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}"),
            Period::Minute => write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}"),
            Period::Second => write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}"),
        };
    }

    /// When the counter of this window may be dropped. Month counters outlive their window by
    /// about 13 months so past months can still be billed; the others go at the window's end.
    pub fn expire_at(&self) -> u64 {
        match self.period {
            Period::Month => self.end + 400 * 86_400,
            _ => self.end + 1,
        }
    }
}

/// RFC 3339 UTC time of a unix second.
pub fn rfc3339(unix: u64) -> String {
    let (y, mo, d) = civil_from_days((unix / 86_400) as i64);
    let secs = unix % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-28T13:05:09Z
    const NOW: u64 = 1_795_871_109;

    #[test]
    fn labels_and_bounds() {
        assert_eq!(rfc3339(NOW), "2026-11-28T13:05:09Z");
        let m = Window::of(Period::Month, NOW);
        assert_eq!(m.label(), "2026-11");
        assert_eq!(rfc3339(m.start), "2026-11-01T00:00:00Z");
        assert_eq!(rfc3339(m.end), "2026-12-01T00:00:00Z");
        assert_eq!(m.length(), 30 * 86_400);
        assert_eq!(Window::of(Period::Day, NOW).label(), "2026-11-28");
        assert_eq!(Window::of(Period::Hour, NOW).label(), "2026-11-28T13");
        assert_eq!(Window::of(Period::Minute, NOW).label(), "2026-11-28T13:05");
        let s = Window::of(Period::Second, NOW);
        assert_eq!(s.label(), "2026-11-28T13:05:09");
        assert_eq!(s.end, NOW + 1);
    }

    #[test]
    fn december_rolls_into_next_year_and_february_is_short() {
        let dec = Window::month(2026, 12).unwrap();
        assert_eq!(rfc3339(dec.end), "2027-01-01T00:00:00Z");
        assert_eq!(Window::month(2028, 2).unwrap().length(), 29 * 86_400);
        assert_eq!(Window::month(2027, 2).unwrap().length(), 28 * 86_400);
        assert!(Window::month(2026, 13).is_none());
    }

    #[test]
    fn civil_round_trip() {
        for days in [-1000i64, 0, 59, 60, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
