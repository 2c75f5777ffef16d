//! Drift per served version and window, and the shadow comparison report.

use coffer_admin_api::reports::{DriftAnswer, Psi, ShadowReport, WindowReport};

use super::line;
use crate::format::{number, one_line, percent, percent_fixed, psi, scientific, time, time_ms};

/// How many features a drift window lists besides those that read `watch` or `act`.
const DRIFT_TOP_FEATURES: usize = 5;

/// `models drift NAME`: per served version, per window, the score's PSI and the
/// features that moved.
pub fn drift(d: &DriftAnswer) -> String {
    let mut out = String::new();
    if d.versions.is_empty() {
        line!(out, "no drift reports for {}", one_line(&d.model, 100));
        return out;
    }
    for (i, r) in d.versions.iter().enumerate() {
        if i > 0 {
            line!(out);
        }
        line!(
            out,
            "{}@{}  (watch >= {}, act >= {}, min rows {})",
            one_line(&r.model, 100),
            one_line(&r.version, 100),
            number(r.psi_watch),
            number(r.psi_act),
            r.min_rows
        );
        if r.windows.is_empty() {
            line!(out, "(no windows yet)");
        }
        for w in &r.windows {
            window(&mut out, w, r.min_rows);
        }
    }
    out
}

fn window(out: &mut String, w: &WindowReport, min_rows: u64) {
    let head = format!(
        "{:<13}  start {}  rows {}",
        one_line(&w.window, 40),
        time(Some(w.start)),
        w.rows
    );
    if w.rows < min_rows {
        line!(out, "{head}  (too few rows for a reading)");
        return;
    }
    match &w.score {
        Some(score) => line!(
            out,
            "{head}  score PSI {} {}",
            psi(Some(score.psi)),
            one_line(&score.reading, 20)
        ),
        None => line!(out, "{head}  score PSI n/a"),
    }
    let by_psi = |a: &&Psi, b: &&Psi| b.psi.total_cmp(&a.psi);
    let (mut moved, mut stable): (Vec<&Psi>, Vec<&Psi>) =
        w.features.iter().partition(|f| f.reading != "stable");
    moved.sort_by(by_psi);
    stable.sort_by(by_psi);
    let room = DRIFT_TOP_FEATURES.saturating_sub(moved.len());
    for f in moved.into_iter().chain(stable.into_iter().take(room)) {
        line!(
            out,
            "  {:<48} {:>8}  {}",
            one_line(&f.name, 48),
            psi(Some(f.psi)),
            one_line(&f.reading, 20)
        );
    }
}

/// `models shadow NAME VERSION`: the line that confirms it started.
pub fn shadow_started(s: &ShadowReport) -> String {
    format!(
        "{} now shadows {}@{} on {} of requests\n",
        one_line(&s.candidate, 100),
        one_line(&s.model, 100),
        one_line(&s.active, 100),
        percent(s.fraction, 2)
    )
}

/// `models shadow-report NAME` (and after `shadow-stop`).
pub fn shadow_report(s: &ShadowReport) -> String {
    let mut out = String::new();
    line!(out, "shadow of {}", one_line(&s.model, 100));
    line!(out, "  candidate:     {}", one_line(&s.candidate, 100));
    line!(out, "  active:        {}", one_line(&s.active, 100));
    line!(
        out,
        "  fraction:      {} of requests",
        percent(s.fraction, 2)
    );
    line!(out, "  since:         {}", time_ms(s.started_at_ms));
    line!(
        out,
        "  rows compared: {} ({} requests sampled)",
        s.rows,
        s.stats.requests
    );
    line!(
        out,
        "  agreement:     {} (decision threshold {})",
        percent_fixed(s.agreement),
        number(s.decision_threshold)
    );
    line!(out, "  mean abs diff: {}", scientific(s.mean_abs_diff));
    line!(out, "  max abs diff:  {}", scientific(Some(s.max_abs_diff)));
    line!(out, "  score PSI:     {}", psi(s.score_psi));
    line!(out, "  skipped:       {}", s.stats.skipped);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_admin_api::reports::{DriftReport, ShadowStats};

    fn psi_of(name: &str, value: f64, reading: &str) -> Psi {
        Psi {
            name: name.into(),
            psi: value,
            reading: reading.into(),
        }
    }

    #[test]
    fn drift_lists_moved_features_first_and_fills_up_with_the_largest_stable_ones() {
        let mut features: Vec<Psi> = (0..8)
            .map(|i| psi_of(&format!("f{i}"), f64::from(i) / 1000.0, "stable"))
            .collect();
        features.push(psi_of("duration", 0.3, "act"));
        let answer = DriftAnswer {
            model: "credit-lr".into(),
            versions: vec![DriftReport {
                model: "credit-lr".into(),
                version: "2.0.0".into(),
                psi_watch: 0.1,
                psi_act: 0.25,
                min_rows: 100,
                windows: vec![
                    WindowReport {
                        window: "hour".into(),
                        start: 0,
                        rows: 500,
                        score: Some(psi_of("score", 0.05, "stable")),
                        features,
                    },
                    WindowReport {
                        window: "day".into(),
                        start: 0,
                        rows: 10,
                        score: None,
                        features: vec![],
                    },
                ],
            }],
        };
        let text = drift(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "credit-lr@2.0.0  (watch >= 0.1, act >= 0.25, min rows 100)"
        );
        assert!(lines[1].ends_with("score PSI 0.0500 stable"), "{text}");
        assert!(lines[2].trim_start().starts_with("duration") && lines[2].ends_with("act"));
        // Four stable features fill the top five, largest first.
        assert!(lines[3].trim_start().starts_with("f7"), "{text}");
        assert!(lines[6].trim_start().starts_with("f4"), "{text}");
        assert!(lines[7].contains("too few rows for a reading"), "{text}");
        assert_eq!(lines.len(), 8, "{text}");
    }

    #[test]
    fn the_shadow_report_shows_agreement_and_differences() {
        let report = ShadowReport {
            model: "credit-lr".into(),
            candidate: "3.0.0".into(),
            active: "2.0.0".into(),
            fraction: 0.1,
            started_at_ms: 0,
            decision_threshold: 0.5,
            rows: 900,
            agreement: Some(0.98765),
            mean_abs_diff: None,
            max_abs_diff: 0.0123,
            score_psi: Some(0.01),
            stats: ShadowStats {
                requests: 300,
                skipped: 2,
                ..ShadowStats::default()
            },
        };
        let text = shadow_report(&report);
        assert!(
            text.contains("  rows compared: 900 (300 requests sampled)"),
            "{text}"
        );
        assert!(
            text.contains("  agreement:     98.77% (decision threshold 0.5)"),
            "{text}"
        );
        assert!(text.contains("  mean abs diff: n/a"), "{text}");
        assert!(text.contains("  max abs diff:  1.23e-2"), "{text}");
        assert!(text.contains("  skipped:       2"), "{text}");
        assert_eq!(
            shadow_started(&report),
            "3.0.0 now shadows credit-lr@2.0.0 on 10% of requests\n"
        );
    }
}
