//! Reading request bodies within the configured size limit (413 past it).

use axum::body::Body;
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::error::{ApiError, ErrorKind, Family};

/// Reads a whole body, refusing it once it exceeds `limit` bytes.
pub async fn read_limited(body: Body, limit: usize, family: Family) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit, family)),
        Err(_) => Err(ApiError::new(
            ErrorKind::BadRequest,
            "the request body could not be read completely",
            family,
        )),
    }
}

pub(crate) fn too_large(limit: usize, family: Family) -> ApiError {
    ApiError::new(
        ErrorKind::TooLarge { limit },
        format!("the request body exceeds the limit of {limit} bytes"),
        family,
    )
}
