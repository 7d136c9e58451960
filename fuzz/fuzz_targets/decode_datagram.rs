//! Datagrams as they arrive from an authenticated peer: any bytes go to
//! `wire::decode_datagram`. It must never panic; whatever it accepts must survive a
//! re-encoding unchanged.
#![no_main]

use gossamer::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = wire::decode_datagram(data) {
        let again = wire::decode_datagram(&wire::encode_datagram(&d))
            .expect("a re-encoded datagram decodes");
        assert_eq!(again, d);
    }
});
