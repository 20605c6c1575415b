//! The gateway's HTTP/1.1 head parsing and chunked-body decoding: the
//! bytes a client or an upstream sends, with the decoder's promises
//! (any split decodes alike; re-encoding round-trips) asserted inside.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tokenward_gateway::fuzz_http1(data);
});
