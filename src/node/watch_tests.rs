use super::*;

const T0: u64 = 1_700_000_000_000;
const QUICK: Duration = Duration::from_millis(20);

fn w() -> NodeId {
    NodeId::new("n1").unwrap()
}

fn log_with(log_changes: usize, log_bytes: u64, max_watches: usize) -> Arc<ChangeLog> {
    let cfg = WatchConfig {
        log_changes,
        log_bytes,
        max_watches,
    };
    cfg.validate().unwrap();
    ChangeLog::new(cfg, T0)
}

fn set(log: &ChangeLog, key: &str, value: &str) -> u64 {
    log.append(T0, key.into(), Some(value.as_bytes().to_vec()), w())
}

/// Every item a watch yields until it goes idle or ends.
async fn drain(watch: &mut Watch) -> Vec<WatchItem> {
    let mut out = Vec::new();
    while let WatchNext::Item(item) = watch.next(QUICK).await {
        out.push(item);
    }
    out
}

fn keys(items: &[WatchItem]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            WatchItem::Change(c) => c.key.clone(),
            WatchItem::Reset { reason, .. } => format!("reset:{}", reason.as_str()),
        })
        .collect()
}

#[test]
fn indexes_increase_strictly_and_start_above_the_life_start() {
    let log = log_with(100, 1 << 20, 4);
    let start = log.index();
    assert_eq!(start, T0 << 10);
    let mut prev = start;
    // Many changes within one millisecond, then the wall clock going back.
    for i in 0..3_000u64 {
        let wall = if i < 2_000 { T0 } else { T0 - 5 };
        let idx = log.append(wall, format!("k{i}"), None, w());
        assert!(idx > prev, "index {idx} after {prev}");
        prev = idx;
    }
    // A later wall clock moves the index up to it.
    let idx = log.append(T0 + 10, "late".into(), None, w());
    assert_eq!(idx, (T0 + 10) << 10);
    assert_eq!(log.index(), idx);
}

#[tokio::test]
async fn a_watch_from_an_index_gets_every_later_change_once_in_order() {
    let log = log_with(100, 1 << 20, 4);
    let first = set(&log, "a/1", "x");
    let second = set(&log, "a/2", "y");
    set(&log, "a/3", "z");
    let mut watch = log.watch("a/", Some(first)).unwrap();
    assert_eq!(watch.start(), Some(first));
    // Caught up from the ring, then live.
    set(&log, "a/4", "w");
    let items = drain(&mut watch).await;
    assert_eq!(keys(&items), ["a/2", "a/3", "a/4"]);
    let WatchItem::Change(c) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(c.index, second);
    assert_eq!(c.value.as_deref(), Some(&b"y"[..]));
    // Idle: everything up to the current index was delivered.
    assert_eq!(
        watch.next(QUICK).await,
        WatchNext::Idle { index: log.index() }
    );
}

#[tokio::test]
async fn only_keys_under_the_prefix_are_watched_and_deletes_are_changes() {
    let log = log_with(100, 1 << 20, 4);
    let start = log.index();
    set(&log, "app/x", "1");
    set(&log, "other/x", "2");
    set(&log, "ap", "3");
    let mut from_ring = log.watch("app/", Some(start)).unwrap();
    let mut live = log.watch("app/", None).unwrap();
    log.append(T0, "app/x".into(), None, w());
    set(&log, "other/y", "4");
    let ring_items = drain(&mut from_ring).await;
    assert_eq!(keys(&ring_items), ["app/x", "app/x"]);
    let live_items = drain(&mut live).await;
    assert_eq!(keys(&live_items), ["app/x"]);
    let WatchItem::Change(c) = &live_items[0] else {
        panic!()
    };
    assert_eq!(c.value, None, "a delete is a change without a value");
}

#[tokio::test]
async fn the_ring_is_bounded_by_count_and_an_evicted_index_is_reset_as_behind() {
    let log = log_with(3, 1 << 20, 8);
    let start = log.index();
    let idx: Vec<u64> = (0..5).map(|i| set(&log, &format!("k{i}"), "v")).collect();
    // Changes 0 and 1 were evicted: a resume from before change 1 would miss it.
    for from in [start, idx[0]] {
        let mut watch = log.watch("", Some(from)).unwrap();
        assert_eq!(watch.start(), None);
        let items = drain(&mut watch).await;
        assert_eq!(
            items,
            [WatchItem::Reset {
                index: idx[4],
                reason: ResetReason::Behind
            }]
        );
        assert_eq!(watch.next(QUICK).await, WatchNext::End);
    }
    // From the last evicted change on, the ring holds everything.
    let mut watch = log.watch("", Some(idx[1])).unwrap();
    assert_eq!(keys(&drain(&mut watch).await), ["k2", "k3", "k4"]);
    assert_eq!(log.stats().resets_by_reason()[0], ("behind", 2));
}

#[tokio::test]
async fn the_ring_is_bounded_by_bytes() {
    let log = log_with(1_000, 1 << 20, 8);
    let big = "x".repeat(300 * 1024);
    let idx: Vec<u64> = (0..6).map(|i| set(&log, &format!("k{i}"), &big)).collect();
    // 1 MiB holds three values of 300 KiB.
    let mut watch = log.watch("", Some(idx[2])).unwrap();
    assert_eq!(keys(&drain(&mut watch).await), ["k3", "k4", "k5"]);
    let mut watch = log.watch("", Some(idx[1])).unwrap();
    assert_eq!(keys(&drain(&mut watch).await), ["reset:behind"]);
}

#[tokio::test]
async fn indexes_of_another_life_or_beyond_the_current_one_are_reset() {
    let log = log_with(100, 1 << 20, 8);
    let last = set(&log, "k", "v");
    let before = (T0 - 1) << 10;
    let mut watch = log.watch("", Some(before)).unwrap();
    assert_eq!(
        drain(&mut watch).await,
        [WatchItem::Reset {
            index: last,
            reason: ResetReason::BeforeThisLife
        }]
    );
    let mut watch = log.watch("", Some(last + 1)).unwrap();
    assert_eq!(
        drain(&mut watch).await,
        [WatchItem::Reset {
            index: last,
            reason: ResetReason::Ahead
        }]
    );
    // The start of this life itself is fine: every change of this life follows it.
    let mut watch = log.watch("", Some(T0 << 10)).unwrap();
    assert_eq!(keys(&drain(&mut watch).await), ["k"]);
    let by_reason = log.stats().resets_by_reason();
    assert_eq!(
        by_reason,
        [("behind", 0), ("before_this_life", 1), ("ahead", 1)]
    );
}

#[tokio::test]
async fn a_watcher_that_does_not_read_is_reset_and_never_holds_the_producer() {
    let log = log_with(100_000, 64 << 20, 8);
    let mut slow = log.watch("", None).unwrap();
    let mut reader = log.watch("", None).unwrap();
    let mut got = 0usize;
    // The producer never waits: 5,000 changes go in while `slow` reads nothing.
    let started = std::time::Instant::now();
    for i in 0..5_000 {
        set(&log, &format!("k{i}"), "v");
        // The reader keeps up.
        while let WatchNext::Item(WatchItem::Change(_)) = reader.next(Duration::ZERO).await {
            got += 1;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    while let WatchNext::Item(WatchItem::Change(_)) = reader.next(QUICK).await {
        got += 1;
    }
    assert_eq!(got, 5_000, "a reader that keeps up misses nothing");
    // The slow one gets what was queued, then the reset marker, then the end.
    let items = drain(&mut slow).await;
    assert_eq!(items.len(), WATCH_QUEUE + 1);
    assert!(items[..WATCH_QUEUE]
        .iter()
        .all(|i| matches!(i, WatchItem::Change(_))));
    assert!(
        matches!(
            items[WATCH_QUEUE],
            WatchItem::Reset {
                reason: ResetReason::Behind,
                ..
            }
        ),
        "{:?}",
        items.last()
    );
    assert_eq!(slow.next(QUICK).await, WatchNext::End);
    assert_eq!(log.lock().watchers.len(), 1, "the slow watcher was dropped");
}

#[tokio::test]
async fn watches_beyond_max_watches_are_refused_and_long_prefixes_too() {
    let log = log_with(100, 1 << 20, 2);
    let a = log.watch("", None).unwrap();
    let _b = log.watch("x", Some(log.index())).unwrap();
    assert_eq!(
        log.watch("", None).unwrap_err(),
        WatchError::TooMany { open: 2 }
    );
    drop(a);
    let _c = log.watch("", None).unwrap();
    let long = "p".repeat(MAX_PREFIX + 1);
    let err = log.watch(&long, None).unwrap_err();
    assert_eq!(
        err,
        WatchError::PrefixTooLong {
            len: MAX_PREFIX + 1
        }
    );
    assert!(err.to_string().contains("4096"), "{err}");
    let s = log.stats();
    assert_eq!(s.open.load(Ordering::Relaxed), 2);
    assert_eq!(s.opened.load(Ordering::Relaxed), 3);
    assert_eq!(s.refused.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn closing_the_log_ends_every_watch() {
    let log = log_with(100, 1 << 20, 4);
    let start = log.index();
    set(&log, "k", "v");
    let mut live = log.watch("", None).unwrap();
    let mut catching_up = log.watch("", Some(start)).unwrap();
    set(&log, "k2", "v");
    log.close();
    assert_eq!(keys(&drain(&mut live).await), ["k2"]);
    assert_eq!(live.next(QUICK).await, WatchNext::End);
    assert_eq!(catching_up.next(QUICK).await, WatchNext::End);
    assert_eq!(log.watch("", None).unwrap_err(), WatchError::Closed);
}

#[test]
fn the_configuration_is_validated_naming_the_field() {
    assert!(WatchConfig::default().validate().is_ok());
    let bad = |f: fn(&mut WatchConfig)| {
        let mut c = WatchConfig::default();
        f(&mut c);
        c.validate().unwrap_err()
    };
    assert!(bad(|c| c.log_changes = 0).starts_with("watch.log_changes"));
    assert!(bad(|c| c.log_bytes = 1000).starts_with("watch.log_bytes"));
    assert!(bad(|c| c.max_watches = 0).starts_with("watch.max_watches"));
}
