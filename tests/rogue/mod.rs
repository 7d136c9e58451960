//! A member holding a valid certificate that speaks the sync protocol by hand: shared by
//! the tests in which it lies (tests/hostile.rs, tests/authorship.rs).

use std::time::Duration;

use gossamer::core::proto::{SyncFrame, SyncKind};
use gossamer::core::state::{CausalContext, Entry};
use gossamer::core::NodeId;
use gossamer::transport::{self, Transport};

/// The rogue's side of one exchange with the node at `addr`: our `Open` carries `ctx`
/// and the fence `stable`, our last turn `entries`. Returns the context the node opened
/// its turn with.
pub async fn lying_exchange(
    rogue: &Transport,
    addr: &str,
    expect: &NodeId,
    (ctx, stable): (CausalContext, CausalContext),
    entries: Vec<Entry>,
) -> CausalContext {
    let (_, conn) = rogue.connect(addr, Some(expect)).await.expect("connect");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(&[gossamer::wire::STREAM_SYNC])
        .await
        .unwrap();
    let open = SyncFrame::Open {
        kind: SyncKind::Periodic,
        ctx,
        gc_horizon_ms: 0,
        stable,
        members_digest: 0,
        compact: false,
        same: 0,
        digest: None,
        again: false,
        reads_held: false,
    };
    for f in [open, SyncFrame::End] {
        transport::write_frame(&mut send, &f).await.unwrap();
    }
    let mut theirs = None;
    loop {
        let (f, _) = transport::read_frame(&mut recv).await.expect("their turn");
        match f {
            SyncFrame::Open { ctx, .. } => theirs = Some(ctx),
            SyncFrame::End => break,
            _ => {}
        }
    }
    for f in [SyncFrame::Entries(entries), SyncFrame::End] {
        transport::write_frame(&mut send, &f).await.unwrap();
    }
    let _ = send.finish();
    // Let the node read our last turn before the connection goes.
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    theirs.expect("the node opened its turn")
}
