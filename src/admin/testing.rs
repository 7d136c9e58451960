//! An in-memory [`AdminBackend`] and a server harness, for tests of the admin API and its clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{AdminBackend, WriteError};
use crate::core::NodeId;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::node::watch::{ChangeLog, Watch, WatchConfig, WatchError};
use crate::node::{KvEntry, MemberView, StatusView};

/// Largest key the fake accepts.
pub const FAKE_MAX_KEY: usize = 64;
/// Keys under this prefix lie outside the fake node's write grant.
pub const FAKE_FORBIDDEN: &str = "forbidden/";
/// Largest value the fake accepts.
pub const FAKE_MAX_VALUE: usize = 256 * 1024;

/// An in-memory node: a KV map, two members, a change log and a few metrics.
pub struct FakeBackend {
    kv: Mutex<BTreeMap<String, KvEntry>>,
    hlc: Mutex<u64>,
    /// A failed store: every write is refused with this message.
    failed: Mutex<Option<String>>,
    /// Every change, indexed, for watches (fed under `kv`'s lock).
    changes: Arc<ChangeLog>,
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self {
            kv: Mutex::default(),
            hlc: Mutex::default(),
            failed: Mutex::default(),
            changes: ChangeLog::new(WatchConfig::default(), 1_700_000_000_000),
        }
    }
}

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

impl AdminBackend for FakeBackend {
    fn kv_get(&self, key: &str) -> Option<KvEntry> {
        self.kv.lock().unwrap().get(key).cloned()
    }

    fn kv_set(&self, key: &str, value: Vec<u8>) -> Result<(), WriteError> {
        if let Some(f) = self.store_failure() {
            return Err(f.into());
        }
        if key.starts_with(FAKE_FORBIDDEN) {
            return Err(WriteError::Forbidden(
                "key outside the writer's grant (allowed prefixes: app/)".into(),
            ));
        }
        if key.len() > FAKE_MAX_KEY {
            return Err(format!("key is longer than {FAKE_MAX_KEY} bytes").into());
        }
        if value.len() > FAKE_MAX_VALUE {
            return Err(format!("value is longer than {FAKE_MAX_VALUE} bytes").into());
        }
        let mut hlc = self.hlc.lock().unwrap();
        *hlc += 1;
        let mut kv = self.kv.lock().unwrap();
        let counter = kv.get(key).map_or(0, |e| e.version["n1"]) + 1;
        self.changes
            .append(1_700_000_000_000, key.into(), Some(value.clone()), id("n1"));
        kv.insert(
            key.to_string(),
            KvEntry {
                key: key.to_string(),
                value,
                writer: id("n1"),
                hlc_ms: 1_700_000_000_000 + *hlc,
                hlc_lc: 2,
                version: BTreeMap::from([("n1".to_string(), counter)]),
            },
        );
        Ok(())
    }

    fn kv_delete(&self, key: &str) -> Result<bool, WriteError> {
        if let Some(f) = self.store_failure() {
            return Err(f.into());
        }
        let mut kv = self.kv.lock().unwrap();
        let removed = kv.remove(key).is_some();
        if removed {
            self.changes
                .append(1_700_000_000_000, key.into(), None, id("n1"));
        }
        Ok(removed)
    }

    fn kv_list_indexed(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<KvEntry>, Option<u64>) {
        // Under the map's lock, as changes are logged under it.
        let kv = self.kv.lock().unwrap();
        let page = kv
            .values()
            .filter(|e| e.key.starts_with(prefix) && after.is_none_or(|a| e.key.as_str() > a))
            .take(limit)
            .cloned()
            .collect();
        (page, Some(self.changes.index()))
    }

    fn watch(&self, prefix: &str, index: Option<u64>) -> Result<Watch, WatchError> {
        self.changes.watch(prefix, index)
    }

    fn store_failure(&self) -> Option<String> {
        self.failed.lock().unwrap().clone()
    }

    fn kv_list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KvEntry> {
        self.kv
            .lock()
            .unwrap()
            .values()
            .filter(|e| e.key.starts_with(prefix) && after.is_none_or(|a| e.key.as_str() > a))
            .take(limit)
            .cloned()
            .collect()
    }

    fn members(&self) -> Vec<MemberView> {
        vec![
            MemberView {
                id: id("n2"),
                addr: "127.0.0.1:7002".into(),
                status: "suspect".into(),
                incarnation: 3,
                dc: "eu-west".into(),
                zone: "b".into(),
                tags: BTreeMap::from([("role".to_string(), "db".to_string())]),
                last_heard_ms_ago: Some(1500),
                rtt_ms: Some(0.42),
                is_self: false,
            },
            MemberView {
                id: id("n1"),
                addr: "127.0.0.1:7001".into(),
                status: "alive".into(),
                incarnation: 1,
                dc: "eu-west".into(),
                zone: "a".into(),
                tags: BTreeMap::new(),
                last_heard_ms_ago: None,
                rtt_ms: None,
                is_self: true,
            },
        ]
    }

    fn status(&self) -> StatusView {
        let kv = self.kv.lock().unwrap();
        StatusView {
            node_id: id("n1"),
            cluster: "test".into(),
            listen: "127.0.0.1:7001".into(),
            dc: "eu-west".into(),
            members: BTreeMap::from([("alive".to_string(), 1), ("suspect".to_string(), 1)]),
            keys: kv.len(),
            tombstones: 0,
            clock_ahead_ms: 0,
            seeds: Vec::new(),
            may_write: "all keys".into(),
            uptime_s: 3725,
            version: "0.1.0".into(),
        }
    }

    fn register_metrics(self: Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(FakeMetrics(self)));
    }
}

/// The fake's metrics: its live keys and one member, read at each scrape.
struct FakeMetrics(Arc<FakeBackend>);

impl std::fmt::Debug for FakeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeMetrics")
    }
}

impl Collector for FakeMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let keys = ConstGauge::new(self.0.kv.lock().unwrap().len() as i64);
        keys.encode(encoder.encode_descriptor(
            "gossamer_keys",
            "Live keys.",
            None,
            keys.metric_type(),
        )?)?;
        let alive = ConstGauge::new(1i64);
        let mut members = encoder.encode_descriptor(
            "gossamer_members",
            "Members by status.",
            None,
            alive.metric_type(),
        )?;
        alive.encode(members.encode_family(&[("status", "alive")])?)
    }
}

/// A running admin server on 127.0.0.1 backed by a [`FakeBackend`]; stops when dropped.
pub struct TestServer {
    /// Address the server listens on.
    pub addr: SocketAddr,
    /// The backend, to inspect or seed state.
    pub backend: Arc<FakeBackend>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a server, requiring `token` if given.
    pub async fn start(token: Option<&str>) -> Self {
        Self::start_with(token, super::ServeLimits::default()).await
    }

    /// Starts a server within `limits`, requiring `token` if given.
    pub async fn start_with(token: Option<&str>, limits: super::ServeLimits) -> Self {
        Self::start_full(token, None, limits).await
    }

    /// Starts a server within `limits`, requiring `token` if given, serving HTTPS with
    /// `tls` if given.
    pub async fn start_full(
        token: Option<&str>,
        tls: Option<super::TlsSource>,
        limits: super::ServeLimits,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Arc::new(FakeBackend::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(super::serve_with(
            listener,
            backend.clone(),
            token.map(str::to_string),
            tls,
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            backend,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server and waits for it to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl FakeBackend {
    /// True if `key` is stored (exact name).
    pub fn kv_get_for_test(&self, key: &str) -> bool {
        self.kv.lock().unwrap().contains_key(key)
    }

    /// Number of stored keys.
    pub fn len_for_test(&self) -> usize {
        self.kv.lock().unwrap().len()
    }

    /// Stores `key = value` directly (no size checks), to seed large listings.
    pub fn insert_for_test(&self, key: &str, value: &[u8]) {
        let entry = KvEntry {
            key: key.to_string(),
            value: value.to_vec(),
            writer: id("n1"),
            hlc_ms: 1,
            hlc_lc: 0,
            version: BTreeMap::new(),
        };
        self.kv.lock().unwrap().insert(key.to_string(), entry);
    }

    /// Makes the store fail: every later write is refused with `msg`.
    pub fn fail_store_for_test(&self, msg: &str) {
        *self.failed.lock().unwrap() = Some(msg.to_string());
    }
}
