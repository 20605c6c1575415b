//! The probe's own callback listener: it serves the attacker's key set and
//! certificate for `jku`/`x5u`, and records every request, so a target that
//! fetches a header URL or runs a command from `kid` is caught even when its
//! answer looks like a refusal.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::forge::Document;
use crate::ProbeError;

#[derive(Default)]
struct State {
    documents: HashMap<String, (&'static str, Vec<u8>)>,
    hits: Vec<String>,
}

/// A running listener; stops when dropped.
pub struct Listener {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds `bind` and serves from a thread of its own.
    pub fn start(bind: SocketAddr) -> Result<Listener, ProbeError> {
        let socket = std::net::TcpListener::bind(bind)
            .map_err(|e| ProbeError::Usage(format!("callback listener on {bind}: {e}")))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| ProbeError::Internal(format!("callback listener: {e}")))?;
        let addr = socket
            .local_addr()
            .map_err(|e| ProbeError::Internal(format!("callback listener: {e}")))?;
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = Arc::clone(&state);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ProbeError::Internal(format!("callback listener: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("probe-callback".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(socket) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let state = Arc::clone(&shared);
                                tokio::spawn(async move {
                                    let service = service_fn(move |req| {
                                        let state = Arc::clone(&state);
                                        async move { Ok::<_, Infallible>(answer(&state, &req)) }
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })
            .map_err(|e| ProbeError::Internal(format!("callback listener: {e}")))?;
        Ok(Listener {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `document` from now on.
    pub fn serve(&self, document: &Document) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.documents.insert(
            document.path.clone(),
            (document.content_type, document.body.clone()),
        );
    }

    /// Whether anything requested `path` (the query string ignored).
    pub fn was_hit(&self, path: &str) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.hits.iter().any(|h| h == path)
    }
}

fn answer(state: &Mutex<State>, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    // Bounded: a target hammering the listener must not grow it forever.
    if state.hits.len() < 10_000 {
        state.hits.push(path.clone());
    }
    let (status, content_type, body) = match state.documents.get(&path) {
        Some((ct, body)) => (200, *ct, body.clone()),
        None => (404, "text/plain", b"not found".to_vec()),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
