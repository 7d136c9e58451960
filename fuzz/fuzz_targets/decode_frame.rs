//! One sync frame: the first four bytes are the length header (`wire::frame_len`), the rest
//! the body (`wire::decode_frame`). Never a panic; an accepted frame survives re-encoding.
#![no_main]

use gossamer::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = wire::frame_len([data[0], data[1], data[2], data[3]]);
    }
    let body = data.get(4..).unwrap_or(data);
    if let Ok(f) = wire::decode_frame(body) {
        let bytes = wire::encode_frame(&f);
        let len = wire::frame_len([bytes[0], bytes[1], bytes[2], bytes[3]])
            .expect("an encoded frame has a valid length");
        assert_eq!(len, bytes.len() - 4);
        let again = wire::decode_frame(&bytes[4..]).expect("a re-encoded frame decodes");
        assert_eq!(again, f);
    }
});
