//! A response body that keeps something alive until the body is finished or dropped: an
//! admission slot, a connection's in-flight count. One wrapper for every such hold.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;

/// `inner`, holding `held` until it is dropped.
pub fn holding<T: Send + Unpin + 'static>(inner: Body, held: T) -> Body {
    Body::new(Holding { inner, _held: held })
}

struct Holding<T> {
    inner: Body,
    _held: T,
}

impl<T: Send + Unpin + 'static> http_body::Body for Holding<T> {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
