//! Prometheus metrics of the HTTP front: requests by route and status, latency,
//! in-flight and queued requests, rejections by reason, TLS reloads and build info.
//! Engines register their own families in the same registry.

use std::sync::Mutex;

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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
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
    pub tls_reloads: Family<ResultLabel, Counter>,
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
            "tls_reloads",
            "TLS configuration reloads by result",
            tls_reloads.clone(),
        );
        registry.register("build_info", "Build information", build);
        Self {
            registry: Mutex::new(registry),
            foreign: Mutex::new(Registry::default()),
            requests,
            latency,
            in_flight,
            queued,
            rejections,
            tls_reloads,
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
