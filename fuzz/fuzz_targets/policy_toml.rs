//! The trust policy loader: any text is a policy or a configuration error
//! naming the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenward_trust::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Policy::from_toml(text, std::path::Path::new("fuzz.toml")) {
        assert!(!e.to_string().is_empty());
    }
});
