//! JWK Set parsing, thumbprints, x5c certificates and key construction for
//! every algorithm must never panic, whatever the bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenward_jose::{Algorithm, Jwk, Jwks, VerifyingKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = Jwks::parse(data) {
        let keys: Vec<Jwk> = set.keys.into_iter().filter_map(Result::ok).collect();
        let _ = Jwks::set_problems(&keys);
        for jwk in &keys {
            let _ = jwk.thumbprint();
            let _ = jwk.material.bits();
            for alg in Algorithm::ALL {
                let _ = VerifyingKey::from_jwk(jwk, alg);
            }
        }
    }
    if let Ok(jwk) = Jwk::parse(data) {
        let _ = jwk.thumbprint();
    }
});
