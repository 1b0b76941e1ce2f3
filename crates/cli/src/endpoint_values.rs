//! The value of an endpoint `PUT`, read by the host before the call takes a slot.
//!
//! A guest writes the body of its outgoing request itself, and may never finish it. Read inside
//! the endpoint's bulkhead, an unfinished body would hold a slot of the endpoint and of its
//! segment for as long as the guest likes: a guest that opens 64 puts and stops writing would
//! take every slot of a default endpoint, and every other function's calls to it would be
//! refused. So the value is read first, within the endpoint's timeout and no further than its
//! size limit, and only a call whose value has arrived takes a slot. What is handed to the store
//! is the value as read: whole, one byte past the limit (which the store refuses as too large),
//! or ending in an error (which the store answers as an unreadable body).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use septa_runtime::{HttpError, WasiBody};

/// A request body already read: its bytes, then its error if reading it failed.
pub(crate) struct ReadValue {
    bytes: Option<Bytes>,
    error: Option<HttpError>,
}

impl ReadValue {
    fn whole(bytes: Bytes) -> Self {
        Self {
            bytes: Some(bytes),
            error: None,
        }
    }
}

impl Body for ReadValue {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if let Some(bytes) = self.bytes.take().filter(|b| !b.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        Poll::Ready(self.error.take().map(Err))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.as_ref().is_none_or(Bytes::is_empty) && self.error.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len = self.bytes.as_ref().map_or(0, Bytes::len) as u64;
        SizeHint::with_exact(len)
    }
}

/// Reads the body of `request` (a `PUT` to an endpoint whose values are at most `limit` bytes)
/// within `timeout`, and returns the request with the body as read. A body its declared length
/// already puts over the limit is not read at all: the store refuses it on the header.
pub(crate) async fn read_first(
    request: http::Request<WasiBody>,
    limit: usize,
    timeout: Duration,
) -> http::Request<ReadValue> {
    let (parts, mut body) = request.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return http::Request::from_parts(parts, ReadValue::whole(Bytes::new()));
    }
    let mut value = BytesMut::new();
    let read = tokio::time::timeout(timeout, async {
        // One byte past the limit is enough for the store to know it is too large.
        while value.len() <= limit {
            match body.frame().await {
                None => return Ok(()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        value.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(())
    })
    .await;
    let error = match read {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(HttpError::InternalError(Some(format!(
            "the value did not arrive within the endpoint's timeout of {} ms",
            timeout.as_millis()
        )))),
    };
    let read = ReadValue {
        bytes: Some(value.freeze()),
        error,
    };
    http::Request::from_parts(parts, read)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use futures_util::StreamExt;
    use http_body_util::{Full, StreamBody};

    use super::*;

    fn put(body: WasiBody) -> http::Request<WasiBody> {
        http::Request::put("http://kv.internal/kv/a")
            .body(body)
            .unwrap()
    }

    async fn collected(request: http::Request<ReadValue>) -> Result<Bytes, HttpError> {
        Ok(request.into_body().collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn a_whole_value_is_handed_on_as_it_was_written() {
        let body = Full::new(Bytes::from_static(b"hello"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let read = read_first(put(body), 16, Duration::from_secs(1)).await;
        assert_eq!(collected(read).await.unwrap(), "hello");
    }

    #[tokio::test]
    async fn a_value_past_the_limit_is_read_one_frame_past_it_and_no_further() {
        let frames = (0..1000).map(|_| Ok::<_, HttpError>(Frame::data(Bytes::from(vec![7u8; 8]))));
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
        let read = read_first(put(body), 20, Duration::from_secs(1)).await;
        assert_eq!(collected(read).await.unwrap().len(), 24);
    }

    #[tokio::test]
    async fn a_value_never_finished_ends_in_an_error_at_the_timeout() {
        let frames = futures_util::stream::iter([Ok::<_, HttpError>(Frame::data(
            Bytes::from_static(b"part"),
        ))])
        .chain(futures_util::stream::pending());
        let body = StreamBody::new(frames).boxed_unsync();
        let read = read_first(put(body), 1024, Duration::from_millis(50)).await;
        let error = collected(read).await.unwrap_err();
        assert!(error.to_string().contains("50 ms"), "{error}");
    }
}
