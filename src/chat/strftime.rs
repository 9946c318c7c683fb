//! `strftime_now(fmt)`: the current time formatted like Python's `datetime.now().strftime(fmt)`
//! (glibc directives, C locale). The clock is read as UTC — Python uses the local zone, so the two
//! agree where `TZ` is UTC (servers, CI, the test oracle). `%z` and `%Z` print nothing, as they do
//! for Python's naive `datetime.now()`.

use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tm {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micro: u32,
    /// 0 = Sunday
    pub weekday: u32,
    /// 1..=366
    pub yday: u32,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Civil date from days since 1970-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Tm {
    /// Break down a Unix time (seconds and microseconds) as UTC.
    pub(crate) fn from_unix(secs: i64, micro: u32) -> Tm {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil(days);
        let cum = [0u32, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yday = cum[month as usize - 1] + day + u32::from(month > 2 && is_leap(year));
        Tm {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            micro,
            weekday: (days + 4).rem_euclid(7) as u32,
            yday,
        }
    }

    fn now() -> Tm {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Tm::from_unix(d.as_secs() as i64, d.subsec_micros())
    }

    /// Week of the year with weeks starting on `first` (0 = Sunday, 1 = Monday), as `%U`/`%W`.
    fn week(&self, first: u32) -> u32 {
        let wd = (self.weekday + 7 - first) % 7;
        (self.yday + 6 - wd) / 7
    }
}

/// Format the current UTC time.
pub(crate) fn strftime_now(fmt: &str) -> String {
    strftime(&Tm::now(), fmt)
}

/// Format `t` with C `strftime` directives (plus glibc's `%-d` style no-padding flag).
pub(crate) fn strftime(t: &Tm, fmt: &str) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let pad = it.next_if_eq(&'-').is_none();
        let Some(d) = it.next() else {
            out.push('%');
            break;
        };
        let num = |v: i64, w: usize| if pad { format!("{v:0w$}") } else { v.to_string() };
        let sp = |v: i64| if pad { format!("{v:2}") } else { v.to_string() };
        let h12 = i64::from(if t.hour % 12 == 0 { 12 } else { t.hour % 12 });
        let s = match d {
            'a' => DAYS[t.weekday as usize][..3].to_string(),
            'A' => DAYS[t.weekday as usize].to_string(),
            'b' | 'h' => MONTHS[t.month as usize - 1][..3].to_string(),
            'B' => MONTHS[t.month as usize - 1].to_string(),
            'C' => num(t.year.div_euclid(100), 2),
            'd' => num(t.day.into(), 2),
            'e' => sp(t.day.into()),
            'f' => format!("{:06}", t.micro),
            'H' => num(t.hour.into(), 2),
            'I' => num(h12, 2),
            'j' => num(t.yday.into(), 3),
            'k' => sp(t.hour.into()),
            'l' => sp(h12),
            'm' => num(t.month.into(), 2),
            'M' => num(t.minute.into(), 2),
            'n' => "\n".into(),
            'p' => if t.hour < 12 { "AM" } else { "PM" }.into(),
            'S' => num(t.second.into(), 2),
            't' => "\t".into(),
            'u' => (if t.weekday == 0 { 7 } else { t.weekday }).to_string(),
            'U' => num(t.week(0).into(), 2),
            'w' => t.weekday.to_string(),
            'W' => num(t.week(1).into(), 2),
            'y' => num(t.year.rem_euclid(100), 2),
            'Y' => t.year.to_string(),
            'z' | 'Z' => String::new(),
            'D' | 'x' => strftime(t, "%m/%d/%y"),
            'F' => strftime(t, "%Y-%m-%d"),
            'R' => strftime(t, "%H:%M"),
            'T' | 'X' => strftime(t, "%H:%M:%S"),
            'c' => strftime(t, "%a %b %e %H:%M:%S %Y"),
            '%' => "%".into(),
            other => format!("%{}{other}", if pad { "" } else { "-" }),
        };
        out.push_str(&s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday, day 60.
        let t = Tm::from_unix(1_709_211_909, 42);
        assert_eq!(strftime(&t, "%Y-%m-%d %H:%M:%S"), "2024-02-29 13:05:09");
        assert_eq!(strftime(&t, "%a %A %b %B %j %p %I %-d %e %f %%"), "Thu Thursday Feb February 060 PM 01 29 29 000042 %");
        assert_eq!(strftime(&t, "%d %b %Y"), "29 Feb 2024");
        let t = Tm::from_unix(0, 0);
        assert_eq!(strftime(&t, "%c|%U|%W|%u|%w"), "Thu Jan  1 00:00:00 1970|00|00|4|4");
    }
}
