//! When a site may change what it serves: `sync.change_window` (e.g. `Mon-Fri
//! 19:00-23:00`, several separated by commas) in the site's local time (`sync.time_zone`,
//! an IANA name, or the system's), and a release's own "not before" time. The agent
//! downloads and imports any time; it activates only when both allow it, and otherwise
//! records the release as awaiting its window and looks again at the next poll.
//!
//! Paced rollouts (`coffer-release pace`): a release's share of sites grows from its
//! start; each site's place in line is a hash of its `site_id` and the release
//! ([`pace_position`]), so every site knows its turn and no central scheduler is needed,
//! and a different release takes the sites in a different order.

use coffer_release::layout::Pace;
use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use sha2::{Digest, Sha256};

/// One window: a set of weekdays and a time range on each (ending on the next day when
/// the end is not after the start, so `Fri 22:00-02:00` runs into Saturday).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    /// Monday = 0.
    days: [bool; 7],
    start: Time,
    end: Time,
}

/// `sync.change_window`: activation only inside one of its spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeWindow {
    spans: Vec<Span>,
    text: String,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(s: &str) -> Result<usize, String> {
    let lower = s.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| lower == *d)
        .ok_or_else(|| format!("{s:?} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

fn days(s: &str) -> Result<[bool; 7], String> {
    let mut out = [false; 7];
    for part in s.split('+') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    out[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => out[day(part)?] = true,
        }
    }
    Ok(out)
}

fn time(s: &str) -> Result<Time, String> {
    let bad = || format!("{s:?} is not a time of day (HH:MM, 00:00 to 24:00)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if (h, m) == (24, 0) {
        return Ok(Time::MAX);
    }
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

impl ChangeWindow {
    /// Parses `Mon-Fri 19:00-23:00, Sat+Sun 08:00-12:00`.
    pub fn parse(text: &str) -> Result<ChangeWindow, String> {
        let mut spans = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (d, t) = part.split_once(char::is_whitespace).ok_or_else(|| {
                format!("{part:?}: write days and hours, e.g. \"Mon-Fri 19:00-23:00\"")
            })?;
            let (start, end) = t
                .trim()
                .split_once('-')
                .ok_or_else(|| format!("{t:?}: write a time range, e.g. 19:00-23:00"))?;
            let (start, end) = (time(start.trim())?, time(end.trim())?);
            if start == end {
                return Err(format!("{part:?}: the window is empty"));
            }
            spans.push(Span {
                days: days(d)?,
                start,
                end,
            });
        }
        Ok(ChangeWindow {
            spans,
            text: text.trim().to_string(),
        })
    }

    /// Whether `at` (in the site's time zone) is inside a span.
    pub fn contains(&self, at: &jiff::Zoned) -> bool {
        let today = usize::from(at.weekday().to_monday_zero_offset().unsigned_abs());
        let yesterday = (today + 6) % 7;
        let now = at.time();
        self.spans.iter().any(|s| {
            if s.start < s.end {
                s.days[today] && s.start <= now && now < s.end
            } else {
                // Past midnight: from the start on a listed day to the end on the next.
                (s.days[today] && now >= s.start) || (s.days[yesterday] && now < s.end)
            }
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A site's place in line for a paced release, in 0..1. A site without a `site_id` is
/// last: it activates a paced release once the ramp reaches every site.
pub fn pace_position(site_id: &str, model: &str, version: &str) -> f64 {
    if site_id.is_empty() {
        return 1.0 - f64::EPSILON;
    }
    let digest = Sha256::new()
        .chain_update(b"coffer-pace\0")
        .chain_update(site_id.as_bytes())
        .chain_update(b"\0")
        .chain_update(model.as_bytes())
        .chain_update(b"\0")
        .chain_update(version.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits: exact in an f64, below 1.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// A paced release as a site sees it: the ramp, its start, and the site's place.
#[derive(Debug, Clone)]
pub struct Paced<'a> {
    pub pace: &'a Pace,
    pub start: Timestamp,
    pub position: f64,
}

/// Why a release may not be activated now, if it may not: before its "not before" time,
/// before this site's turn in a paced rollout, or outside the change window.
pub fn activation_waits(
    window: Option<&ChangeWindow>,
    zone: &TimeZone,
    not_before: Option<Timestamp>,
    paced: Option<&Paced<'_>>,
    now: Timestamp,
) -> Option<String> {
    if let Some(nb) = not_before.filter(|nb| now < *nb) {
        return Some(format!("the release is not to be activated before {nb}"));
    }
    if let Some(p) = paced {
        let elapsed = now.duration_since(p.start).as_secs_f64();
        let share = p.pace.share(elapsed);
        if p.position >= share {
            let turn = p.pace.turn_after_secs(p.position);
            let at = p
                .start
                .checked_add(jiff::SignedDuration::from_secs_f64(turn.min(1e15)))
                .unwrap_or(Timestamp::MAX);
            return Some(format!(
                "paced rollout at {:.2}% of the sites; this site's turn comes at {at}",
                share * 100.0
            ));
        }
    }
    let window = window?;
    let local = now.to_zoned(zone.clone());
    (!window.contains(&local)).then(|| {
        format!(
            "imported; activation waits for the change window {} (site time now {})",
            window.as_str(),
            local.strftime("%a %H:%M %Z")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Zoned {
        // 2026-12-07 is a Monday.
        format!("{s}[UTC]").parse().unwrap()
    }

    #[test]
    fn weekday_evenings_only() {
        let w = ChangeWindow::parse("Mon-Fri 19:00-23:00").unwrap();
        assert!(w.contains(&at("2026-12-07T19:00")));
        assert!(w.contains(&at("2026-12-11T22:59")));
        assert!(!w.contains(&at("2026-12-07T23:00")), "the end is outside");
        assert!(!w.contains(&at("2026-12-07T18:59")));
        assert!(!w.contains(&at("2026-12-12T20:00")), "Saturday");
    }

    #[test]
    fn windows_past_midnight_and_lists_of_days() {
        let w = ChangeWindow::parse("Fri 22:00-02:00, Sat+Sun 08:00-12:00").unwrap();
        assert!(w.contains(&at("2026-12-11T23:30")), "Friday night");
        assert!(w.contains(&at("2026-12-12T01:59")), "into Saturday");
        assert!(!w.contains(&at("2026-12-12T02:00")));
        assert!(
            !w.contains(&at("2026-12-08T01:00")),
            "Monday night into Tuesday is not Friday's"
        );
        assert!(w.contains(&at("2026-12-13T09:00")), "Sunday morning");
        assert!(!w.contains(&at("2026-12-13T12:00")));
        let all_day = ChangeWindow::parse("Sun-Mon 00:00-24:00").unwrap();
        assert!(all_day.contains(&at("2026-12-07T23:59")));
        assert!(all_day.contains(&at("2026-12-13T00:00")));
        assert!(!all_day.contains(&at("2026-12-08T12:00")));
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        for (text, says) in [
            ("Mon-Fri", "write days and hours"),
            ("Mon-Fry 19:00-23:00", "not a day"),
            ("Mon 19:00", "time range"),
            ("Mon 25:00-26:00", "not a time of day"),
            ("Mon 19:00-19:00", "empty"),
        ] {
            let err = ChangeWindow::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn not_before_and_the_window_both_hold_activation() {
        let w = ChangeWindow::parse("Mon 19:00-23:00").unwrap();
        let utc = TimeZone::UTC;
        let monday_8pm: Timestamp = "2026-12-07T20:00:00Z".parse().unwrap();
        let monday_noon: Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
        assert_eq!(
            activation_waits(Some(&w), &utc, None, None, monday_8pm),
            None
        );
        let why = activation_waits(Some(&w), &utc, None, None, monday_noon).unwrap();
        assert!(
            why.contains("Mon 19:00-23:00") && why.contains("Mon 12:00"),
            "{why}"
        );
        let later: Timestamp = "2026-12-08T00:00:00Z".parse().unwrap();
        let why = activation_waits(Some(&w), &utc, Some(later), None, monday_8pm).unwrap();
        assert!(
            why.contains("not to be activated before 2026-12-08"),
            "{why}"
        );
        assert_eq!(
            activation_waits(None, &utc, Some(monday_noon), None, monday_8pm),
            None
        );
        // The site's zone decides: 20:00 UTC is 05:00 the next day in Tokyo.
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        assert!(activation_waits(Some(&w), &tokyo, None, None, monday_8pm).is_some());
    }

    #[test]
    fn a_paced_release_reaches_each_site_in_its_turn() {
        // 1% at the start, doubling every hour: 100% after log2(100) = 6.64 hours.
        let pace = Pace {
            start: "2026-12-07T00:00:00Z".into(),
            first_basis_points: 100,
            double_every_secs: 3600,
        };
        let start: Timestamp = pace.start.parse().unwrap();
        let at = |h: f64| {
            start
                .checked_add(jiff::SignedDuration::from_secs_f64(h * 3600.0))
                .unwrap()
        };
        let utc = TimeZone::UTC;
        let site = |position| Paced {
            pace: &pace,
            start,
            position,
        };
        // A site at 0.3 waits until the share passes 30%: log2(30) = 4.9 hours.
        let why = activation_waits(None, &utc, None, Some(&site(0.3)), at(4.0)).unwrap();
        assert!(why.contains("at 16.00% of the sites"), "{why}");
        assert!(why.contains("2026-12-07T04:54"), "{why}");
        assert_eq!(
            activation_waits(None, &utc, None, Some(&site(0.3)), at(5.0)),
            None
        );
        // Before the start nobody goes; after 6.64 hours everybody does.
        assert!(activation_waits(None, &utc, None, Some(&site(0.0)), at(-1.0)).is_some());
        assert_eq!(
            activation_waits(None, &utc, None, Some(&site(0.999)), at(6.7)),
            None
        );

        // Places: deterministic, spread over 0..1, different for another release, last
        // for a site without an id.
        let p = pace_position("branch-042", "credit-lr", "2.0.0");
        assert_eq!(p, pace_position("branch-042", "credit-lr", "2.0.0"));
        assert_ne!(p, pace_position("branch-042", "credit-lr", "3.0.0"));
        assert!(pace_position("", "credit-lr", "2.0.0") > 0.999);
        let below_half = (0..1000)
            .filter(|i| pace_position(&format!("branch-{i}"), "credit-lr", "2.0.0") < 0.5)
            .count();
        assert!(
            (430..570).contains(&below_half),
            "{below_half} of 1000 below 0.5"
        );
    }
}
