//! The ranged request for what the partial file lacks, and how to go on after its
//! answer: continue the partial file, start over, or fail.

use std::path::Path;

use http::{StatusCode, Uri};

use super::partial::Partial;
use super::{DownloadError, Limits};
use crate::transport::{self, Tls};

/// Asks for what the partial file lacks and settles on an answer whose body continues
/// it: a ranged request, and when the server answers with the whole file or another
/// range, the partial file is emptied (and the whole file asked for, if needed).
pub(super) async fn request(
    url: &Uri,
    tls: Option<&Tls>,
    path: &Path,
    kept: Partial,
    limits: &Limits,
) -> Result<(Partial, transport::Streaming), DownloadError> {
    let answer = get(url, tls, kept.from, limits).await?;
    let range = header(&answer.headers, "content-range");
    match decide(kept.from, answer.status, range) {
        Decision::Continue => Ok((kept, answer)),
        Decision::Fail => Err(status_error(&url.to_string(), answer.status)),
        Decision::StartOver { ask_again: false } => Ok((kept.start_over(path).await?, answer)),
        Decision::StartOver { ask_again: true } => {
            drop(answer);
            let kept = kept.start_over(path).await?;
            let answer = get(url, tls, 0, limits).await?;
            if answer.status != StatusCode::OK {
                return Err(status_error(&url.to_string(), answer.status));
            }
            Ok((kept, answer))
        }
    }
}

/// How to go on after the answer to a request from byte `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// The body continues the partial file.
    Continue,
    /// Discard the partial file; the body is the whole file unless `ask_again`.
    StartOver {
        ask_again: bool,
    },
    Fail,
}

fn decide(from: u64, status: StatusCode, content_range: Option<&str>) -> Decision {
    match status {
        StatusCode::OK if from == 0 => Decision::Continue,
        StatusCode::OK => Decision::StartOver { ask_again: false },
        StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE if from > 0 => {
            if status == StatusCode::PARTIAL_CONTENT && range_start(content_range) == Some(from) {
                Decision::Continue
            } else {
                Decision::StartOver { ask_again: true }
            }
        }
        _ => Decision::Fail,
    }
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL`.
fn range_start(value: Option<&str>) -> Option<u64> {
    let rest = value?.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

pub(super) fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn status_error(url: &str, status: StatusCode) -> DownloadError {
    DownloadError::Status {
        url: url.to_string(),
        status,
    }
}

async fn get(
    url: &Uri,
    tls: Option<&Tls>,
    from: u64,
    limits: &Limits,
) -> Result<transport::Streaming, DownloadError> {
    let range = format!("bytes={from}-");
    let headers: &[(&str, &str)] = if from > 0 {
        &[("range", range.as_str())]
    } else {
        &[]
    };
    transport::get_streaming(url, tls, headers, limits.timeout)
        .await
        .map_err(|source| DownloadError::Http {
            url: url.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::{Decision, decide};

    #[test]
    fn answers_decide_how_to_go_on() {
        use StatusCode as S;
        assert_eq!(decide(0, S::OK, None), Decision::Continue);
        assert_eq!(decide(0, S::PARTIAL_CONTENT, None), Decision::Fail);
        assert_eq!(
            decide(5, S::PARTIAL_CONTENT, Some("bytes 5-9/10")),
            Decision::Continue
        );
        assert_eq!(
            decide(5, S::PARTIAL_CONTENT, Some("bytes 0-9/10")),
            Decision::StartOver { ask_again: true }
        );
        assert_eq!(
            decide(5, S::PARTIAL_CONTENT, None),
            Decision::StartOver { ask_again: true }
        );
        assert_eq!(
            decide(5, S::OK, None),
            Decision::StartOver { ask_again: false }
        );
        assert_eq!(
            decide(5, S::RANGE_NOT_SATISFIABLE, Some("bytes */3")),
            Decision::StartOver { ask_again: true }
        );
        assert_eq!(decide(5, S::NOT_FOUND, None), Decision::Fail);
    }
}
