//! Prometheus remote-write (protocol 1.0): records become time series (labels sorted,
//! `__name__` first among them by name order), samples are stamped with the record's
//! time, the `WriteRequest` protobuf is snappy-compressed (block format). A record
//! delivered twice writes the same sample at the same timestamp, which Prometheus
//! accepts as a duplicate, so redelivery after a failure is harmless.

use std::collections::BTreeMap;

use coffer_privacy::telemetry::{Record, RecordBody};

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The headers a remote-write request carries.
pub const HEADERS: [(&str, &str); 4] = [
    ("content-type", "application/x-protobuf"),
    ("content-encoding", "snappy"),
    ("x-prometheus-remote-write-version", "0.1.0"),
    ("user-agent", "coffer-agent"),
];

/// A series: its labels (`__name__` among them), sorted by name.
pub type SeriesKey = Vec<(String, String)>;

fn push(
    series: &mut BTreeMap<SeriesKey, Vec<Sample>>,
    name: &str,
    labels: &[(&str, &str)],
    site: &str,
    value: f64,
    at_ms: u64,
) {
    let mut key: SeriesKey = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    key.push(("__name__".into(), name.into()));
    if !site.is_empty() {
        key.push(("site".into(), site.into()));
    }
    key.sort();
    series.entry(key).or_default().push(Sample {
        value,
        timestamp: at_ms as i64,
    });
}

fn le(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".into()
    } else {
        format!("{bound}")
    }
}

/// The series for the metric records of a batch (events go to OTLP).
pub fn build(records: &[Record], site: &str) -> WriteRequest {
    let mut series = BTreeMap::new();
    for r in records {
        let s = &mut series;
        let t = r.at_ms;
        match &r.body {
            RecordBody::Requests {
                route,
                status,
                count,
            } => {
                let status = status.to_string();
                push(
                    s,
                    "coffer_requests_total",
                    &[("route", route), ("status", &status)],
                    site,
                    *count as f64,
                    t,
                );
            }
            RecordBody::Latency {
                route,
                buckets,
                sum_seconds,
                count,
            } => {
                // cofferd sends finite bounds; +Inf is the total count.
                let finite = buckets.iter().copied().filter(|(b, _)| b.is_finite());
                for (bound, n) in finite.chain(std::iter::once((f64::INFINITY, *count))) {
                    let le = le(bound);
                    push(
                        s,
                        "coffer_request_duration_seconds_bucket",
                        &[("route", route), ("le", &le)],
                        site,
                        n as f64,
                        t,
                    );
                }
                push(
                    s,
                    "coffer_request_duration_seconds_sum",
                    &[("route", route)],
                    site,
                    *sum_seconds,
                    t,
                );
                push(
                    s,
                    "coffer_request_duration_seconds_count",
                    &[("route", route)],
                    site,
                    *count as f64,
                    t,
                );
            }
            RecordBody::RowsScored {
                model,
                version,
                rows,
            } => push(
                s,
                "coffer_scoring_rows_total",
                &[("model", model), ("version", version)],
                site,
                *rows as f64,
                t,
            ),
            RecordBody::Decisions {
                model,
                version,
                outcome,
                count,
                ..
            } => push(
                s,
                "coffer_scoring_decisions_noisy",
                &[
                    ("model", model),
                    ("version", version),
                    ("outcome", outcome.as_str()),
                ],
                site,
                *count as f64,
                t,
            ),
            RecordBody::Drift {
                model,
                version,
                window,
                rows,
                psi,
            } => {
                for (distribution, value) in psi {
                    push(
                        s,
                        "coffer_drift_psi",
                        &[
                            ("model", model),
                            ("version", version),
                            ("window", window),
                            ("distribution", distribution),
                        ],
                        site,
                        *value,
                        t,
                    );
                }
                if let Some(rows) = rows {
                    push(
                        s,
                        "coffer_drift_rows_noisy",
                        &[("model", model), ("version", version), ("window", window)],
                        site,
                        *rows as f64,
                        t,
                    );
                }
            }
            RecordBody::ActiveModel {
                model,
                version,
                engine,
            } => push(
                s,
                "coffer_model_active",
                &[("model", model), ("version", version), ("engine", engine)],
                site,
                1.0,
                t,
            ),
            RecordBody::SpoolDropped { count } => push(
                s,
                "coffer_telemetry_spool_dropped_total",
                &[],
                site,
                *count as f64,
                t,
            ),
            RecordBody::Event { .. } => {}
        }
    }
    WriteRequest {
        timeseries: series
            .into_iter()
            .map(|(labels, mut samples)| {
                samples.sort_by_key(|s| s.timestamp);
                samples.dedup_by_key(|s| s.timestamp);
                TimeSeries {
                    labels: labels
                        .into_iter()
                        .map(|(name, value)| Label { name, value })
                        .collect(),
                    samples,
                }
            })
            .collect(),
    }
}

/// Prometheus's staleness marker: a sample with this value ends a series at once,
/// instead of after the 5-minute lookback.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// The labels of a site report's sample, `__name__` and `site` included, sorted.
pub fn site_series(sample: &coffer_fleet::site::Sample, site: &str) -> SeriesKey {
    let mut key: SeriesKey = sample
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    key.push(("__name__".into(), sample.name.into()));
    key.push(("site".into(), site.into()));
    key.sort();
    key
}

/// A site report's samples at `at_ms`, and a staleness marker for each series in
/// `ended` (series the previous report had and this one has not).
pub fn build_site(
    samples: &[coffer_fleet::site::Sample],
    site: &str,
    at_ms: u64,
    ended: impl IntoIterator<Item = SeriesKey>,
) -> WriteRequest {
    let stamp = |value| Sample {
        value,
        timestamp: at_ms as i64,
    };
    let live = samples
        .iter()
        .map(|s| (site_series(s, site), stamp(s.value)));
    let stale = ended
        .into_iter()
        .map(|k| (k, stamp(f64::from_bits(STALE_NAN))));
    let series: BTreeMap<SeriesKey, Sample> = live.chain(stale).collect();
    WriteRequest {
        timeseries: series
            .into_iter()
            .map(|(labels, sample)| TimeSeries {
                labels: labels
                    .into_iter()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                samples: vec![sample],
            })
            .collect(),
    }
}

/// The request body: protobuf, snappy block format.
pub fn encode(request: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    use prost::Message as _;
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_privacy::telemetry::Outcome;
    use prost::Message as _;

    #[test]
    fn records_become_sorted_series_and_round_trip() {
        let records = vec![
            Record {
                seq: 1,
                at_ms: 2000,
                body: RecordBody::Requests {
                    route: "/v2/models/{model}/infer".into(),
                    status: 200,
                    count: 7,
                },
            },
            Record {
                seq: 2,
                at_ms: 1000,
                body: RecordBody::Requests {
                    route: "/v2/models/{model}/infer".into(),
                    status: 200,
                    count: 3,
                },
            },
            Record {
                seq: 3,
                at_ms: 1000,
                body: RecordBody::Decisions {
                    model: "credit-lr".into(),
                    version: "1.0.0".into(),
                    outcome: Outcome::Below,
                    count: 4,
                    epsilon: 0.5,
                },
            },
        ];
        let req = build(&records, "branch-7");
        assert_eq!(req.timeseries.len(), 2);
        let requests = req
            .timeseries
            .iter()
            .find(|t| t.labels.iter().any(|l| l.value == "coffer_requests_total"))
            .unwrap();
        let names: Vec<_> = requests.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "route", "site", "status"]);
        assert_eq!(
            requests
                .samples
                .iter()
                .map(|s| s.timestamp)
                .collect::<Vec<_>>(),
            [1000, 2000]
        );
        let body = encode(&req).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(WriteRequest::decode(raw.as_slice()).unwrap(), req);
    }
}
