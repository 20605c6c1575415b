//! Plain HTTP/1 connections are served by one single-threaded runtime per
//! core, as nginx serves them by one worker process per core. A connection
//! stays on the worker it was given, so its request, its upstream exchange
//! and its response never wake a thread other than the one serving it:
//! with tokio's work-stealing runtime, those cross-thread wake-ups cost
//! about a tenth of the throughput at low concurrency (docs/gateway.md,
//! "Benchmark"). Each worker keeps its own idle upstream connections (a
//! socket stays with the runtime whose reactor it is registered with).
//!
//! TLS and HTTP/2 connections stay on the caller's runtime, with the
//! listener, the policy reloader and the admin listener: a TLS stream
//! cannot be moved to another runtime after its handshake (ALPN decides
//! between HTTP/1.1 and HTTP/2 only then), and HTTP/2's streams and
//! hyper's pooled upstream client need a multi-threaded runtime to use
//! more than one core.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use crate::{h1, proxy};

/// What every connection needs, cloned into each worker.
#[derive(Clone)]
pub(crate) struct Serving {
    pub shared: Arc<proxy::Shared>,
    /// Set when the gateway shuts down.
    pub closing: watch::Receiver<bool>,
}

/// An accepted connection on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    /// Held while the connection is open (the gateway counts these at
    /// shutdown).
    open: Arc<()>,
}

/// The worker threads and the way to each.
pub(crate) struct Workers {
    /// Emptied when the gateway stops (the workers' loops then end).
    queues: Mutex<Vec<mpsc::UnboundedSender<Accepted>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `count` workers (at least one).
    pub(crate) fn start(count: usize, serving: &Serving) -> Result<Workers, String> {
        let mut queues = Vec::new();
        let mut threads = Vec::new();
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
                            let _ = stream.set_nodelay(true);
                            let shared = serving.shared.clone();
                            let closing = h1::Closing::new(serving.closing.clone());
                            tokio::spawn(async move {
                                let _open = a.open;
                                h1::serve(stream, a.peer, shared, closing).await;
                            });
                        }
                        h1::close_idle_upstreams();
                    });
                    // The queue closed: the gateway has stopped, and what is
                    // still open past the grace period is dropped with the
                    // runtime.
                })
                .map_err(|e| format!("starting gateway worker {i}: {e}"))?;
            queues.push(queue);
            threads.push(thread);
        }
        Ok(Workers {
            queues: Mutex::new(queues),
            threads: Mutex::new(threads),
            next: AtomicUsize::new(0),
        })
    }

    /// Hands a plain HTTP/1 connection to the next worker, in turn.
    pub(crate) fn dispatch(&self, stream: tokio::net::TcpStream, peer: SocketAddr, open: Arc<()>) {
        let Ok(stream) = stream.into_std() else {
            return;
        };
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if queues.is_empty() {
            return; // stopped
        }
        let next = self.next.fetch_add(1, Ordering::Relaxed) % queues.len();
        let _ = queues[next].send(Accepted { stream, peer, open });
    }

    /// Closes the queues and waits for the workers to end (their runtimes
    /// drop whatever connections are still open).
    pub(crate) fn stop(&self) {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}
