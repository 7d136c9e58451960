//! The sync stream reader: the bytes a peer sends on an anti-entropy stream after the stream
//! type byte, read frame by frame with `transport::read_frame_from` (the function the node
//! runs on QUIC streams) until the stream ends or a frame is refused.
#![no_main]

use std::sync::OnceLock;

use gossamer::transport;
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let mut stream = data;
        // Every frame consumes at least 5 bytes, so this ends; the bound is a second guard.
        for _ in 0..=data.len() {
            match transport::read_frame_from(&mut stream).await {
                Ok((_, n)) => assert!(n >= 5),
                Err(_) => break,
            }
        }
    });
});
