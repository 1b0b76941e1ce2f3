//! `GET /flows/stream`: new flow records as server-sent events.
//!
//! A task per subscriber reads the broadcast of new records, keeps those matching its filter
//! and writes them into a small channel the response body drains. When the client reads slowly
//! the channel fills, the task stops reading the broadcast, and the broadcast drops the oldest
//! records for this subscriber alone; the task then says how many with an `event: lost`. When the
//! client goes away the body is dropped, the channel closes, and the task ends.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use septa_flows::FlowRecord;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::{Instant, interval_at};

use super::AdminBody;
use crate::filter::FlowFilter;
use crate::recent::{Follow, Recent};

/// Events waiting for a slow client before the subscriber stops reading the broadcast.
const PENDING_EVENTS: usize = 64;

/// Starts streaming to one subscriber. The subscription is taken before this returns, so every
/// record observed after the response headers are sent is delivered (or counted as lost).
pub(super) fn respond(
    recent: &Recent,
    filter: FlowFilter,
    heartbeat: Duration,
) -> Response<AdminBody> {
    // `since` or `limit` asks for the kept records first, then the live ones.
    let replay = (filter.since.is_some() || filter.limit.is_some()).then_some(&filter);
    let follow = recent.follow(replay);
    let (events, body) = mpsc::channel(PENDING_EVENTS);
    tokio::spawn(forward(follow, filter, events, heartbeat));
    let mut response = Response::new(ChannelBody { events: body }.boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn forward(
    follow: Follow,
    filter: FlowFilter,
    events: mpsc::Sender<Bytes>,
    heartbeat: Duration,
) {
    let Follow { backlog, mut live } = follow;
    // A first comment tells the client the stream is open and subscribed.
    if events
        .send(Bytes::from_static(b": subscribed\n\n"))
        .await
        .is_err()
    {
        return;
    }
    for record in backlog {
        if events.send(data_event(&record)).await.is_err() {
            return;
        }
    }
    let mut ticks = interval_at(Instant::now() + heartbeat, heartbeat);
    loop {
        let event = tokio::select! {
            () = events.closed() => return,
            _ = ticks.tick() => Bytes::from_static(b": heartbeat\n\n"),
            received = live.recv() => match received {
                Ok(record) if filter.matches(&record) => data_event(&record),
                Ok(_) => continue,
                Err(RecvError::Lagged(lost)) => {
                    Bytes::from(format!("event: lost\ndata: {{\"lost\":{lost}}}\n\n"))
                }
                Err(RecvError::Closed) => return,
            },
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

fn data_event(record: &Arc<FlowRecord>) -> Bytes {
    // Compact JSON has no raw newline, so one `data:` line holds the whole record.
    let mut event = b"data: ".to_vec();
    if serde_json::to_writer(&mut event, &**record).is_err() {
        return Bytes::new();
    }
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// A response body fed from a channel, ending when the sender does.
struct ChannelBody {
    events: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.events
            .poll_recv(cx)
            .map(|event| event.map(|bytes| Ok(Frame::data(bytes))))
    }
}
