//! Connections are served by one single-threaded runtime per core, as
//! nginx serves them by one worker process per core. A connection stays on
//! the worker it was given, so its request, its upstream exchange and its
//! response never wake a thread other than the one serving it: with
//! tokio's work-stealing runtime, those cross-thread wake-ups cost about a
//! tenth of the throughput at low concurrency (docs/gateway.md,
//! "Benchmark"). The listener, the policy reloader and the admin listener
//! stay on the caller's runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::graceful::Watcher;
use tokio::sync::{mpsc, watch};

use crate::{h1, proxy};

/// What every connection needs, cloned into each worker.
#[derive(Clone)]
pub(crate) struct Serving {
    pub shared: Arc<proxy::Shared>,
    pub http2: http2::Builder<TokioExecutor>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub h2c: bool,
    /// Longest wait for a TLS handshake or an h2c preface.
    pub handshake_timeout: Duration,
    /// Set when the gateway shuts down.
    pub closing: watch::Receiver<bool>,
}

/// An accepted connection on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
    /// Held while the connection is open (the gateway counts these at
    /// shutdown).
    open: Arc<()>,
}

/// The worker threads and the way to each.
pub(crate) struct Workers {
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: usize,
}

impl Workers {
    /// Starts `count` workers (at least one).
    pub(crate) fn start(count: usize, serving: &Serving) -> Result<Workers, String> {
        let mut workers = Workers {
            queues: Vec::new(),
            threads: Vec::new(),
            next: 0,
        };
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("starting gateway worker {i}: {e}"))?;
            let (queue, mut accepted) = mpsc::unbounded_channel::<Accepted>();
            let serving = serving.clone();
            let thread = std::thread::Builder::new()
                .name(format!("tokenward-gateway-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some(a) = accepted.recv().await {
                            let Ok(stream) = tokio::net::TcpStream::from_std(a.stream) else {
                                continue;
                            };
                            let serving = serving.clone();
                            tokio::spawn(async move {
                                let _open = a.open;
                                serve(stream, a.peer, serving, a.watcher).await;
                            });
                        }
                    });
                    // The queue closed: the gateway has stopped, and what is
                    // still open past the grace period is dropped with the
                    // runtime.
                })
                .map_err(|e| format!("starting gateway worker {i}: {e}"))?;
            workers.queues.push(queue);
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Hands a connection to the next worker, in turn.
    pub(crate) fn dispatch(
        &mut self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        watcher: Watcher,
        open: Arc<()>,
    ) {
        let Ok(stream) = stream.into_std() else {
            return;
        };
        self.next = (self.next + 1) % self.queues.len();
        let _ = self.queues[self.next].send(Accepted {
            stream,
            peer,
            watcher,
            open,
        });
    }

    /// Closes the queues and waits for the workers to end (their runtimes
    /// drop whatever connections are still open).
    pub(crate) fn stop(self) {
        drop(self.queues);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One connection: TLS (with ALPN choosing HTTP/2 or HTTP/1.1), h2c with
/// prior knowledge, or plain HTTP/1.
async fn serve(stream: tokio::net::TcpStream, peer: SocketAddr, s: Serving, watcher: Watcher) {
    let _ = stream.set_nodelay(true);
    let closing = h1::Closing::new(s.closing);
    match s.tls {
        None if s.h2c && crate::opens_with_h2_preface(&stream, s.handshake_timeout).await => {
            crate::serve_h2(stream, peer, s.http2, s.shared, watcher).await;
        }
        None => h1::serve(stream, peer, s.shared, closing).await,
        Some(acceptor) => {
            let hs = tokio::time::timeout(s.handshake_timeout, acceptor.accept(stream)).await;
            if let Ok(Ok(tls_stream)) = hs {
                if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    crate::serve_h2(tls_stream, peer, s.http2, s.shared, watcher).await;
                } else {
                    h1::serve(tls_stream, peer, s.shared, closing).await;
                }
            }
        }
    }
}
