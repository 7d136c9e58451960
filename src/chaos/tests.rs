//! Raw datagrams between chaos sockets on 127.0.0.1, through quinn's socket API.

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quinn::udp::{RecvMeta, Transmit};
use quinn::AsyncUdpSocket;

use super::*;

const DEADLINE: Duration = Duration::from_secs(5);
const END: &[u8] = b"end";

fn bind(seed: u64) -> (Arc<ChaosSocket>, ChaosControl) {
    ChaosSocket::bind("127.0.0.1:0".parse().unwrap(), seed).expect("bind 127.0.0.1")
}

async fn send(from: &Arc<ChaosSocket>, to: SocketAddr, data: &[u8]) {
    send_transmit(
        from,
        &Transmit {
            destination: to,
            ecn: None,
            contents: data,
            segment_size: None,
            src_ip: None,
        },
    )
    .await;
}

/// Sends like quinn does: on `WouldBlock`, wait until writable and retry (bounded).
async fn send_transmit(from: &Arc<ChaosSocket>, t: &Transmit<'_>) {
    let mut poller = from.clone().create_io_poller();
    for _ in 0..10 {
        match from.try_send(t) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let writable = std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx));
                tokio::time::timeout(DEADLINE, writable)
                    .await
                    .expect("socket writable in time")
                    .expect("poll_writable");
            }
            Err(e) => panic!("send: {e}"),
        }
    }
    panic!("socket stayed busy");
}

/// Receives one batch of datagrams (GRO batches split by stride), or `None` at the deadline.
async fn recv_batch(sock: &ChaosSocket, deadline: Duration) -> Option<Vec<Vec<u8>>> {
    let mut storage = vec![0u8; 64 * 1024];
    let mut meta = [RecvMeta::default()];
    let fut = std::future::poll_fn(|cx| {
        let mut bufs = [IoSliceMut::new(&mut storage)];
        sock.poll_recv(cx, &mut bufs, &mut meta)
    });
    let n = tokio::time::timeout(deadline, fut).await.ok()?.ok()?;
    let mut out = Vec::new();
    for m in &meta[..n] {
        let stride = if m.stride == 0 { m.len } else { m.stride };
        out.extend(storage[..m.len].chunks(stride.max(1)).map(|c| c.to_vec()));
    }
    Some(out)
}

/// Receives datagrams until the end marker arrives; returns those before it.
async fn recv_until_end(sock: &ChaosSocket) -> Vec<Vec<u8>> {
    let start = Instant::now();
    let mut got = Vec::new();
    while start.elapsed() < DEADLINE {
        let Some(batch) = recv_batch(sock, DEADLINE).await else {
            break;
        };
        for d in batch {
            if d == END {
                return got;
            }
            got.push(d);
        }
    }
    panic!(
        "end marker not received within {DEADLINE:?}; got {} datagrams",
        got.len()
    );
}

/// Receives exactly `n` datagrams.
async fn recv_n(sock: &ChaosSocket, n: usize) -> Vec<Vec<u8>> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < DEADLINE {
        match recv_batch(sock, DEADLINE).await {
            Some(b) => got.extend(b),
            None => break,
        }
    }
    assert_eq!(got.len(), n, "datagrams received within {DEADLINE:?}");
    got
}

#[tokio::test]
async fn passes_datagrams_through_and_counts_them() {
    let (a, ca) = bind(1);
    let (b, cb) = bind(2);
    assert_eq!(a.max_transmit_segments(), 1);
    for i in 0..20u8 {
        send(&a, cb.local_addr(), &[i; 10]).await;
    }
    let got = recv_n(&b, 20).await;
    assert_eq!(got[0], vec![0u8; 10]);
    assert_eq!(ca.stats().sent, 20);
    assert_eq!(ca.stats().sent_bytes, 200);
    assert_eq!(cb.stats().received, 20);
    assert_eq!(ca.stats().dropped(), 0);
}

async fn lossy_run(seed: u64, loss: f64) -> (usize, ChaosStats) {
    let (a, ca) = bind(seed);
    let (b, cb) = bind(seed + 1);
    ca.set_loss(loss);
    for i in 0..200u32 {
        send(&a, cb.local_addr(), &i.to_be_bytes()).await;
    }
    ca.set_loss(0.0);
    send(&a, cb.local_addr(), END).await;
    (recv_until_end(&b).await.len(), ca.stats())
}

#[tokio::test]
async fn loss_is_counted_and_reproducible_from_the_seed() {
    let (got, st) = lossy_run(7, 0.5).await;
    assert!(
        (50..=150).contains(&st.dropped_loss),
        "dropped {} of 200 at 50 % loss",
        st.dropped_loss
    );
    assert_eq!(got as u64, 200 - st.dropped_loss);
    let (got2, st2) = lossy_run(7, 0.5).await;
    assert_eq!(
        (got, st.dropped_loss),
        (got2, st2.dropped_loss),
        "same seed, same drops"
    );
    let (got, st) = lossy_run(9, 1.0).await;
    assert_eq!((got, st.dropped_loss), (0, 200));
}

#[tokio::test]
async fn partitions_drop_both_directions() {
    let (a, ca) = bind(1);
    let (b, cb) = bind(2);
    // a blocks b: a's datagrams to b never leave.
    ca.block(cb.local_addr());
    for _ in 0..5 {
        send(&a, cb.local_addr(), b"x").await;
    }
    assert_eq!(ca.stats().dropped_partition_out, 5);
    assert_eq!(ca.blocked(), vec![cb.local_addr()]);
    ca.unblock(cb.local_addr());
    // b blocks a: a's datagrams arrive but b drops them.
    cb.block(ca.local_addr());
    for _ in 0..5 {
        send(&a, cb.local_addr(), b"y").await;
    }
    // Everything b receives from a while blocked is dropped; heal and mark the end.
    let (c, cc) = bind(3);
    send(&c, cb.local_addr(), b"from-c").await;
    let got = recv_n(&b, 1).await;
    assert_eq!(
        got,
        vec![b"from-c".to_vec()],
        "only the unblocked peer gets through"
    );
    assert_eq!(cb.stats().dropped_partition_in, 5);
    cb.heal();
    send(&a, cb.local_addr(), b"z").await;
    send(&a, cb.local_addr(), END).await;
    assert_eq!(recv_until_end(&b).await, vec![b"z".to_vec()]);
    assert_eq!(cc.stats().sent, 1);
}

#[tokio::test]
async fn partition_helper_separates_groups() {
    let (a, ca) = bind(1);
    let (b, cb) = bind(2);
    let (c, cc) = bind(3);
    let all = [ca.clone(), cb.clone(), cc.clone()];
    partition(&[&all[..1], &all[1..]]);
    assert_eq!(ca.blocked().len(), 2);
    assert_eq!(cb.blocked(), vec![ca.local_addr()]);
    send(&a, cb.local_addr(), b"lost").await;
    send(&b, cc.local_addr(), b"kept").await;
    assert_eq!(recv_n(&c, 1).await, vec![b"kept".to_vec()]);
    heal_partition(&all);
    send(&a, cb.local_addr(), b"after").await;
    assert_eq!(recv_n(&b, 1).await, vec![b"after".to_vec()]);
    assert_eq!(ca.stats().dropped_partition_out, 1);
    drop(c);
}

#[tokio::test]
async fn delay_and_jitter_do_not_block_the_sender() {
    let (a, ca) = bind(1);
    let (b, cb) = bind(2);
    ca.set_delay(Duration::from_millis(60), Duration::from_millis(20));
    let t0 = Instant::now();
    for i in 0..10u8 {
        send(&a, cb.local_addr(), &[i]).await;
    }
    let send_time = t0.elapsed();
    assert!(
        send_time < Duration::from_millis(50),
        "try_send waited {send_time:?}"
    );
    assert_eq!(ca.queued(), 10);
    recv_n(&b, 10).await;
    let t = t0.elapsed();
    assert!(t >= Duration::from_millis(60), "arrived after {t:?}");
    let st = ca.stats();
    assert_eq!((st.delayed, st.sent), (10, 10));
}

#[tokio::test]
async fn duplication_sends_every_datagram_twice() {
    let (a, ca) = bind(1);
    let (b, cb) = bind(2);
    ca.set_duplicate(1.0);
    for i in 0..10u8 {
        send(&a, cb.local_addr(), &[i]).await;
    }
    ca.set_faults(Faults::none());
    send(&a, cb.local_addr(), END).await;
    assert_eq!(recv_until_end(&b).await.len(), 20);
    assert_eq!(ca.stats().duplicated, 10);
    assert_eq!(ca.stats().sent, 21);
}

#[tokio::test]
async fn reordered_datagrams_are_overtaken() {
    let (a, ca) = bind(1);
    let (b, cb) = bind(2);
    ca.set_reorder(1.0, Duration::from_millis(100));
    send(&a, cb.local_addr(), b"first").await;
    ca.set_reorder(0.0, Duration::from_millis(100));
    send(&a, cb.local_addr(), b"second").await;
    let got = recv_n(&b, 2).await;
    assert_eq!(got, vec![b"second".to_vec(), b"first".to_vec()]);
    assert_eq!(ca.stats().reordered, 1);
}

#[tokio::test]
async fn multi_segment_transmits_are_split() {
    let (a, ca) = bind(1);
    let (b, cb) = bind(2);
    let mut data = vec![1u8; 100];
    data.extend([2u8; 100]);
    data.extend([3u8; 50]);
    let t = Transmit {
        destination: cb.local_addr(),
        ecn: None,
        contents: &data,
        segment_size: Some(100),
        src_ip: None,
    };
    send_transmit(&a, &t).await;
    let got = recv_n(&b, 3).await;
    assert_eq!(got[2], vec![3u8; 50]);
    assert_eq!(ca.stats().sent, 3);
}

#[test]
fn faults_validate_probabilities() {
    assert!(Faults::none().validate().is_ok());
    assert!(Faults::none().is_none());
    let bad = Faults {
        loss: 1.5,
        ..Faults::none()
    };
    assert!(bad.validate().unwrap_err().contains("loss"));
    assert_eq!(bad.sanitized().loss, 1.0);
    let nan = Faults {
        duplicate: f64::NAN,
        ..Faults::none()
    };
    assert!(nan.validate().is_err());
    assert_eq!(nan.sanitized().duplicate, 0.0);
}

#[test]
fn bind_outside_a_runtime_is_an_error() {
    let e = ChaosSocket::bind("127.0.0.1:0".parse().unwrap(), 1).unwrap_err();
    assert!(e.to_string().contains("tokio runtime"));
}

#[tokio::test]
async fn per_destination_delay_holds_back_only_far_peers() {
    let (a, ca) = bind(1);
    let (b, cb) = bind(2);
    let (c, cc) = bind(3);
    let all = [ca.clone(), cb.clone(), cc.clone()];
    // a | b, c: a is 80 ms from both, b and c are near each other.
    delay_between(&[&all[..1], &all[1..]], Duration::from_millis(80));
    assert_eq!(ca.delay_to(cb.local_addr()), Duration::from_millis(80));
    assert_eq!(cb.delay_to(cc.local_addr()), Duration::ZERO);
    let t0 = Instant::now();
    send(&b, cc.local_addr(), b"near").await;
    assert_eq!(recv_n(&c, 1).await, vec![b"near".to_vec()]);
    let near = t0.elapsed();
    send(&a, cb.local_addr(), b"far").await;
    assert_eq!(recv_n(&b, 1).await, vec![b"far".to_vec()]);
    let far = t0.elapsed();
    assert!(near < Duration::from_millis(60), "near took {near:?}");
    assert!(far >= Duration::from_millis(80), "far took {far:?}");
    assert_eq!(ca.stats().delayed, 1);
    assert_eq!(cb.stats().delayed, 0);
    ca.heal();
    assert_eq!(ca.delay_to(cb.local_addr()), Duration::ZERO);
    drop(a);
}
