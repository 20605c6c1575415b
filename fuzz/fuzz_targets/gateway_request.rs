//! The gateway's request checks: path normalisation, the token-in-query
//! refusal, the bearer header, the token-exchange form body and header
//! sanitising, with the properties they promise asserted inside.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Parts separated by NUL: path, Authorization, body, then name:value
    // header pairs.
    let mut parts = data.split(|&b| b == 0);
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let authorization = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let headers: Vec<(&[u8], &[u8])> = parts
        .map(|p| {
            let at = p.iter().position(|&b| b == b':').unwrap_or(p.len());
            (&p[..at], p.get(at + 1..).unwrap_or_default())
        })
        .collect();
    tokenward_gateway::fuzz_request_checks(&path, authorization, &headers, body);
});
