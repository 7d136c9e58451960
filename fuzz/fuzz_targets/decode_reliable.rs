//! The contents of a reliable (uni) stream: stream type byte, then a message, decoded by
//! `transport::decode_reliable_stream` (what the node does with every uni stream).
#![no_main]

use gossamer::{transport, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = transport::decode_reliable_stream(data) {
        let again = transport::decode_reliable_stream(&wire::encode_reliable(&d))
            .expect("a re-encoded reliable message decodes");
        assert_eq!(again, d);
    }
});
