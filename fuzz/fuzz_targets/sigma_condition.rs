//! The Sigma condition parser: any text either parses into a condition
//! that evaluates, or is refused with a message (never a stack overflow:
//! nesting is bounded).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenward_sigma::cond;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let names: Vec<String> = ["selection", "filter", "sel_a", "sel_b", "keywords", "x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Ok(c) = cond::parse(text, &names) {
        // Every assignment of the identifiers evaluates without panicking.
        for bits in 0u32..64 {
            let _ = cond::eval(&c, &mut |i| bits & (1 << (i % 6)) != 0);
        }
    }
});
