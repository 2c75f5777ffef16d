//! Prometheus metrics of the HTTP front: requests by route and status, latency,
//! in-flight and queued requests, rejections by reason, TLS reloads, build info, and
//! scoring and chat requests by model version and outcome ([`ModelRequests`]).
//! Engines register their own families in the same registry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

/// One model version (`coffer_engine_restarts_total`'s labels).
pub use coffer_engine::ModelVersionLabels;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub model: String,
    pub version: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

/// Why a request was turned away before it reached its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Unauthenticated,
    Forbidden,
    RateLimited,
    Overloaded,
    TooLarge,
    Deadline,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Unauthenticated => "unauthenticated",
            Rejection::Forbidden => "forbidden",
            Rejection::RateLimited => "rate_limited",
            Rejection::Overloaded => "overloaded",
            Rejection::TooLarge => "too_large",
            Rejection::Deadline => "deadline",
        }
    }
}

/// The daemon's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Families whose names follow another exporter's (dcgm-exporter's `DCGM_FI_*`),
    /// without the `coffer_` prefix, so existing dashboards work.
    foreign: Mutex<Registry>,
    pub requests: Family<RouteStatus, Counter>,
    pub latency: Family<RouteLabel, Histogram>,
    pub in_flight: Gauge,
    pub queued: Gauge,
    pub rejections: Family<ReasonLabel, Counter>,
    /// Streamed responses ended because their client stopped reading.
    pub streams_stalled: Counter,
    pub tls_reloads: Family<ResultLabel, Counter>,
    /// Scoring and chat requests by model version and outcome.
    pub model_requests: ModelRequests,
    /// Panics contained on engine threads, by model version (`engine_faults`).
    pub engine_restarts: Family<ModelVersionLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ])
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("coffer");
        let requests = Family::<RouteStatus, Counter>::default();
        let latency = Family::<RouteLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let in_flight = Gauge::default();
        let queued = Gauge::default();
        let rejections = Family::<ReasonLabel, Counter>::default();
        let streams_stalled = Counter::default();
        let tls_reloads = Family::<ResultLabel, Counter>::default();
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "http_in_flight",
            "Requests admitted and not yet answered",
            in_flight.clone(),
        );
        registry.register(
            "http_queue_depth",
            "Requests waiting for admission",
            queued.clone(),
        );
        registry.register(
            "http_rejections",
            "Requests turned away before their handler, by reason",
            rejections.clone(),
        );
        registry.register(
            "http_streams_stalled",
            "Streamed responses ended because their client stopped reading for server.stream_stall_timeout",
            streams_stalled.clone(),
        );
        registry.register(
            "tls_reloads",
            "TLS configuration reloads by result",
            tls_reloads.clone(),
        );
        registry.register("build_info", "Build information", build);
        let model_requests = ModelRequests::default();
        let engine_restarts = Family::<ModelVersionLabels, Counter>::default();
        registry.register(
            "engine_restarts",
            "Panics contained on a model version's engine thread (the work in hand failed; the engine carried on)",
            engine_restarts.clone(),
        );
        registry.register(
            "model_requests",
            "Scoring and chat requests by model version and outcome (ok, client_error, server_error)",
            model_requests.family.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            foreign: Mutex::new(Registry::default()),
            requests,
            latency,
            in_flight,
            queued,
            rejections,
            streams_stalled,
            tls_reloads,
            model_requests,
            engine_restarts,
        }
    }

    pub fn reject(&self, reason: Rejection) {
        self.rejections
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Lets an engine add its own metrics under the `coffer_` prefix.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut self.registry.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Lets a component add families named as another exporter names them (no prefix).
    pub fn with_foreign_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut self.foreign.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        drop(registry);
        let mut foreign = String::new();
        let registry = self.foreign.lock().unwrap_or_else(|e| e.into_inner());
        let _ = prometheus_client::encoding::text::encode(&mut foreign, &registry);
        if foreign.trim_end() != "# EOF" {
            // One exposition, one `# EOF` at its end.
            if let Some(body) = out.strip_suffix("# EOF\n") {
                out.truncate(body.len());
            }
            out.push_str(&foreign);
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How a request for a model version ended, from its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (any status under 400).
    Ok,
    /// 4xx: the request was refused as the client sent it.
    ClientError,
    /// 5xx, overload and GPU refusals included.
    ServerError,
}

impl Outcome {
    pub fn of(status: u16) -> Self {
        match status {
            500.. => Outcome::ServerError,
            400..=499 => Outcome::ClientError,
            _ => Outcome::Ok,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
        }
    }
}

/// `coffer_model_requests_total{model,version,outcome}`, and an index of the versions
/// counted so far for the admin socket's health report.
#[derive(Debug, Default)]
pub struct ModelRequests {
    family: Family<OutcomeLabels, Counter>,
    versions: Mutex<BTreeMap<(String, String), VersionRequests>>,
}

impl ModelRequests {
    /// The counters of one version, created (at zero) on first use.
    pub fn version(&self, model: &str, version: &str) -> VersionRequests {
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions
            .entry((model.to_string(), version.to_string()))
            .or_insert_with(|| {
                let counter = |outcome: Outcome| {
                    self.family
                        .get_or_create(&OutcomeLabels {
                            model: model.to_string(),
                            version: version.to_string(),
                            outcome: outcome.as_str(),
                        })
                        .clone()
                };
                VersionRequests(Arc::new([
                    counter(Outcome::Ok),
                    counter(Outcome::ClientError),
                    counter(Outcome::ServerError),
                ]))
            })
            .clone()
    }

    /// Every version counted so far, by name and version, with its counts.
    pub fn snapshot(&self) -> BTreeMap<(String, String), OutcomeCounts> {
        let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions
            .iter()
            .map(|(key, counters)| (key.clone(), counters.counts()))
            .collect()
    }
}

/// The outcome counters of one model version: cheap to clone, no lookup to count.
#[derive(Debug, Clone)]
pub struct VersionRequests(Arc<[Counter; 3]>);

impl VersionRequests {
    pub fn record(&self, outcome: Outcome) {
        let i = match outcome {
            Outcome::Ok => 0,
            Outcome::ClientError => 1,
            Outcome::ServerError => 2,
        };
        self.0[i].inc();
    }

    pub fn counts(&self) -> OutcomeCounts {
        let [ok, client_error, server_error] = &*self.0;
        OutcomeCounts {
            ok: ok.get(),
            client_error: client_error.get(),
            server_error: server_error.get(),
        }
    }
}

pub use coffer_admin_api::health::OutcomeCounts;

/// A served version's counters, looked up on its first request and kept with the
/// loaded version (`served::Versioned::requests`), so the request path counts without
/// a label lookup.
#[derive(Debug, Default)]
pub struct VersionRequestsCell(OnceLock<VersionRequests>);

impl VersionRequestsCell {
    pub fn get(&self, requests: &ModelRequests, model: &str, version: &str) -> &VersionRequests {
        self.0.get_or_init(|| requests.version(model, version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(Outcome::of(200), Outcome::Ok);
        assert_eq!(Outcome::of(304), Outcome::Ok);
        assert_eq!(Outcome::of(400), Outcome::ClientError);
        assert_eq!(Outcome::of(413), Outcome::ClientError);
        assert_eq!(Outcome::of(500), Outcome::ServerError);
        assert_eq!(Outcome::of(503), Outcome::ServerError);
        assert_eq!(Outcome::of(504), Outcome::ServerError);
    }

    #[test]
    fn model_requests_count_per_version_and_render() {
        let metrics = Metrics::new();
        let cell = VersionRequestsCell::default();
        let a = cell.get(&metrics.model_requests, "credit-lr", "1.0.0");
        a.record(Outcome::Ok);
        a.record(Outcome::Ok);
        a.record(Outcome::ServerError);
        // The same version through another handle shares the counters.
        metrics
            .model_requests
            .version("credit-lr", "1.0.0")
            .record(Outcome::ClientError);
        let snapshot = metrics.model_requests.snapshot();
        let counts = snapshot[&("credit-lr".to_string(), "1.0.0".to_string())];
        assert_eq!(
            counts,
            OutcomeCounts {
                ok: 2,
                client_error: 1,
                server_error: 1
            }
        );
        let text = metrics.render();
        assert!(
            text.contains(
                r#"coffer_model_requests_total{model="credit-lr",version="1.0.0",outcome="ok"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"outcome="server_error"} 1"#), "{text}");
    }
}
