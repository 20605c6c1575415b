//! HTTPS end to end: a rustls server on loopback with a certificate from a
//! test root. The fetcher accepts it only when told to trust that root, so
//! certificate verification is really on.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokenward_keys::{FetchConfig, FetchError, Fetcher, KeySource, LiveConfig, LiveKeySet, Url};

/// Serves `connections` HTTPS requests with `body`, then stops.
fn https_server(body: Vec<u8>, connections: usize) -> (String, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_der = ck.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut tcp) = stream else { continue };
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            // A failed handshake (untrusted certificate) ends here.
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            if head.is_empty() {
                continue;
            }
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = tls.write_all(&body);
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (format!("https://{addr}"), cert_der)
}

fn jwks() -> Vec<u8> {
    let key = tokenward_jose::SigningKey::generate(tokenward_jose::Algorithm::ES256).unwrap();
    json!({"keys": [key.public_jwk("tls-1")]})
        .to_string()
        .into_bytes()
}

#[test]
fn https_with_a_trusted_root_works() {
    let (base, root) = https_server(jwks(), 1);
    let fetcher = Fetcher::new(FetchConfig {
        roots_der: vec![root],
        ..FetchConfig::default()
    })
    .unwrap();
    let keys = LiveKeySet::new(
        KeySource::parse(&format!("{base}/keys")).unwrap(),
        fetcher,
        LiveConfig::default(),
    );
    assert!(keys.keys(1_700_000_000).unwrap().has_kid("tls-1"));
}

#[test]
fn https_with_an_untrusted_certificate_is_refused() {
    // The default webpki roots do not include the test root.
    let (base, _) = https_server(jwks(), 1);
    let fetcher = Fetcher::new(FetchConfig::default()).unwrap();
    let r = fetcher.get(&Url::parse(&format!("{base}/keys")).unwrap(), None);
    match r {
        Err(FetchError::Network(m)) => assert!(
            m.to_ascii_lowercase().contains("certificate")
                || m.to_ascii_lowercase().contains("tls"),
            "{m}"
        ),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}
