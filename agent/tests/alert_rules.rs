//! The fleet's alerting rules and Grafana dashboards (`dashboards/`): promtool checks the
//! rules and runs their unit tests (`alerts.test.yml`); every dashboard query parses as
//! PromQL (promtool again) and names only metrics that exist; the dashboards follow the
//! conventions their import needs (a `datasource` variable that every panel uses, unique
//! panel ids) and query each series where it lives (site-labelled series from the fleet
//! Prometheus, cofferd's own /metrics without a site).
//!
//! Without promtool (the Debian `prometheus` package, or `PROMTOOL=/path/to/promtool`)
//! the promtool tests print a note and pass, except under CI (`CI` set), where they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Series coffer-agent remote-writes for its site: the site report (`coffer-fleet`'s
/// `site::names`), every one labelled `site`.
const SITE_SERIES: &[&str] = &[
    "coffer_site_info",
    "coffer_site_ready",
    "coffer_site_report_timestamp_seconds",
    "coffer_site_poll_interval_seconds",
    "coffer_site_sync",
    "coffer_site_sync_consecutive_failures",
    "coffer_site_metadata_expires_timestamp_seconds",
    "coffer_site_gpu",
    "coffer_site_model_active",
    "coffer_site_release",
    "coffer_site_download_bytes",
];

/// Series coffer-agent remote-writes from cofferd's telemetry spool (`remote_write.rs`),
/// labelled `site` too.
const SPOOL_SERIES: &[&str] = &[
    "coffer_requests_total",
    "coffer_request_duration_seconds_bucket",
    "coffer_request_duration_seconds_sum",
    "coffer_request_duration_seconds_count",
    "coffer_scoring_rows_total",
    "coffer_scoring_decisions_noisy",
    "coffer_drift_psi",
    "coffer_drift_rows_noisy",
    "coffer_model_active",
    "coffer_telemetry_spool_dropped_total",
];

/// cofferd's own /metrics (scraped, no `site` label): the `coffer_` registry (engines
/// included) and the GPU readings under dcgm-exporter's names.
const COFFERD_SERIES: &[&str] = &[
    "coffer_http_requests_total",
    "coffer_http_request_duration_seconds_bucket",
    "coffer_http_request_duration_seconds_sum",
    "coffer_http_request_duration_seconds_count",
    "coffer_http_in_flight",
    "coffer_http_queue_depth",
    "coffer_http_rejections_total",
    "coffer_http_streams_stalled_total",
    "coffer_tls_reloads_total",
    "coffer_build_info",
    "coffer_engine_restarts_total",
    "coffer_model_requests_total",
    "coffer_model_active_info",
    "coffer_model_activations_total",
    "coffer_chat_prompt_tokens_total",
    "coffer_chat_completion_tokens_total",
    "coffer_chat_time_to_first_token_seconds_bucket",
    "coffer_chat_time_to_first_token_seconds_sum",
    "coffer_chat_time_to_first_token_seconds_count",
    "coffer_chat_inter_token_seconds_bucket",
    "coffer_chat_inter_token_seconds_sum",
    "coffer_chat_inter_token_seconds_count",
    "coffer_chat_slots_busy",
    "coffer_chat_queue_depth",
    "coffer_chat_finished_total",
    "coffer_chat_cancelled_total",
    "coffer_chat_json_checked_total",
    "coffer_chat_json_invalid_total",
    "coffer_chat_empty_answers_total",
    "coffer_chat_completion_tokens_per_request_bucket",
    "coffer_chat_completion_tokens_per_request_sum",
    "coffer_chat_completion_tokens_per_request_count",
    "coffer_chat_prefix_cache_queried_tokens_total",
    "coffer_chat_prefix_cache_hit_tokens_total",
    "coffer_chat_prefix_cache_saved_bytes",
    "coffer_chat_threads",
    "coffer_score_batch_rows_bucket",
    "coffer_score_batch_rows_sum",
    "coffer_score_batch_rows_count",
    "coffer_score_queue_seconds_bucket",
    "coffer_score_queue_seconds_sum",
    "coffer_score_queue_seconds_count",
    "coffer_score_compute_seconds_bucket",
    "coffer_score_compute_seconds_sum",
    "coffer_score_compute_seconds_count",
    "coffer_score_rows_total",
    "coffer_score_queue_full_total",
    "coffer_drift_psi",
    "coffer_drift_rows",
    "coffer_gpu_state",
    "coffer_gpu_present",
    "coffer_gpu_transitions_total",
    "coffer_gpu_fallback_requests_total",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_SLOWDOWN_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_RETIRED_PENDING",
    "DCGM_FI_DEV_ROW_REMAP_PENDING",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
];

/// The row that holds every dcgm-exporter panel, and how each such panel's description
/// starts.
const DCGM_ROW: &str = "GPU (dcgm-exporter)";
const DCGM_NOTE: &str = "Needs dcgm-exporter";

const DASHBOARDS: &[&str] = &["fleet-rollout.json", "branch-appliance.json"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dashboards_dir() -> PathBuf {
    repo().join("dashboards")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs promtool in `dashboards/`; `None` when it is not installed and CI is not set.
fn promtool(args: &[&str]) -> Option<Output> {
    let program = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    match Command::new(&program)
        .args(args)
        .current_dir(dashboards_dir())
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{program:?} not found and CI is set: install promtool (Debian: apt-get install prometheus) or set PROMTOOL"
            );
            eprintln!(
                "note: {program:?} not found, promtool {args:?} skipped (Debian: apt-get install prometheus, or set PROMTOOL)"
            );
            None
        }
        Err(e) => panic!("running {program:?}: {e}"),
    }
}

/// Asserts that promtool succeeded, showing all it said either way.
fn assert_promtool(args: &[&str]) {
    let Some(out) = promtool(args) else { return };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{said}",
        args.join(" "),
        out.status
    );
    println!("promtool {}:\n{said}", args.join(" "));
}

#[test]
fn promtool_checks_the_alerting_rules() {
    assert_promtool(&["check", "rules", "alerts.yml"]);
}

#[test]
fn the_alerting_rules_pass_their_unit_tests() {
    assert_promtool(&["test", "rules", "alerts.test.yml"]);
}

/// The metric names in a query or a file: `coffer_…` (lower case) and `DCGM_…` (upper
/// case) tokens, so `coffer_site_Info` reads as `coffer_site_` and fails the allowlist.
fn metric_names(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let lower = text[i..].starts_with("coffer_");
        if starts_word && (lower || text[i..].starts_with("DCGM_")) {
            let tail = |b: &u8| {
                *b == b'_'
                    || b.is_ascii_digit()
                    || if lower {
                        b.is_ascii_lowercase()
                    } else {
                        b.is_ascii_uppercase()
                    }
            };
            let len = bytes[i..].iter().take_while(|b| tail(b)).count();
            out.push(text[i..i + len].to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    out
}

fn allowed() -> BTreeSet<&'static str> {
    SITE_SERIES
        .iter()
        .chain(SPOOL_SERIES)
        .chain(COFFERD_SERIES)
        .copied()
        .collect()
}

fn is_site_series(name: &str) -> bool {
    (SITE_SERIES.contains(&name) || SPOOL_SERIES.contains(&name)) && !COFFERD_SERIES.contains(&name)
}

fn is_cofferd_series(name: &str) -> bool {
    COFFERD_SERIES.contains(&name) && !SPOOL_SERIES.contains(&name)
}

/// Every panel, those inside collapsed rows included, each with the title of the row it
/// sits in (a collapsed row holds its panels; an open one is followed by them).
fn panels(dashboard: &Value) -> Vec<(&Value, Option<String>)> {
    let mut out = Vec::new();
    let mut row = None;
    for p in dashboard["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            row = p["title"].as_str().map(String::from);
            out.push((p, None));
            for nested in p["panels"].as_array().into_iter().flatten() {
                out.push((nested, row.clone()));
            }
        } else {
            out.push((p, row.clone()));
        }
    }
    out
}

fn targets(panel: &Value) -> &[Value] {
    panel["targets"].as_array().map_or(&[], |t| t.as_slice())
}

fn load(name: &str) -> Value {
    let path = dashboards_dir().join(name);
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A template variable's query, whichever shape Grafana saved it in.
fn variable_query(v: &Value) -> &str {
    v["query"]["query"]
        .as_str()
        .or(v["query"].as_str())
        .unwrap_or_default()
}

fn variable<'a>(dashboard: &'a Value, name: &str) -> Option<&'a Value> {
    dashboard["templating"]["list"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
}

#[test]
fn dashboards_are_well_formed() {
    let datasource = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let allowed = allowed();
    let mut uids = BTreeSet::new();
    for name in DASHBOARDS {
        let d = load(name);
        assert_eq!(d["schemaVersion"], 39, "{name}");
        assert!(uids.insert(d["uid"].to_string()), "{name}: uid used twice");
        let ds =
            variable(&d, "datasource").unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(ds["type"], "datasource", "{name}");
        assert_eq!(ds["query"], "prometheus", "{name}");
        let mut queries = Vec::new();
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                assert_eq!(
                    v["datasource"], datasource,
                    "{name}: variable {}",
                    v["name"]
                );
                queries.push(variable_query(v).to_string());
            }
        }
        let mut ids = BTreeSet::new();
        for (p, _) in panels(&d) {
            let title = &p["title"];
            assert!(
                ids.insert(p["id"].as_u64().expect("numeric id")),
                "{name}: panel id {} twice",
                p["id"]
            );
            assert_eq!(p["datasource"], datasource, "{name}: panel {title}");
            if p["type"] == "row" {
                continue;
            }
            assert!(
                !targets(p).is_empty(),
                "{name}: panel {title} has no targets"
            );
            let mut refs = BTreeSet::new();
            for t in targets(p) {
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(
                    !expr.trim().is_empty(),
                    "{name}: panel {title}: a target without expr"
                );
                let r = t["refId"].as_str().unwrap_or_default();
                assert!(
                    !r.is_empty() && refs.insert(r),
                    "{name}: panel {title}: refId {r:?} missing or twice"
                );
                if !t["datasource"].is_null() {
                    assert_eq!(t["datasource"], datasource, "{name}: panel {title}");
                }
                queries.push(expr.to_string());
            }
        }
        for q in &queries {
            for m in metric_names(q) {
                assert!(
                    allowed.contains(m.as_str()),
                    "{name}: unknown metric {m:?} in {q}"
                );
            }
        }
    }
}

#[test]
fn dashboards_have_their_variables() {
    let fleet = load("fleet-rollout.json");
    for (var, query) in [
        ("model", "label_values(coffer_site_release, model)"),
        ("ring", "label_values(coffer_site_info, ring)"),
    ] {
        let v = variable(&fleet, var).unwrap_or_else(|| panic!("fleet: no {var} variable"));
        assert_eq!(variable_query(v), query);
        assert_eq!(v["includeAll"], true, "{var}");
        assert_eq!(v["allValue"], ".*", "{var}");
    }
    let branch = load("branch-appliance.json");
    let site = variable(&branch, "site").expect("branch: no site variable");
    assert_eq!(variable_query(site), "label_values(coffer_site_info, site)");
}

/// Site-labelled series come from the fleet Prometheus: the fleet dashboard uses only
/// them, and the branch dashboard selects them by `site="$site"`. cofferd's own series
/// have no site, so no query that reads them may filter on it; and none mixes the two.
#[test]
fn dashboards_query_each_series_where_it_lives() {
    for name in DASHBOARDS {
        let d = load(name);
        for (p, _) in panels(&d) {
            for t in targets(p) {
                let expr = t["expr"].as_str().unwrap_or_default();
                let names = metric_names(expr);
                let site = names.iter().filter(|n| is_site_series(n)).count();
                let own = names.iter().filter(|n| is_cofferd_series(n)).count();
                let context = format!("{name}: panel {}: {expr}", p["title"]);
                assert!(
                    site == 0 || own == 0,
                    "{context}: mixes site and cofferd series"
                );
                if own > 0 {
                    assert!(
                        !expr.contains("site"),
                        "{context}: cofferd's series have no site label"
                    );
                    assert_ne!(
                        *name, "fleet-rollout.json",
                        "{context}: the fleet dashboard reads the fleet Prometheus"
                    );
                }
                if *name == "branch-appliance.json" && site > 0 {
                    let filtered = expr.matches(r#"site="$site""#).count();
                    assert!(
                        filtered >= site,
                        "{context}: a site series without site=\"$site\""
                    );
                }
            }
        }
    }
}

#[test]
fn dcgm_panels_sit_in_their_row_and_say_what_they_need() {
    let d = load("branch-appliance.json");
    let mut seen = BTreeSet::new();
    for (p, row) in panels(&d) {
        let in_row = row.as_deref() == Some(DCGM_ROW);
        let dcgm: Vec<String> = targets(p)
            .iter()
            .flat_map(|t| metric_names(t["expr"].as_str().unwrap_or_default()))
            .filter(|m| m.starts_with("DCGM_"))
            .collect();
        let uses_dcgm = !dcgm.is_empty();
        seen.extend(dcgm);
        let title = &p["title"];
        if uses_dcgm {
            assert!(
                in_row,
                "panel {title} reads DCGM metrics outside the {DCGM_ROW:?} row"
            );
        }
        if in_row {
            let description = p["description"].as_str().unwrap_or_default();
            assert!(
                description.starts_with(DCGM_NOTE),
                "panel {title}: description {description:?}"
            );
        }
    }
    for m in [
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_XID_ERRORS",
    ] {
        assert!(seen.contains(m), "no panel shows {m}");
    }
}

/// Grafana's variables replaced by values that parse: intervals by a duration, the rest
/// by a plain word.
fn substitute_variables(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').expect("closing brace");
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        out.push_str(match name {
            "__rate_interval" | "__interval" | "__range" => "5m",
            _ => "x",
        });
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

#[test]
fn dashboard_queries_parse_as_promql() {
    let mut rules = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    let mut count = 0;
    for name in DASHBOARDS {
        let d = load(name);
        for (p, _) in panels(&d) {
            for t in targets(p) {
                let expr = substitute_variables(t["expr"].as_str().unwrap_or_default());
                // A JSON string is a YAML double-quoted scalar.
                let quoted = serde_json::to_string(&expr).unwrap();
                rules.push_str(&format!(
                    "      - record: dashboard:query_{count}\n        expr: {quoted}\n"
                ));
                count += 1;
            }
        }
    }
    assert!(count > 40, "only {count} queries found");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    assert_promtool(&["check", "rules", file.to_str().unwrap()]);
}

#[test]
fn every_alert_is_labelled_annotated_and_tested_both_ways() {
    let rules = read(&dashboards_dir().join("alerts.yml"));
    let tests = read(&dashboards_dir().join("alerts.test.yml"));
    for m in metric_names(&rules) {
        assert!(
            allowed().contains(m.as_str()),
            "alerts.yml: unknown metric {m:?}"
        );
    }
    // Each alert's text runs from its `- alert:` line to the next rule or group.
    let mut alerts: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in rules.lines() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- alert:") {
            current = Some(name.trim().to_string());
            alerts.insert(name.trim().to_string(), String::new());
        } else if t.starts_with("- name:") || t.starts_with("- record:") {
            current = None;
        } else if let Some(c) = &current {
            let text = alerts.get_mut(c).unwrap();
            text.push_str(line);
            text.push('\n');
        }
    }
    assert!(alerts.len() >= 11, "{:?}", alerts.keys());
    // In the tests: `alertname: X` followed by `exp_alerts: []` (quiet) or `exp_alerts:`
    // and a list (fires, with labels and annotations).
    let lines: Vec<&str> = tests
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for (alert, text) in &alerts {
        for key in ["severity:", "summary:", "description:"] {
            assert!(text.contains(key), "{alert}: no {key}");
        }
        let (mut fires, mut quiet) = (false, false);
        for (i, l) in lines.iter().enumerate() {
            if l.strip_prefix("alertname:").map(str::trim) != Some(alert.as_str()) {
                continue;
            }
            match lines.get(i + 1).copied() {
                Some("exp_alerts: []") => quiet = true,
                Some("exp_alerts:") => {
                    let case: Vec<&str> = lines[i + 2..]
                        .iter()
                        .copied()
                        .take_while(|l| !l.starts_with("- eval_time:") && !l.starts_with("- name:"))
                        .collect();
                    fires |= case.first().is_some_and(|l| l.starts_with("- exp_labels:"))
                        && case.contains(&"exp_annotations:");
                }
                other => panic!("{alert}: alertname followed by {other:?}"),
            }
        }
        assert!(
            fires,
            "{alert}: no test case where it fires (with exp_labels and exp_annotations)"
        );
        assert!(
            quiet,
            "{alert}: no test case where it stays quiet (exp_alerts: [])"
        );
    }
}

/// The allowlist itself is checked against the programs that write the series: the site
/// report's names (`coffer-fleet`), the remote-write names (`coffer-agent`), and the
/// names cofferd, its engines and its GPU monitor register.
#[test]
fn the_allowlist_names_series_that_exist() {
    let literals = |paths: &[&str], prefix: &str| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for p in paths {
            let text = read(&repo().join(p));
            for piece in text.split('"').skip(1).step_by(2) {
                if piece.starts_with(prefix) {
                    out.insert(piece.to_string());
                }
            }
        }
        out
    };
    let site = literals(&["fleet/src/site.rs"], "coffer_site_");
    let listed: BTreeSet<String> = SITE_SERIES.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        site, listed,
        "coffer-fleet's site::names against SITE_SERIES"
    );

    let spool = literals(&["agent/src/remote_write.rs"], "coffer_");
    let listed: BTreeSet<String> = SPOOL_SERIES.iter().map(|s| s.to_string()).collect();
    assert_eq!(spool, listed, "remote_write.rs against SPOOL_SERIES");

    let mut sources = String::new();
    let mut dirs = vec![repo().join("daemon/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&read(&path));
            }
        }
    }
    sources.push_str(&read(&repo().join("chat/src/metrics.rs")));
    sources.push_str(&read(&repo().join("score/src/metrics.rs")));
    for name in COFFERD_SERIES {
        // Registered without the registry's `coffer_` prefix and the suffixes the
        // exposition adds (`_total` for counters, `_bucket`/`_sum`/`_count` for histograms).
        let mut stem = name.strip_prefix("coffer_").unwrap_or(name);
        for suffix in ["_total", "_bucket", "_sum", "_count"] {
            stem = stem.strip_suffix(suffix).unwrap_or(stem);
        }
        assert!(
            sources.contains(&format!("\"{stem}\"")),
            "{name}: {stem:?} is registered nowhere in cofferd"
        );
    }
}

#[test]
fn metric_names_are_read_as_tokens() {
    assert_eq!(
        metric_names(
            r#"sum(rate(coffer_http_requests_total{route="/x"}[5m])) / DCGM_FI_DEV_GPU_UTIL"#
        ),
        ["coffer_http_requests_total", "DCGM_FI_DEV_GPU_UTIL"]
    );
    assert_eq!(
        metric_names("coffer_site_Info xcoffer_site_info"),
        ["coffer_site_"]
    );
    assert_eq!(
        substitute_variables(r#"rate(x{a=~"$ring", b="${site}"}[$__rate_interval])"#),
        r#"rate(x{a=~"x", b="x"}[5m])"#
    );
}
