//! Compact JWS parsing, claim parsing and verification with a fixed key
//! must never panic, whatever the bytes.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tokenward_jose::{Algorithm, Claims, Jwk, Jws, Limits, VerifyingKey};

fn keys() -> &'static Vec<VerifyingKey> {
    static KEYS: OnceLock<Vec<VerifyingKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        // RFC 7520 §3.1 (P-521) and §3.3 (RSA) public keys, and an HMAC secret.
        let ec = Jwk::parse(br#"{"kty":"EC","crv":"P-521","x":"AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt","y":"AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1"}"#).unwrap();
        let rsa = Jwk::parse(br#"{"kty":"RSA","n":"n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw","e":"AQAB"}"#).unwrap();
        let hs = Jwk::parse(br#"{"kty":"oct","k":"hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"}"#).unwrap();
        vec![
            VerifyingKey::from_jwk(&ec, Algorithm::ES512).unwrap(),
            VerifyingKey::from_jwk(&rsa, Algorithm::RS256).unwrap(),
            VerifyingKey::from_jwk(&rsa, Algorithm::PS384).unwrap(),
            VerifyingKey::from_jwk(&hs, Algorithm::HS256).unwrap(),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = Claims::parse(data);
        return;
    };
    let limits = Limits::default();
    if let Ok(jws) = Jws::parse(text, &limits) {
        let _ = Claims::parse(&jws.payload);
        for key in keys() {
            if key.algorithm() == jws.header.algorithm() {
                let _ = key.verify(jws.signing_input.as_bytes(), &jws.signature);
            }
        }
    }
    let _ = Claims::parse(data);
});
