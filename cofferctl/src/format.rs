//! How values look in tables and lines: times, sizes, percentages, PSI, and
//! daemon-supplied text made safe for a terminal.

/// The first second of year 10000, past which humantime cannot format.
const YEAR_10000: u64 = 253_402_300_800;

/// Unix seconds as RFC 3339 UTC; `-` when absent, the bare number past year 9999.
pub fn time(secs: Option<u64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s >= YEAR_10000 => s.to_string(),
        Some(s) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
        )
        .to_string(),
    }
}

/// Unix milliseconds (the registry's times) as [`time`] shows seconds.
pub fn time_ms(ms: u64) -> String {
    time(Some(ms / 1000))
}

/// Bytes as decimal megabytes with one decimal.
pub fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// Bytes in MB, for tables that compare sizes.
pub fn size(bytes: u64) -> String {
    format!("{} MB", mb(bytes))
}

/// Bytes in the unit that suits them (decimal: kB, MB, GB).
pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b < 1_000 => format!("{b} B"),
        b if b < 1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        b if b < 1_000_000_000 => format!("{} MB", mb(b)),
        b => format!("{:.2} GB", b as f64 / 1e9),
    }
}

/// An optional text, or `-`.
pub fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

/// Daemon-supplied text for one table cell or line: control characters (escape
/// sequences, newlines) become spaces, and more than `max` characters end in `...`.
pub fn one_line(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        clean
    } else {
        let mut cut: String = clean.chars().take(max.saturating_sub(3)).collect();
        cut.push_str("...");
        cut
    }
}

/// A PSI value, or `n/a`.
pub fn psi(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |p| format!("{p:.4}"))
}

/// A fraction as a percentage with at most `decimals` decimals (`10%`, `2.5%`).
pub fn percent(f: f64, decimals: usize) -> String {
    let s = format!("{:.decimals$}", f * 100.0);
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}%")
}

/// A fraction as a percentage with two decimals (`99.12%`), or `n/a`.
pub fn percent_fixed(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |f| format!("{:.2}%", f * 100.0))
}

/// A number in scientific notation, or `n/a`.
pub fn scientific(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |f| format!("{f:.2e}"))
}

/// A plain number as JSON writes it (`0.1`, `0.25`).
pub fn number(v: f64) -> String {
    serde_json::Number::from_f64(v).map_or_else(|| "-".into(), |n| n.to_string())
}

/// An enum's name as the admin API spells it (`chat`, `gguf`, `FP32`).
pub fn wire_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sizes_and_percentages() {
        assert_eq!(time(None), "-");
        assert_eq!(time(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(time(Some(YEAR_10000)), YEAR_10000.to_string());
        assert_eq!(time_ms(1_700_000_000_999), "2023-11-14T22:13:20Z");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500), "1.5 kB");
        assert_eq!(human_size(98_362_432), "98.4 MB");
        assert_eq!(human_size(2_500_000_000), "2.50 GB");
        assert_eq!(size(600_005), "0.6 MB");
        assert_eq!(percent(0.1, 2), "10%");
        assert_eq!(percent(0.025, 2), "2.5%");
        assert_eq!(percent_fixed(Some(0.99123)), "99.12%");
        assert_eq!(percent_fixed(None), "n/a");
        assert_eq!(scientific(Some(0.000123)), "1.23e-4");
        assert_eq!(psi(Some(0.123456)), "0.1235");
        assert_eq!(number(0.25), "0.25");
    }

    #[test]
    fn daemon_text_cannot_move_the_cursor_or_run_on() {
        assert_eq!(one_line("a\x1b[2Jb\nc", 100), "a [2Jb c");
        assert_eq!(one_line("abcdefgh", 6), "abc...");
        assert_eq!(one_line("名前名前", 4), "名前名前");
    }

    #[test]
    fn wire_names_follow_the_api() {
        assert_eq!(wire_name(&coffer_models::Kind::Chat), "chat");
        assert_eq!(wire_name(&coffer_models::Datatype::Fp32), "FP32");
    }
}
