//! The admin listener: `/healthz` and Prometheus `/metrics`, kept off the
//! public listener so neither is exposed where the API is.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::proxy::Shared;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| respond(shared.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn respond<B>(
    shared: Arc<Shared>,
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => {
            // Healthy means a policy is in force; the policy is validated
            // at start and a bad reload never replaces it, so this holds
            // for as long as the process serves. Stale key sources are
            // reported (their issuers' tokens are refused) but do not make
            // the gateway unhealthy: restarting it would not fix a source.
            let keys = shared.current_policy().0.key_count();
            let now = crate::unix_seconds(&shared.clock);
            let stale = shared
                .current_live()
                .key_sets()
                .iter()
                .filter(|s| s.is_stale(now))
                .count();
            (
                StatusCode::OK,
                "text/plain; charset=utf-8",
                format!("ok keys={keys} stale_sources={stale}\n"),
            )
        }
        (&Method::GET | &Method::HEAD, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(shared.cache.len()),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".to_owned(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(r)
}
