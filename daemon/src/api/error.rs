//! The one table that maps API errors to an HTTP status, a stable `code` and a body.
//! `/v2` routes answer in the Open Inference Protocol's shape (`{"error": "..."}`, plus
//! our `code`); every other route in OpenAI's (`{"error": {message, type, code, param}}`).
//! 5xx bodies never carry internals: the detail goes to the log with the request id.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

/// Which error body shape a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    OpenAi,
    InferenceProtocol,
}

impl Family {
    pub fn for_path(path: &str) -> Self {
        if path == "/v2" || path.starts_with("/v2/") {
            Family::InferenceProtocol
        } else {
            Family::OpenAi
        }
    }
}

/// What went wrong, independent of how it is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    Unauthenticated,
    Forbidden,
    RateLimited {
        retry_after: Duration,
    },
    Overloaded {
        retry_after: Duration,
    },
    /// A GPU model while its GPU is failed and its policy is `fail`.
    GpuUnavailable {
        retry_after: Duration,
    },
    /// A GPU model served on the CPU (`shed`) beyond its lower concurrency.
    GpuShedding {
        retry_after: Duration,
    },
    TooLarge {
        limit: usize,
    },
    Deadline,
    NotFound,
    MethodNotAllowed,
    BadRequest,
    Internal,
}

impl ErrorKind {
    /// Status, stable code and OpenAI error type: the whole mapping, in one place.
    pub fn table(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ErrorKind::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "invalid_request_error",
            ),
            ErrorKind::Forbidden => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "permission_error",
            ),
            ErrorKind::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "rate_limit_error",
            ),
            ErrorKind::Overloaded { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_overloaded",
                "server_error",
            ),
            ErrorKind::GpuUnavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "gpu_unavailable",
                "server_error",
            ),
            ErrorKind::GpuShedding { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "gpu_shedding",
                "server_error",
            ),
            ErrorKind::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "invalid_request_error",
            ),
            ErrorKind::Deadline => (
                StatusCode::GATEWAY_TIMEOUT,
                "deadline_exceeded",
                "server_error",
            ),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found", "invalid_request_error"),
            ErrorKind::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "invalid_request_error",
            ),
            ErrorKind::BadRequest => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "invalid_request_error",
            ),
            ErrorKind::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "server_error",
            ),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ErrorKind::RateLimited { retry_after }
            | ErrorKind::Overloaded { retry_after }
            | ErrorKind::GpuUnavailable { retry_after }
            | ErrorKind::GpuShedding { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// An error on its way to becoming a response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub family: Family,
    pub param: Option<String>,
    pub code_override: Option<&'static str>,
}

impl ApiError {
    /// A serving-layer refusal in this API's shape: every API words it the same.
    pub fn serving(e: crate::serving::ServeError, retry_after: Duration, family: Family) -> Self {
        use crate::serving::ServeError;
        let kind = match &e {
            ServeError::GpuShedding { .. } => ErrorKind::GpuShedding { retry_after },
            ServeError::GpuUnavailable { .. } => ErrorKind::GpuUnavailable { retry_after },
            ServeError::AtCapacity { .. } => ErrorKind::Overloaded { retry_after },
            ServeError::VariantMissing { .. } => {
                tracing::error!(error = %e, "GPU fallback cannot be served");
                return Self::new(ErrorKind::Internal, "", family);
            }
            ServeError::EngineGone => {
                tracing::error!(error = %e, "engine failed");
                return Self::new(ErrorKind::Internal, "", family);
            }
        };
        Self::new(kind, e.to_string(), family)
    }

    pub fn new(kind: ErrorKind, message: impl Into<String>, family: Family) -> Self {
        Self {
            kind,
            message: message.into(),
            family,
            param: None,
            code_override: None,
        }
    }

    /// An OpenAI-API request for a model that is not served (404 `model_not_found`,
    /// param `model`); `what` says which kind ("model", "embedding model").
    pub fn model_not_found(what: &str, model: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!("the {what} '{model}' does not exist; GET /v1/models lists the served ones"),
            Family::OpenAi,
        )
        .with_code("model_not_found")
        .with_param("model")
    }

    /// A more specific stable code than the kind's default (e.g. `context_length_exceeded`).
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code_override = Some(code);
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn code(&self) -> &'static str {
        self.code_override.unwrap_or(self.kind.table().1)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, error_type) = self.kind.table();
        let code = self.code();
        let message = if status.is_server_error() && self.kind == ErrorKind::Internal {
            "internal error; the server log has the detail under this request's id".to_string()
        } else {
            self.message
        };
        let body = match self.family {
            Family::OpenAi => json!({
                "error": { "message": message, "type": error_type, "code": code, "param": self.param }
            }),
            Family::InferenceProtocol => json!({ "error": message, "code": code }),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(wait) = self.kind.retry_after() {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn body_json(r: Response) -> serde_json::Value {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn openai_shape_with_retry_after_rounded_up() {
        let e = ApiError::new(
            ErrorKind::RateLimited {
                retry_after: Duration::from_millis(1200),
            },
            "slow down",
            Family::OpenAi,
        );
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let v = body_json(r).await;
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(v["error"]["message"], "slow down");
        assert!(v["error"]["param"].is_null());
    }

    #[tokio::test]
    async fn inference_protocol_shape_and_hidden_internals() {
        let e = ApiError::new(
            ErrorKind::Internal,
            "sled exploded at /var/lib",
            Family::InferenceProtocol,
        );
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let v = body_json(r).await;
        assert_eq!(v["code"], "internal_error");
        assert!(!v["error"].as_str().unwrap().contains("sled"));
    }

    #[test]
    fn family_follows_the_path() {
        assert_eq!(Family::for_path("/v2"), Family::InferenceProtocol);
        assert_eq!(Family::for_path("/v2/models/x"), Family::InferenceProtocol);
        assert_eq!(Family::for_path("/v20"), Family::OpenAi);
        assert_eq!(Family::for_path("/v1/models"), Family::OpenAi);
    }
}
