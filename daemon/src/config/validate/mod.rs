//! Pure validation of a parsed configuration: no file system, no network. Collects every
//! problem instead of stopping at the first, so an admin fixes a file in one pass.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod engines;

use engines::{chat, embedding};

use super::raw::RawConfig;
use super::{
    AdminConfig, AdmissionConfig, AuditConfig, ClientAuth, Config, FallbackPolicy, GpuConfig,
    GpuThresholds, LogConfig, LogFormat, Problem, ScoringConfig, ServerConfig, StateConfig,
    TelemetryConfig, TlsConfig, parse_log_filter,
};
use crate::audit::{AuditSettings, FsyncPolicy};

/// Collects problems while converting raw values.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, key: &str, what: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            what: what.into(),
            fix: fix.into(),
        });
    }

    fn duration(&mut self, key: &str, value: &str, min: Duration) -> Duration {
        match humantime::parse_duration(value) {
            Ok(d) if d >= min => d,
            Ok(_) => {
                self.problem(
                    key,
                    format!(
                        "{value:?} is shorter than {}",
                        humantime::format_duration(min)
                    ),
                    "use a longer duration",
                );
                min
            }
            Err(e) => {
                self.problem(
                    key,
                    format!("{value:?} is not a duration ({e})"),
                    "write a duration such as \"500ms\", \"10s\" or \"2m\"",
                );
                min
            }
        }
    }

    fn positive(&mut self, key: &str, value: usize) -> usize {
        if value == 0 {
            self.problem(key, "must be greater than 0", "set a positive number");
        }
        value
    }

    fn path(&mut self, key: &str, value: Option<&str>, what: &str) -> PathBuf {
        match value {
            Some(v) if !v.trim().is_empty() => PathBuf::from(v),
            _ => {
                self.problem(
                    key,
                    "is not set",
                    format!("set {key} to the path of {what}"),
                );
                PathBuf::new()
            }
        }
    }
}

fn audit(c: &mut Checker, raw: &RawConfig, state_dir: &std::path::Path) -> AuditConfig {
    let a = &raw.audit;
    let fsync = match a.fsync.as_str() {
        "always" => FsyncPolicy::Always,
        "never" => FsyncPolicy::Never,
        "interval" => FsyncPolicy::Interval(c.duration(
            "audit.fsync_interval",
            &a.fsync_interval,
            Duration::from_millis(1),
        )),
        other => {
            c.problem(
                "audit.fsync",
                format!("{other:?} is not a policy"),
                "use \"always\", \"interval\" or \"never\"",
            );
            FsyncPolicy::Always
        }
    };
    if a.max_segment_bytes < 4096 {
        c.problem(
            "audit.max_segment_bytes",
            format!("{} is too small", a.max_segment_bytes),
            "use at least 4096 (default 64 MiB)",
        );
    }
    if a.max_total_bytes != 0 && a.max_total_bytes < 2 * a.max_segment_bytes {
        c.problem(
            "audit.max_total_bytes",
            format!(
                "{} is less than two segments of audit.max_segment_bytes ({})",
                a.max_total_bytes, a.max_segment_bytes
            ),
            "raise it (default 8 GiB), lower audit.max_segment_bytes, or set 0 to keep everything",
        );
    }
    let max_age = a
        .max_age
        .as_ref()
        .map(|v| c.duration("audit.max_age", v, Duration::from_secs(3600)));
    if a.checkpoint_every == 0 {
        c.problem(
            "audit.checkpoint_every",
            "must be greater than 0",
            "set a positive number such as 1000",
        );
    }
    AuditConfig {
        enabled: a.enabled,
        requests: a.requests,
        settings: AuditSettings {
            dir: a
                .dir
                .as_ref()
                .map(PathBuf::from)
                .unwrap_or_else(|| state_dir.join("audit")),
            fsync,
            max_segment_bytes: a.max_segment_bytes,
            checkpoint_every: a.checkpoint_every.max(1),
            retention: crate::audit::Retention {
                max_total_bytes: a.max_total_bytes,
                max_age,
            },
        },
    }
}

fn telemetry(c: &mut Checker, raw: &RawConfig) -> TelemetryConfig {
    let t = &raw.telemetry;
    let epsilon_ok = |e: f64| e.is_finite() && e > 0.0;
    if let Some(e) = t.decisions_epsilon {
        if !epsilon_ok(e) {
            c.problem(
                "telemetry.decisions_epsilon",
                format!("{e} is not a positive number"),
                "set a positive epsilon such as 0.5, or remove the key to record no decisions",
            );
        }
        if epsilon_ok(e) && e > t.epsilon_per_period {
            c.problem(
                "telemetry.decisions_epsilon",
                format!(
                    "{e} is more than telemetry.epsilon_per_period ({})",
                    t.epsilon_per_period
                ),
                "lower decisions_epsilon or raise epsilon_per_period",
            );
        }
    }
    if !epsilon_ok(t.epsilon_per_period) {
        c.problem(
            "telemetry.epsilon_per_period",
            format!("{} is not a positive number", t.epsilon_per_period),
            "set a positive epsilon budget such as 4.0",
        );
    }
    TelemetryConfig {
        enabled: t.enabled,
        interval: c.duration(
            "telemetry.interval",
            &t.interval,
            Duration::from_millis(100),
        ),
        spool_max_records: c.positive("telemetry.spool_max_records", t.spool_max_records),
        decisions_epsilon: t.decisions_epsilon,
        epsilon_per_period: t.epsilon_per_period,
    }
}

fn gpu(c: &mut Checker, raw: &RawConfig) -> GpuConfig {
    let g = &raw.gpu;
    let mut models = std::collections::BTreeMap::new();
    let mut devices = std::collections::BTreeMap::new();
    for (name, m) in &g.models {
        if let Some(gpu) = m.gpu {
            devices.insert(name.clone(), gpu);
        }
        let key = format!("gpu.models.{name}.policy");
        let policy = match (m.policy.as_str(), &m.cpu_variant, m.shed_max_in_flight) {
            ("fail", None, None) => FallbackPolicy::Fail,
            ("cpu-variant", Some(variant), None) if !variant.trim().is_empty() => {
                FallbackPolicy::CpuVariant(variant.clone())
            }
            ("shed", None, Some(n)) if n > 0 => FallbackPolicy::Shed { max_in_flight: n },
            ("fail" | "cpu-variant" | "shed", _, _) => {
                c.problem(
                    &key,
                    format!("{:?} does not fit the other keys of this model", m.policy),
                    "fail takes no other key; cpu-variant needs cpu_variant (a loaded model name); shed needs shed_max_in_flight > 0",
                );
                continue;
            }
            (other, _, _) => {
                c.problem(
                    &key,
                    format!("{other:?} is not a fallback policy"),
                    "use \"fail\", \"cpu-variant\" or \"shed\"",
                );
                continue;
            }
        };
        models.insert(name.clone(), policy);
    }
    if g.recover_after == 0 {
        c.problem(
            "gpu.recover_after",
            "must be at least 1",
            "set the number of healthy samples before a GPU counts as recovered, e.g. 3",
        );
    }
    GpuConfig {
        enabled: g.enabled,
        interval: c.duration("gpu.interval", &g.interval, Duration::from_millis(50)),
        recover_after: g.recover_after.max(1),
        thresholds: GpuThresholds {
            temperature_margin_c: g.temperature_margin_c,
            sbe_per_sample: g.sbe_per_sample.max(1),
            pcie_replays_per_sample: g.pcie_replays_per_sample.max(1),
        },
        simulate: g.simulate.as_ref().map(PathBuf::from),
        models,
        devices,
    }
}

/// Turns a raw configuration into a typed one, or returns every problem found.
pub fn validate(raw: &RawConfig) -> Result<Config, Vec<Problem>> {
    let mut c = Checker::default();
    let server = server(&mut c, raw);
    let tls = tls(&mut c, raw);
    let admission = admission(&mut c, raw);
    let state_dir = c.path("state.dir", Some(&raw.state.dir), "a writable directory");
    let state = StateConfig {
        model_store: match &raw.state.model_store {
            Some(p) => c.path("state.model_store", Some(p), "the model store directory"),
            None => state_dir.join("models"),
        },
        dir: state_dir,
        check_interval: c.duration(
            "state.check_interval",
            &raw.state.check_interval,
            Duration::from_millis(50),
        ),
        min_free_bytes: raw.state.min_free_bytes,
    };
    let admin = AdminConfig {
        socket: c.path(
            "admin.socket",
            Some(&raw.admin.socket),
            "the admin Unix socket",
        ),
        allowed_uids: raw.admin.allowed_uids.clone(),
        allowed_gids: raw.admin.allowed_gids.clone(),
        allowed_users: raw.admin.allowed_users.clone(),
        allowed_groups: raw.admin.allowed_groups.clone(),
        agent_uids: raw.admin.agent_uids.clone(),
        agent_gids: raw.admin.agent_gids.clone(),
        agent_users: raw.admin.agent_users.clone(),
        agent_groups: raw.admin.agent_groups.clone(),
    };
    let log = log(&mut c, raw);
    let scoring = ScoringConfig {
        models: raw.scoring.models.iter().map(PathBuf::from).collect(),
        queue_capacity: c.positive("scoring.queue_capacity", raw.scoring.queue_capacity),
        drift_min_rows: c.positive(
            "scoring.drift_min_rows",
            raw.scoring.drift_min_rows as usize,
        ) as u64,
        drift_interval: c.duration(
            "scoring.drift_interval",
            &raw.scoring.drift_interval,
            Duration::from_millis(50),
        ),
        shadow_min_rows: c.positive(
            "scoring.shadow_min_rows",
            raw.scoring.shadow_min_rows as usize,
        ) as u64,
        shadow_min_agreement: {
            let a = raw.scoring.shadow_min_agreement;
            if !(0.0..=1.0).contains(&a) {
                c.problem(
                    "scoring.shadow_min_agreement",
                    format!("{a} is not a share between 0 and 1"),
                    "write e.g. 0.95 for 95%",
                );
            }
            a
        },
    };
    let telemetry = telemetry(&mut c, raw);
    let audit = audit(&mut c, raw, &state.dir);
    let gpu = gpu(&mut c, raw);
    let chat = chat(&mut c, raw);
    let embedding = embedding(&mut c, raw);
    let decisions = decisions(&mut c, raw, &state.dir, &audit);
    if c.problems.is_empty() {
        Ok(Config {
            server,
            tls,
            admission,
            state,
            admin,
            log,
            scoring,
            telemetry,
            audit,
            gpu,
            chat,
            embedding,
            decisions,
        })
    } else {
        Err(c.problems)
    }
}

fn decisions(
    c: &mut Checker,
    raw: &RawConfig,
    state_dir: &std::path::Path,
    audit: &crate::config::AuditConfig,
) -> crate::config::DecisionsConfig {
    let d = &raw.decisions;
    let retention = c.duration("decisions.retention", &d.retention, Duration::from_secs(1));
    for name in &d.models {
        if !coffer_models::manifest::valid_name(name) {
            c.problem(
                "decisions.models",
                format!("{name:?} is not a model name"),
                "list scoring model names, e.g. [\"credit-lr\"]",
            );
        }
    }
    let audited = audit.enabled && audit.requests;
    if !d.models.is_empty() && !audited {
        c.problem(
            "decisions.models",
            "recording decisions needs the audit log with per-request records (each decision's hash is chained there)",
            "set [audit] enabled = true and requests = true, or leave decisions.models empty",
        );
    }
    // A decision must not outlive the audit record that chains its hash.
    if let Some(age) = audit
        .settings
        .retention
        .max_age
        .filter(|a| !d.models.is_empty() && *a < retention)
    {
        c.problem(
            "decisions.retention",
            format!(
                "{} is longer than audit.max_age ({}): decisions would outlive the audit records that chain their hashes",
                humantime::format_duration(retention),
                humantime::format_duration(age)
            ),
            "set audit.max_age at least as long as decisions.retention, or leave it unset",
        );
    }
    crate::config::DecisionsConfig {
        models: d.models.iter().cloned().collect(),
        retention,
        keys_dir: if d.keys_dir.is_empty() {
            state_dir.join("decision-keys")
        } else {
            std::path::PathBuf::from(&d.keys_dir)
        },
    }
}

fn server(c: &mut Checker, raw: &RawConfig) -> ServerConfig {
    let s = &raw.server;
    let listen = match s.listen.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            c.problem(
                "server.listen",
                format!("{:?} is not an IP address with a port", s.listen),
                "write an address such as \"127.0.0.1:8443\" or \"[::1]:8443\"",
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    };
    let ms = Duration::from_millis(1);
    ServerConfig {
        listen,
        request_timeout: c.duration("server.request_timeout", &s.request_timeout, ms),
        header_read_timeout: c.duration("server.header_read_timeout", &s.header_read_timeout, ms),
        tls_handshake_timeout: c.duration(
            "server.tls_handshake_timeout",
            &s.tls_handshake_timeout,
            ms,
        ),
        max_connections: c.positive("server.max_connections", s.max_connections),
        max_connections_per_address: c.positive(
            "server.max_connections_per_address",
            s.max_connections_per_address,
        ),
        idle_timeout: c.duration("server.idle_timeout", &s.idle_timeout, ms),
        max_connection_age: c.duration(
            "server.max_connection_age",
            &s.max_connection_age,
            Duration::from_secs(1),
        ),
        stream_stall_timeout: c.duration(
            "server.stream_stall_timeout",
            &s.stream_stall_timeout,
            Duration::from_millis(100),
        ),
        max_body_bytes: c.positive("server.max_body_bytes", s.max_body_bytes),
        shutdown_grace: c.duration("server.shutdown_grace", &s.shutdown_grace, Duration::ZERO),
    }
}

fn tls(c: &mut Checker, raw: &RawConfig) -> TlsConfig {
    let t = &raw.tls;
    let cert = c.path("tls.cert", t.cert.as_deref(), "a PEM certificate chain");
    let key = c.path(
        "tls.key",
        t.key.as_deref(),
        "the certificate's PEM private key",
    );
    let client_auth = match t.client_auth.as_str() {
        "off" => ClientAuth::Off,
        "optional" => ClientAuth::Optional,
        "required" => ClientAuth::Required,
        other => {
            c.problem(
                "tls.client_auth",
                format!("{other:?} is not a client-auth mode"),
                "use \"off\", \"optional\" or \"required\"",
            );
            ClientAuth::Off
        }
    };
    let client_ca = t
        .client_ca
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(PathBuf::from);
    if client_auth != ClientAuth::Off && client_ca.is_none() {
        c.problem(
            "tls.client_ca",
            format!("is required when tls.client_auth is {:?}", t.client_auth),
            "set tls.client_ca to a PEM bundle of the CAs that sign client certificates",
        );
    }
    TlsConfig {
        cert,
        key,
        client_auth,
        client_ca,
    }
}

fn admission(c: &mut Checker, raw: &RawConfig) -> AdmissionConfig {
    let a = &raw.admission;
    let default_key_rate = a.default_key_rate.as_deref().and_then(|r| match r.parse() {
        Ok(rate) => Some(rate),
        Err(e) => {
            c.problem(
                "admission.default_key_rate",
                format!("{e}"),
                "write a rate such as \"20/s\" or \"600/m\"",
            );
            None
        }
    });
    let max_in_flight = c.positive("admission.max_in_flight", a.max_in_flight);
    let max_in_flight_per_key = match a.max_in_flight_per_key {
        None => (max_in_flight / 2).max(1),
        Some(n) if n == 0 || n > max_in_flight => {
            c.problem(
                "admission.max_in_flight_per_key",
                format!("{n} is not between 1 and max_in_flight ({max_in_flight})"),
                "give a number from 1 to admission.max_in_flight, or leave it out (half of it)",
            );
            1
        }
        Some(n) => n,
    };
    AdmissionConfig {
        max_in_flight,
        max_in_flight_per_key,
        max_queue: a.max_queue,
        queue_timeout: c.duration("admission.queue_timeout", &a.queue_timeout, Duration::ZERO),
        retry_after: c.duration(
            "admission.retry_after",
            &a.retry_after,
            Duration::from_secs(1),
        ),
        default_key_rate,
    }
}

fn log(c: &mut Checker, raw: &RawConfig) -> LogConfig {
    let format = match raw.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            c.problem(
                "log.format",
                format!("{other:?} is not a log format"),
                "use \"text\" or \"json\"",
            );
            LogFormat::Text
        }
    };
    if parse_log_filter(&raw.log.level).is_none() {
        c.problem(
            "log.level",
            format!("{:?} is not a log filter", raw.log.level),
            "use error, warn, info, debug or trace, or a list such as \"info,cofferd=debug\"",
        );
    }
    LogConfig {
        format,
        level: raw.log.level.clone(),
        access: raw.log.access,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn minimal() -> String {
        "[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n".to_string()
    }

    #[test]
    fn minimal_config_takes_documented_defaults() {
        let cfg = validate(&parse(&minimal()).unwrap()).unwrap();
        assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(cfg.server.shutdown_grace, Duration::from_secs(30));
        assert_eq!(cfg.admission.max_in_flight, 64);
        assert_eq!(cfg.tls.client_auth, ClientAuth::Off);
        assert_eq!(cfg.log.format, LogFormat::Text);
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let err = parse("[server]\nlisen = \"127.0.0.1:1\"\n").unwrap_err();
        assert_eq!(err.key, "server.lisen");
        assert!(err.what.contains("unknown field"), "{}", err.what);
        assert!(err.what.contains("line 2"), "{}", err.what);
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let text = "[server]\nlisten = \"nowhere\"\nrequest_timeout = \"soon\"\n\
                    [tls]\nclient_auth = \"maybe\"\n[log]\nformat = \"xml\"\n";
        let problems = validate(&parse(text).unwrap()).unwrap_err();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.request_timeout",
                "tls.cert",
                "tls.key",
                "tls.client_auth",
                "log.format"
            ]
        );
        assert!(problems.iter().all(|p| !p.fix.is_empty()));
    }

    #[test]
    fn audit_retention_defaults_and_limits() {
        let cfg = validate(&parse(&minimal()).unwrap()).unwrap();
        assert_eq!(cfg.audit.settings.retention.max_total_bytes, 8 << 30);
        assert_eq!(cfg.audit.settings.retention.max_age, None);

        let text = format!(
            "{}[audit]\nmax_total_bytes = 0\nmax_age = \"400d\"\n",
            minimal()
        );
        let cfg = validate(&parse(&text).unwrap()).unwrap();
        assert!(cfg.audit.settings.retention.max_total_bytes == 0);
        assert_eq!(
            cfg.audit.settings.retention.max_age,
            Some(Duration::from_secs(400 * 86_400))
        );

        // Less than two segments would remove the previous segment at every rotation.
        let text = format!(
            "{}[audit]\nmax_segment_bytes = 1048576\nmax_total_bytes = 1048576\nmax_age = \"5m\"\n",
            minimal()
        );
        let problems = validate(&parse(&text).unwrap()).unwrap_err();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["audit.max_total_bytes", "audit.max_age"]);
    }

    #[test]
    fn client_ca_is_required_with_mtls() {
        let text = format!("{}client_auth = \"required\"\n", minimal());
        let problems = validate(&parse(&text).unwrap()).unwrap_err();
        assert_eq!(problems[0].key, "tls.client_ca");
    }

    #[test]
    fn bad_rate_and_zero_limits_are_refused() {
        let text = format!(
            "{}[admission]\nmax_in_flight = 0\ndefault_key_rate = \"fast\"\n",
            minimal()
        );
        let problems = validate(&parse(&text).unwrap()).unwrap_err();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["admission.default_key_rate", "admission.max_in_flight"]
        );
    }

    #[test]
    fn gpu_policies_parse_and_misfits_are_named() {
        let text = format!(
            "{}[gpu]\ninterval = \"1s\"\n[gpu.models.chat]\npolicy = \"shed\"\nshed_max_in_flight = 2\n\
             [gpu.models.risk]\npolicy = \"cpu-variant\"\ncpu_variant = \"risk-student\"\n\
             [gpu.models.aml]\npolicy = \"fail\"\n",
            minimal()
        );
        let cfg = validate(&parse(&text).unwrap()).unwrap();
        assert!(cfg.gpu.enabled);
        assert_eq!(cfg.gpu.interval, Duration::from_secs(1));
        assert_eq!(
            cfg.gpu.models["chat"],
            FallbackPolicy::Shed { max_in_flight: 2 }
        );
        assert_eq!(
            cfg.gpu.models["risk"],
            FallbackPolicy::CpuVariant("risk-student".into())
        );
        assert_eq!(cfg.gpu.models["aml"], FallbackPolicy::Fail);

        let text = format!(
            "{}[gpu]\nrecover_after = 0\n[gpu.models.a]\npolicy = \"cpu-variant\"\n\
             [gpu.models.b]\npolicy = \"retry\"\n[gpu.models.c]\npolicy = \"shed\"\nshed_max_in_flight = 0\n",
            minimal()
        );
        let problems = validate(&parse(&text).unwrap()).unwrap_err();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "gpu.models.a.policy",
                "gpu.models.b.policy",
                "gpu.models.c.policy",
                "gpu.recover_after"
            ]
        );
    }

    #[test]
    fn levels_and_target_lists_parse_and_typos_do_not() {
        assert!(parse_log_filter("info").is_some());
        assert!(parse_log_filter("warn,cofferd=debug").is_some());
        assert!(parse_log_filter("inf").is_none());
        assert!(parse_log_filter("info,cofferd=loud").is_none());
    }
}
