//! Indexed listings and watches (`GET /v1/watch`, see [`crate::admin::watch`]) for
//! [`AdminClient`].

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Method;

use super::{decode, percent_encode, AdminClient, ClientError, Open, RawResponse};
use crate::admin::watch::WatchLine;
use crate::admin::{KvListItem, INDEX_HEADER, NEXT_HEADER};

/// Silence after which a watch stream is taken for dead: three heartbeats and a margin.
pub const WATCH_SILENCE: Duration = Duration::from_secs(35);

/// Longest line a watch stream may send (a change of the largest value, escaped).
const MAX_LINE: usize = 4 * 1024 * 1024;

/// A listing with the change index to watch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedListing {
    /// Live entries, sorted by key.
    pub items: Vec<KvListItem>,
    /// Watch from this index: no change after the listing is missed.
    pub index: u64,
    /// Each page's last key (none for the last page) and the index it is consistent
    /// with, in order.
    pages: Vec<(Option<String>, u64)>,
}

impl IndexedListing {
    /// True when a change to `key` at `index`, brought by a watch from
    /// [`IndexedListing::index`], is already shown by the listing: a listing of several
    /// pages reads each at its own index, so a later page may show changes after the
    /// first page's index. A client skips such changes to repeat none.
    pub fn shows(&self, key: &str, index: u64) -> bool {
        let page = self
            .pages
            .iter()
            .find(|(last, _)| last.as_deref().is_none_or(|l| key <= l));
        page.is_some_and(|(_, at)| index <= *at)
    }
}

/// A line of a newline-delimited JSON stream, with the index to resume from.
pub trait StreamLine: serde::de::DeserializeOwned {
    /// The index a client resumes from once it has taken this line, if it names one.
    fn resume_index(&self) -> Option<u64>;
}

impl StreamLine for WatchLine {
    fn resume_index(&self) -> Option<u64> {
        Some(self.index())
    }
}

/// A stream's lines as they arrive (see [`AdminClient::watch`] and
/// [`AdminClient::watch_events`]).
pub struct LineStream<L> {
    open: Open,
    buf: Vec<u8>,
    index: Option<u64>,
    ended: bool,
    _line: std::marker::PhantomData<L>,
}

/// A key watch's lines (see [`AdminClient::watch`]).
pub type WatchStream = LineStream<WatchLine>;

impl<L> std::fmt::Debug for LineStream<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineStream")
            .field("index", &self.index)
            .finish()
    }
}

impl<L> Drop for LineStream<L> {
    fn drop(&mut self) {
        self.open.driver.abort();
    }
}

impl<L: StreamLine> LineStream<L> {
    /// The index to resume from: the last line's, or where the watch started.
    pub fn index(&self) -> Option<u64> {
        self.index
    }

    /// The next line; `None` once the stream ended (after a reset line, or when the node
    /// shut down). A stream silent for [`WATCH_SILENCE`] fails with a timeout.
    pub async fn next(&mut self) -> Result<Option<L>, ClientError> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let line: L = decode(&line)?;
                if let Some(i) = line.resume_index() {
                    self.index = Some(i);
                }
                return Ok(Some(line));
            }
            if self.ended {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(ClientError::Decode("the watch ended within a line".into())),
                };
            }
            let body: &mut Incoming = self.open.resp.body_mut();
            let frame = match tokio::time::timeout(WATCH_SILENCE, body.frame()).await {
                Err(_) => return Err(silent()),
                Ok(None) => {
                    self.ended = true;
                    continue;
                }
                Ok(Some(frame)) => frame.map_err(|e| ClientError::Decode(e.to_string()))?,
            };
            if let Ok(data) = frame.into_data() {
                if self.buf.len() + data.len() > MAX_LINE {
                    return Err(ClientError::Decode(format!(
                        "a watch line exceeds {MAX_LINE} bytes"
                    )));
                }
                self.buf.extend_from_slice(&data);
            }
        }
    }
}

/// The error of a watch stream that sent nothing for [`WATCH_SILENCE`].
fn silent() -> ClientError {
    ClientError::Decode(format!(
        "the watch stream was silent for {} s (no heartbeat): the connection is dead",
        WATCH_SILENCE.as_secs()
    ))
}

impl AdminClient {
    /// Every page of a listing of the keys starting with `prefix`, with the change index
    /// to watch from ([`AdminClient::watch`]) so that no change is missed or repeated
    /// (skip those [`IndexedListing::shows`]).
    pub async fn list_indexed(&self, prefix: &str) -> Result<IndexedListing, ClientError> {
        let mut items = Vec::new();
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/v1/kv?prefix={}", percent_encode(prefix, false));
            if let Some(a) = &after {
                path.push_str("&after=");
                path.push_str(a);
            }
            let resp = self.request(Method::GET, &path, None).await?;
            if !resp.status.is_success() {
                return Err(self.error(resp));
            }
            let header = |name: &str| {
                resp.headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let index = header(INDEX_HEADER)
                .and_then(|i| i.parse::<u64>().ok())
                .ok_or_else(|| {
                    ClientError::Decode(format!(
                        "the listing carries no {INDEX_HEADER} header (a node without watches?)"
                    ))
                })?;
            let next = header(NEXT_HEADER);
            let page: Vec<KvListItem> = decode(&resp.body)?;
            let last = next.as_ref().and(page.last()).map(|i| i.key.clone());
            items.extend(page);
            pages.push((last, index));
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        Ok(IndexedListing {
            items,
            index: pages[0].1,
            pages,
        })
    }

    /// Watches the keys starting with `prefix`: every change after `index` (none: from
    /// now on), then heartbeats, and a reset line when the node cannot resume from
    /// `index` (then re-list and watch from the listing's index). The request's timeout
    /// applies until the answer's header; the stream then lasts as long as the node
    /// sends (at least a heartbeat every 10 s).
    pub async fn watch(
        &self,
        prefix: &str,
        index: Option<u64>,
    ) -> Result<WatchStream, ClientError> {
        let mut path = format!("/v1/watch?prefix={}", percent_encode(prefix, false));
        if let Some(i) = index {
            path.push_str(&format!("&index={i}"));
        }
        self.stream(&path).await
    }

    /// Opens a newline-delimited JSON stream at `path`; its start index is the answer's
    /// [`INDEX_HEADER`].
    pub(crate) async fn stream<L: StreamLine>(
        &self,
        path: &str,
    ) -> Result<LineStream<L>, ClientError> {
        self.stream_with(Method::GET, path, None).await
    }

    /// [`AdminClient::stream`] with another method and a request body.
    pub(super) async fn stream_with<L: StreamLine>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<LineStream<L>, ClientError> {
        let open = match tokio::time::timeout(self.timeout, self.open(method, path, body)).await {
            Ok(open) => open?,
            Err(_) => {
                return Err(ClientError::Timeout {
                    addr: self.addr.clone(),
                    timeout: self.timeout,
                })
            }
        };
        if !open.resp.status().is_success() {
            let status = open.resp.status();
            let headers = open.resp.headers().clone();
            let body = tokio::time::timeout(self.timeout, open.resp.into_body().collect()).await;
            open.driver.abort();
            let body = match body {
                Ok(Ok(b)) => b.to_bytes(),
                _ => Default::default(),
            };
            return Err(self.error(RawResponse {
                status,
                headers,
                body,
            }));
        }
        let start = open
            .resp
            .headers()
            .get(INDEX_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(LineStream {
            open,
            buf: Vec::new(),
            index: start,
            ended: false,
            _line: std::marker::PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_of_several_pages_shows_what_each_page_read() {
        let listing = IndexedListing {
            items: Vec::new(),
            index: 10,
            pages: vec![(Some("b".into()), 10), (Some("m".into()), 15), (None, 20)],
        };
        // The first page read at 10: a later change to its keys is news.
        assert!(listing.shows("a", 10));
        assert!(!listing.shows("b", 11));
        // The second page, keys after "b" up to "m", read at 15.
        assert!(listing.shows("c", 15));
        assert!(listing.shows("m", 12));
        assert!(!listing.shows("m", 16));
        // The last page holds every later key.
        assert!(listing.shows("z", 20));
        assert!(!listing.shows("z", 21));
    }
}
