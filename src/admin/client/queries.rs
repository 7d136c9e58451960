//! Queries (`POST /v1/query/{name}`, see [`crate::admin::queries`]) for [`AdminClient`].

use std::time::Duration;

use hyper::Method;

use super::watch::{LineStream, StreamLine};
use super::{percent_encode, AdminClient, ClientError};
use crate::admin::queries::QueryLine;
use crate::core::queries::QueryFilter;

impl StreamLine for QueryLine {
    fn resume_index(&self) -> Option<u64> {
        None
    }
}

/// The request path of a query named `name` with `filter` and `timeout`.
pub fn query_path(name: &str, filter: &QueryFilter, timeout: Duration) -> String {
    let mut path = format!(
        "/v1/query/{}?timeout_ms={}",
        percent_encode(name, false),
        timeout.as_millis()
    );
    for (k, v) in &filter.tags {
        path.push_str("&tag=");
        path.push_str(&percent_encode(&format!("{k}={v}"), false));
    }
    if let Some(dc) = &filter.dc {
        path.push_str("&dc=");
        path.push_str(&percent_encode(dc, false));
    }
    for n in &filter.nodes {
        path.push_str("&node=");
        path.push_str(&percent_encode(n.as_str(), false));
    }
    path
}

impl AdminClient {
    /// Asks the members that match `filter` a query named `name` from the node, and
    /// follows its lines: acks and answers as they arrive, heartbeats, then the
    /// report (`QueryLine::Done`), after which the stream ends. A refusal (bad name or
    /// filter 400, payload too large 413, rate or too many queries 429) is a
    /// [`ClientError::Status`] with the node's message.
    pub async fn query(
        &self,
        name: &str,
        payload: &[u8],
        filter: &QueryFilter,
        timeout: Duration,
    ) -> Result<LineStream<QueryLine>, ClientError> {
        if name.is_empty() {
            return Err(ClientError::Invalid("a query needs a name".into()));
        }
        let path = query_path(name, filter, timeout);
        self.stream_with(Method::POST, &path, Some(payload.to_vec()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::queries::parse_params;
    use crate::core::NodeId;

    #[test]
    fn a_filter_survives_the_request_path() {
        let filter = QueryFilter {
            tags: [("role".to_string(), "db=primary &x".to_string())].into(),
            dc: Some("eu west".into()),
            nodes: vec![NodeId::new("n1").unwrap(), NodeId::new("n2").unwrap()],
        };
        let path = query_path("up time", &filter, Duration::from_millis(1500));
        let (p, q) = path.split_once('?').unwrap();
        assert_eq!(p, "/v1/query/up%20time");
        let params: Vec<(String, String)> = serde_urlencoded_pairs(q);
        assert_eq!(parse_params(&params).unwrap(), (filter, 1500));
    }

    /// Decodes `a=b&c=d` as the server's query extractor does.
    fn serde_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
        let uri: axum::http::Uri = format!("/x?{q}").parse().unwrap();
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    #[test]
    fn bad_parameters_are_refused_with_a_message() {
        let p = |pairs: &[(&str, &str)]| {
            parse_params(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        assert!(p(&[("tag", "novalue")]).unwrap_err().contains("KEY=VALUE"));
        assert!(p(&[("node", "Bad Id")]).unwrap_err().contains("node"));
        assert!(p(&[("timeout_ms", "soon")])
            .unwrap_err()
            .contains("timeout_ms"));
        assert!(p(&[("colour", "red")])
            .unwrap_err()
            .contains("unknown parameter"));
        assert!(p(&[("dc", "a"), ("dc", "b")])
            .unwrap_err()
            .contains("twice"));
        let many: Vec<(String, String)> = (0..17)
            .map(|i| ("tag".to_string(), format!("k{i}=v")))
            .collect();
        assert!(parse_params(&many).unwrap_err().contains("17 tags"));
        assert_eq!(p(&[]).unwrap(), (QueryFilter::default(), 2_000));
    }
}
