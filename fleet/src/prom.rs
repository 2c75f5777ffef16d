//! The fleet's Prometheus, read through its HTTP API (`/api/v1/query`, instant
//! queries): its URL, an optional CA bundle for https and an optional bearer token (read
//! from a file, never from the command line), a timeout per query and a bound on the
//! answer's size.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use crate::transport::{self, HttpError, Tls};

/// The largest answer read (a 10,000-site fleet's biggest query is a few MB).
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Why a query gave no result.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("Prometheus URL {0:?}: {1}")]
    Url(String, String),
    #[error("bearer token file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("Prometheus at {url}: {source}")]
    Http { url: String, source: HttpError },
    #[error("Prometheus answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("Prometheus's answer is not a query result: {0}")]
    Answer(String),
}

/// A client of one Prometheus.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    tls: Option<Tls>,
    bearer: Option<String>,
    timeout: Duration,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl VectorSample {
    /// A label's value, "" when absent (as PromQL treats it).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

impl Prometheus {
    /// `url` is Prometheus's base (`https://prom.example:9090`, or with a path prefix).
    pub fn new(
        url: &str,
        ca_bundle: Option<&Path>,
        bearer_token_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Prometheus, PromError> {
        let parsed: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| PromError::Url(url.into(), e.to_string()))?;
        match parsed.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(PromError::Url(url.into(), "not an http(s) URL".into())),
        }
        let https = parsed.scheme_str() == Some("https");
        if https && ca_bundle.is_none() {
            return Err(PromError::Url(
                url.into(),
                "an https Prometheus needs its CA bundle (--prometheus-ca)".into(),
            ));
        }
        if !https && bearer_token_file.is_some() {
            return Err(PromError::Url(
                url.into(),
                "a bearer token is sent only over https, never in clear".into(),
            ));
        }
        let tls = ca_bundle
            .map(Tls::from_bundle)
            .transpose()
            .map_err(|source| PromError::Http {
                url: url.into(),
                source,
            })?;
        let bearer = bearer_token_file
            .map(|path| {
                std::fs::read_to_string(path)
                    .map(|t| t.trim().to_string())
                    .map_err(|source| PromError::Token {
                        path: path.display().to_string(),
                        source,
                    })
            })
            .transpose()?;
        Ok(Prometheus {
            base: url.trim_end_matches('/').to_string(),
            tls,
            bearer,
            timeout,
        })
    }

    /// An instant query at now; its result must be a vector (or a scalar, returned as
    /// one sample without labels).
    pub async fn query(&self, promql: &str) -> Result<Vec<VectorSample>, PromError> {
        let url = format!("{}/api/v1/query?query={}", self.base, encode(promql));
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| PromError::Url(url.clone(), e.to_string()))?;
        let auth = self.bearer.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("accept", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let reply = transport::get(
            &uri,
            self.tls.as_ref(),
            &headers,
            self.timeout,
            MAX_ANSWER_BYTES,
        )
        .await
        .map_err(|source| PromError::Http {
            url: self.base.clone(),
            source,
        })?;
        let answer: Answer = serde_json::from_slice(&reply.body).map_err(|e| {
            if reply.status.is_success() {
                PromError::Answer(e.to_string())
            } else {
                PromError::Refused {
                    status: reply.status.as_u16(),
                    message: String::from_utf8_lossy(&reply.body)
                        .chars()
                        .take(300)
                        .collect(),
                }
            }
        })?;
        if answer.status != "success" {
            return Err(PromError::Refused {
                status: reply.status.as_u16(),
                message: answer.error.unwrap_or_else(|| answer.status.clone()),
            });
        }
        let data = answer
            .data
            .ok_or_else(|| PromError::Answer("no data".into()))?;
        parse_result(&data.result_type, data.result)
    }
}

fn parse_result(kind: &str, result: serde_json::Value) -> Result<Vec<VectorSample>, PromError> {
    let bad = |e: serde_json::Error| PromError::Answer(e.to_string());
    let value = |s: &str| {
        s.parse::<f64>()
            .map_err(|e| PromError::Answer(format!("sample value {s:?}: {e}")))
    };
    match kind {
        "vector" => serde_json::from_value::<Vec<RawSample>>(result)
            .map_err(bad)?
            .into_iter()
            .map(|s| {
                Ok(VectorSample {
                    value: value(&s.value.1)?,
                    labels: s.metric,
                })
            })
            .collect(),
        "scalar" => {
            let (_, v): (f64, String) = serde_json::from_value(result).map_err(bad)?;
            Ok(vec![VectorSample {
                labels: BTreeMap::new(),
                value: value(&v)?,
            }])
        }
        other => Err(PromError::Answer(format!(
            "a {other} result, not an instant vector"
        ))),
    }
}

/// Percent-encodes a query string value (everything but unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_and_scalars_parse() {
        let v = serde_json::json!([
            {"metric": {"site": "b1", "state": "active"}, "value": [1.7e9, "1700000000"]},
            {"metric": {}, "value": [1.7e9, "NaN"]}
        ]);
        let got = parse_result("vector", v).unwrap();
        assert_eq!(got[0].label("site"), "b1");
        assert_eq!(got[0].label("ring"), "");
        assert_eq!(got[0].value, 1.7e9);
        assert!(got[1].value.is_nan());
        let s = parse_result("scalar", serde_json::json!([1.7e9, "3"])).unwrap();
        assert_eq!(s[0].value, 3.0);
        assert!(parse_result("matrix", serde_json::json!([])).is_err());
        assert!(parse_result("vector", serde_json::json!([{"metric": {}}])).is_err());
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            encode("up{job=\"a b\"}[5m]"),
            "up%7Bjob%3D%22a%20b%22%7D%5B5m%5D"
        );
    }

    #[test]
    fn only_http_urls() {
        let t = Duration::from_secs(1);
        assert!(Prometheus::new("ftp://x", None, None, t).is_err());
        assert!(Prometheus::new("http://127.0.0.1:9090/", None, None, t).is_ok());
        assert!(matches!(
            Prometheus::new("https://x", None, None, t),
            Err(PromError::Url(_, why)) if why.contains("--prometheus-ca")
        ));
        assert!(matches!(
            Prometheus::new("http://x", None, Some(Path::new("/nonexistent/token")), t),
            Err(PromError::Url(_, why)) if why.contains("never in clear")
        ));
    }
}
