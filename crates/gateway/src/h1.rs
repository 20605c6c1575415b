//! HTTP/1.1 on both legs without a general-purpose HTTP stack: one task per
//! client connection, which owns its own upstream connection, parses heads
//! with `httparse` and copies bodies with their framing checked.
//!
//! Why not hyper here: proxying a request through hyper's server and its
//! pooled client cost the gateway about 8 µs of user-space CPU per request
//! (a dispatch channel and a task per upstream connection, pool checkout,
//! a connect future per request, header maps built twice), against
//! nginx's 2.6 µs; on a saturated machine that decided throughput
//! (docs/gateway.md, "Benchmark"). HTTP/2 is still served by hyper.
//!
//! Framing follows RFC 9112 §6 and refuses what request smuggling lives
//! on: `Transfer-Encoding` with `Content-Length`, any transfer coding but
//! a lone `chunked`, differing or malformed lengths, and chunked framing
//! that is not exact (bare LF, oversized sizes, long extensions or
//! trailers). Bodies are re-framed for the next hop rather than copied
//! with their framing, so what the upstream parses is what the gateway
//! parsed.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Buf, BytesMut};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::metrics::UpstreamError;
use crate::proxy::{self, Body, Outcome, Shared, Step, Upstream};

/// Most request headers parsed without a heap allocation.
const STACK_HEADERS: usize = 128;
/// Largest upstream response head, and most response headers (as hyper's
/// client allowed).
const RESPONSE_HEAD_MAX: usize = 400 * 1024;
const RESPONSE_HEADERS_MAX: usize = 100;
/// Body bytes gathered before a write.
const WRITE_CHUNK: usize = 64 * 1024;
/// Room made in a read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Longest chunk extension, and most trailer bytes, accepted in chunked
/// bodies; they are not forwarded.
const CHUNK_EXT_MAX: usize = 4096;
const TRAILERS_MAX: usize = 16 * 1024;

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLen {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// The framing of a request, from its headers: `Err` for anything a
/// server in front of another must refuse (RFC 9112 §6.1, §6.3).
pub(crate) fn request_body(headers: &HeaderMap, http10: bool) -> Result<BodyLen, ()> {
    let chunked = transfer_coding(headers)?;
    let length = content_length(headers)?;
    match (chunked, length) {
        (true, Some(_)) => Err(()),
        (true, None) if http10 => Err(()),
        (true, None) => Ok(BodyLen::Chunked),
        (false, Some(n)) => Ok(BodyLen::Length(n)),
        (false, None) => Ok(BodyLen::Empty),
    }
}

/// The framing of a response to `method`: `Err` when the upstream's
/// framing cannot be passed on faithfully.
pub(crate) fn response_body(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<BodyLen, ()> {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(BodyLen::Empty);
    }
    if transfer_coding(headers)? {
        // Transfer-Encoding overrides Content-Length (§6.3 item 3).
        return Ok(BodyLen::Chunked);
    }
    Ok(match content_length(headers)? {
        Some(n) => BodyLen::Length(n),
        None => BodyLen::UntilClose,
    })
}

/// Whether the body is chunked (`Transfer-Encoding: chunked`; `false`
/// without the header), `Err` for any other coding or list: the gateway
/// re-frames bodies and cannot re-apply codings it does not implement.
fn transfer_coding(headers: &HeaderMap) -> Result<bool, ()> {
    let mut values = headers.get_all(header::TRANSFER_ENCODING).iter();
    let Some(first) = values.next() else {
        return Ok(false);
    };
    if values.next().is_some()
        || !first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked")
    {
        return Err(());
    }
    Ok(true)
}

/// The `Content-Length`, when every value (repeated headers and lists
/// alike) is the same run of digits.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 18 || !part.iter().all(u8::is_ascii_digit) {
                return Err(());
            }
            let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(());
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// Whether the connection stays open after this message, by its version
/// and `Connection` header.
fn wants_keep_alive(headers: &HeaderMap, http10: bool) -> bool {
    let has = |token: &str| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    };
    if http10 {
        has("keep-alive")
    } else {
        !has("close")
    }
}

/// Why chunked framing was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkError(&'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In the hex size (`digits` read so far).
    Size,
    /// Whitespace after the size, before `;` or CR.
    SizeSpace,
    /// In a chunk extension (skipped).
    Extension,
    /// CR of the size line read; LF next.
    SizeLf,
    /// In the chunk's data.
    Data,
    /// CR after the data next.
    DataCr,
    /// LF after the data next.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// In a trailer line (skipped).
    Trailer,
    /// CR of a trailer line read; LF next.
    TrailerLf,
    /// CR of the final empty line read; LF next.
    EndLf,
    /// The last chunk and its trailers are complete.
    Done,
}

/// A strict, incremental decoder of chunked framing (RFC 9112 §7.1).
/// Extensions and trailers are read and dropped.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    size: u64,
    digits: u8,
    /// Bytes of the current extension, or of all trailers.
    skipped: usize,
}

impl ChunkedDecoder {
    pub(crate) fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: ChunkState::Size,
            size: 0,
            digits: 0,
            skipped: 0,
        }
    }

    /// Whether the last chunk and its trailers have been read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Reads framing from `input`, handing each run of data to `data`.
    /// Returns how many bytes were used: all of `input`, or fewer when
    /// the body ended inside it (the rest is the next message's).
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        data: &mut impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        use ChunkState as S;
        let mut i = 0;
        while i < input.len() {
            if self.state == S::Data {
                let take = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                data(&input[i..i + take]);
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = S::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (S::Size, _) if b.is_ascii_hexdigit() => {
                    if self.digits == 16 {
                        return Err(ChunkError("chunk size too large"));
                    }
                    self.digits += 1;
                    self.size = self.size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0));
                    S::Size
                }
                (S::Size, _) if self.digits == 0 => return Err(ChunkError("chunk size missing")),
                (S::Size | S::SizeSpace, b' ' | b'\t') => S::SizeSpace,
                (S::Size | S::SizeSpace, b';') => {
                    self.skipped = 0;
                    S::Extension
                }
                (S::Size | S::SizeSpace | S::Extension, b'\r') => S::SizeLf,
                (S::Extension, _) if b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80 => {
                    self.skipped += 1;
                    if self.skipped > CHUNK_EXT_MAX {
                        return Err(ChunkError("chunk extension too long"));
                    }
                    S::Extension
                }
                (S::SizeLf, b'\n') if self.size == 0 => {
                    self.skipped = 0;
                    S::TrailerStart
                }
                (S::SizeLf, b'\n') => S::Data,
                (S::DataCr, b'\r') => S::DataLf,
                (S::DataLf, b'\n') => {
                    self.size = 0;
                    self.digits = 0;
                    S::Size
                }
                (S::TrailerStart, b'\r') => S::EndLf,
                (S::TrailerStart | S::Trailer, _) if b != b'\r' && b != b'\n' => {
                    self.skipped += 1;
                    if self.skipped > TRAILERS_MAX {
                        return Err(ChunkError("trailers too long"));
                    }
                    S::Trailer
                }
                (S::Trailer, b'\r') => S::TrailerLf,
                (S::TrailerLf, b'\n') => S::TrailerStart,
                (S::EndLf, b'\n') => {
                    self.state = S::Done;
                    return Ok(i);
                }
                (S::Done, _) => return Ok(i - 1),
                _ => return Err(ChunkError("malformed chunked framing")),
            };
        }
        Ok(i)
    }
}

/// Appends `data` as one chunk.
fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if !data.is_empty() {
        use std::io::Write as _;
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Which side of a body copy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broke {
    /// The sender's framing was malformed.
    Source,
    /// The sender closed early or failed to read.
    SourceGone,
    /// The receiver: a write failed.
    Destination,
}

/// Copies one body from `src` (with `buf` holding what was already read
/// past the head) to `dst`, written after `out`'s pending bytes. `chunk`
/// re-frames it as chunks; otherwise it goes as it is (a length is kept;
/// an HTTP/1.0 reader gets the bytes until the connection closes).
async fn copy_body<R, W>(
    src: &mut R,
    buf: &mut BytesMut,
    dst: &mut W,
    out: &mut Vec<u8>,
    len: BodyLen,
    chunk: bool,
) -> Result<(), Broke>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut decoder = ChunkedDecoder::new();
    let mut remaining = match len {
        BodyLen::Length(n) => n,
        _ => 0,
    };
    loop {
        let mut finished = false;
        match len {
            BodyLen::Empty => finished = true,
            BodyLen::Length(_) => {
                let take = buf
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                put(out, &buf[..take], chunk);
                buf.advance(take);
                remaining -= take as u64;
                finished = remaining == 0;
            }
            BodyLen::Chunked => match decoder.feed(buf, &mut |d| put(out, d, chunk)) {
                Ok(used) => {
                    buf.advance(used);
                    finished = decoder.is_done();
                }
                Err(_) => return broken_source(dst, out, Broke::Source).await,
            },
            BodyLen::UntilClose => {
                put(out, buf, chunk);
                buf.clear();
            }
        }
        if finished {
            if chunk && len != BodyLen::Empty {
                out.extend_from_slice(LAST_CHUNK);
            }
            return flush(dst, out).await;
        }
        if out.len() >= WRITE_CHUNK || (!out.is_empty() && buf.is_empty()) {
            flush(dst, out).await?;
        }
        buf.reserve(READ_CHUNK);
        match src.read_buf(buf).await {
            Ok(0) if len == BodyLen::UntilClose => {
                if chunk {
                    out.extend_from_slice(LAST_CHUNK);
                }
                return flush(dst, out).await;
            }
            Ok(0) | Err(_) => return broken_source(dst, out, Broke::SourceGone).await,
            Ok(_) => {}
        }
    }
}

/// Ends a copy whose sender broke off: what was relayed so far goes out
/// (the receiver sees the body end early, as it did), and the connection
/// is not used again.
async fn broken_source<W: AsyncWrite + Unpin>(
    dst: &mut W,
    out: &mut Vec<u8>,
    why: Broke,
) -> Result<(), Broke> {
    let _ = flush(dst, out).await;
    Err(why)
}

fn put(out: &mut Vec<u8>, data: &[u8], chunk: bool) {
    if chunk {
        encode_chunk(out, data);
    } else {
        out.extend_from_slice(data);
    }
}

async fn flush<W: AsyncWrite + Unpin>(dst: &mut W, out: &mut Vec<u8>) -> Result<(), Broke> {
    if !out.is_empty() {
        send(dst, out).await.map_err(|_| Broke::Destination)?;
        out.clear();
    }
    Ok(())
}

/// Writes all of `bytes` and flushes: TLS keeps written plaintext inside
/// rustls until flushed, so a write alone may never reach the peer (a
/// no-op for plain TCP).
async fn send<W: AsyncWrite + Unpin>(dst: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    dst.write_all(bytes).await?;
    dst.flush().await
}

/// The end of a connection's life: set when the gateway shuts down, so
/// idle connections close and busy ones close after their request.
#[derive(Clone)]
pub(crate) struct Closing(watch::Receiver<bool>);

impl Closing {
    pub(crate) fn new(rx: watch::Receiver<bool>) -> Closing {
        Closing(rx)
    }

    fn now(&self) -> bool {
        *self.0.borrow()
    }

    async fn wait(&mut self) {
        let _ = self.0.wait_for(|closing| *closing).await;
    }
}

/// A request head, parsed and checked.
struct RequestHead {
    parts: Parts,
    body: BodyLen,
    keep_alive: bool,
    expects_continue: bool,
}

/// Why no request head was read.
enum NoHead {
    /// The client closed, went quiet past the header timeout, or the
    /// gateway is closing: nothing to answer.
    Gone,
    /// Too large (431) or malformed (400): answered, logged, closed.
    Refused { too_large: bool },
}

/// Whether a request is HTTP/1.0 (the only other version parsed is 1.1).
fn is_http10(parts: &Parts) -> bool {
    parts.version == Version::HTTP_10
}

/// Whether `buf` may hold a complete head: an empty line (CRLF CRLF, or
/// httparse's lenient LF LF) ends in the bytes after `scanned`.
fn head_may_end(buf: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(3);
    let tail = &buf[from..];
    memchr::memchr_iter(b'\n', tail).any(|i| {
        let before = &tail[..i];
        before.ends_with(b"\n") || before.ends_with(b"\n\r")
    })
}

/// Parses a request head at the start of `buf`: `Ok(None)` while
/// incomplete; `Err(true)` for too many headers, `Err(false)` for a
/// malformed head.
fn parse_request_head(
    buf: &[u8],
    max_headers: usize,
) -> Result<Option<(usize, RequestHead)>, bool> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let headers: &mut [httparse::Header<'_>] = if max_headers <= STACK_HEADERS {
        &mut stack[..max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; max_headers];
        &mut heap
    };
    let mut req = httparse::Request::new(headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(true),
        Err(_) => return Err(false),
    };
    let malformed = Err(false);
    let http10 = req.version == Some(0);
    let Ok(method) = Method::from_bytes(req.method.unwrap_or("").as_bytes()) else {
        return malformed;
    };
    let Ok(uri) = Uri::try_from(req.path.unwrap_or("")) else {
        return malformed;
    };
    let mut map = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return malformed;
        };
        map.append(name, value);
    }
    // Two Hosts leave the target to whichever one a reader takes (RFC 9112
    // §3.2 says 400).
    if map.get_all(header::HOST).iter().nth(1).is_some() {
        return malformed;
    }
    let Ok(body) = request_body(&map, http10) else {
        return malformed;
    };
    let keep_alive = wants_keep_alive(&map, http10);
    let expects_continue = !http10
        && map
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = if http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    parts.headers = map;
    Ok(Some((
        len,
        RequestHead {
            parts,
            body,
            keep_alive,
            expects_continue,
        },
    )))
}

/// Idle upstream connections left by client connections that ended, for
/// the next ones: a client that sends one request per connection (nginx's
/// default `proxy_http_version 1.0`, `Connection: close`) must not cost a
/// new upstream connection (and handshake, and TIME_WAIT) per request.
/// One per worker thread ([`crate::workers`]): a socket stays with the
/// runtime whose reactor it is registered with.
struct IdlePool {
    conns: std::cell::RefCell<Vec<(std::time::Instant, UpstreamConn)>>,
}

/// Idle connections kept at most, and for how long.
const POOL_MAX: usize = 1024;
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

impl IdlePool {
    fn new() -> IdlePool {
        IdlePool {
            conns: std::cell::RefCell::new(Vec::new()),
        }
    }

    fn put(&self, mut conn: UpstreamConn) {
        // A large response head grew the buffer; an idle connection keeps
        // only a small one.
        if conn.buf.capacity() > 16 * 1024 {
            conn.buf = BytesMut::with_capacity(8192);
        }
        let mut conns = self.conns.borrow_mut();
        conns.retain(|(since, _)| since.elapsed() < POOL_IDLE);
        if conns.len() < POOL_MAX {
            conns.push((std::time::Instant::now(), conn));
        }
    }

    /// The most recently idle connection still open, if any.
    fn take(&self) -> Option<UpstreamConn> {
        let mut conns = self.conns.borrow_mut();
        while let Some((since, mut conn)) = conns.pop() {
            if since.elapsed() < POOL_IDLE && !conn.closed() {
                return Some(conn);
            }
        }
        None
    }
}

thread_local! {
    /// This thread's idle upstream connections.
    static IDLE: IdlePool = IdlePool::new();
}

/// Closes this thread's idle upstream connections (a worker ending, while
/// its runtime still runs; connections its last tasks return afterwards
/// close with the thread).
pub(crate) fn close_idle_upstreams() {
    let _ = IDLE.try_with(|pool| pool.conns.borrow_mut().clear());
}

/// A client connection's upstream connection, returned to its thread's
/// pool when the client connection ends (it is only ever held between
/// exchanges, complete and clean).
struct Held {
    conn: Option<UpstreamConn>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // At thread exit the pool is gone: the connection just closes.
            let _ = IDLE.try_with(|pool| pool.put(conn));
        }
    }
}

/// The connection to the upstream that one client connection uses.
struct UpstreamConn {
    io: UpstreamIo,
    buf: BytesMut,
    /// Whether a request has already been answered on it (an idle
    /// connection the upstream may have closed meanwhile).
    reused: bool,
}

impl UpstreamConn {
    /// Whether the upstream has closed this idle connection (or sent on it
    /// unasked), as far as the socket already shows: no system call unless
    /// the socket has become readable since the last response, which a
    /// kept-alive connection only does when it is closing. Over TLS,
    /// plaintext rustls already decrypted past the last response counts
    /// as sent unasked.
    fn closed(&mut self) -> bool {
        let tcp = match &mut self.io {
            UpstreamIo::Plain(s) => &*s,
            UpstreamIo::Tls(s) => {
                let (tcp, tls) = s.get_mut();
                match tls.process_new_packets() {
                    Ok(state) if state.plaintext_bytes_to_read() == 0 => {}
                    _ => return true,
                }
                &*tcp
            }
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match tcp.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => !matches!(
                tcp.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            ),
        }
    }
}

/// A plain or TLS stream to the upstream.
enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Opens a connection to the upstream (TLS for `https://`, the host name
/// checked), within the connect timeout.
async fn connect(shared: &Shared, upstream: &Upstream) -> Result<UpstreamIo, UpstreamError> {
    let https = upstream.scheme == hyper::http::uri::Scheme::HTTPS;
    let host = upstream.authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = upstream
        .authority
        .port_u16()
        .unwrap_or(if https { 443 } else { 80 });
    let open = async {
        let tcp = TcpStream::connect((host, port)).await.ok()?;
        let _ = tcp.set_nodelay(true);
        match &shared.upstream_tls {
            Some(tls) if https => {
                let name =
                    tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned()).ok()?;
                let stream = tls.connect(name, tcp).await.ok()?;
                Some(UpstreamIo::Tls(Box::new(stream)))
            }
            _ => Some(UpstreamIo::Plain(tcp)),
        }
    };
    match tokio::time::timeout(shared.connect_timeout, open).await {
        Ok(Some(io)) => Ok(io),
        _ => Err(UpstreamError::Unavailable),
    }
}

/// Serves one client connection (plain or TLS, HTTP/1.x) until the client
/// closes it, a request ends it, or the gateway closes.
pub(crate) async fn serve<IO>(
    mut io: IO,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut closing: Closing,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    let mut upstream = Held { conn: None };
    let header_timeout = tokio::time::sleep(shared.header_read_timeout);
    tokio::pin!(header_timeout);
    loop {
        header_timeout
            .as_mut()
            .reset(tokio::time::Instant::now() + shared.header_read_timeout);
        // Bytes already known not to hold the end of the head: a head sent
        // a byte at a time is parsed once, not once per byte.
        let mut scanned = 0;
        let head = loop {
            // Empty lines before a request line are ignored (RFC 9112
            // §2.2); dropped here, they cannot make every read re-parse a
            // growing buffer.
            let empty = buf
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if empty > 0 {
                buf.advance(empty);
                scanned = 0;
            }
            let parsed = if head_may_end(&buf, scanned) {
                parse_request_head(&buf, shared.max_headers)
            } else {
                Ok(None)
            };
            scanned = buf.len();
            match parsed {
                Ok(Some((len, head))) if len <= shared.max_header_bytes => {
                    buf.advance(len);
                    break Ok(head);
                }
                Ok(Some(_)) | Err(true) => break Err(NoHead::Refused { too_large: true }),
                Err(false) => break Err(NoHead::Refused { too_large: false }),
                Ok(None) if buf.len() > shared.max_header_bytes => {
                    break Err(NoHead::Refused { too_large: true })
                }
                Ok(None) => {}
            }
            let idle = buf.is_empty();
            buf.reserve(8192);
            tokio::select! {
                biased;
                read = io.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => break Err(NoHead::Gone),
                    Ok(_) => {}
                },
                () = &mut header_timeout => break Err(NoHead::Gone),
                () = closing.wait(), if idle => break Err(NoHead::Gone),
            }
        };
        let head = match head {
            Ok(head) => head,
            Err(NoHead::Gone) => return,
            Err(NoHead::Refused { too_large }) => {
                let status = if too_large {
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                out.clear();
                write_own_head(
                    &mut out,
                    status,
                    &HeaderMap::new(),
                    After::Close,
                    shared.clock.now(),
                );
                let _ = send(&mut io, &out).await;
                proxy::log_unparsed(&shared, peer, too_large).await;
                close_gently(&mut io).await;
                return;
            }
        };
        let keep = serve_request(
            &mut io,
            &mut buf,
            &mut out,
            &mut upstream.conn,
            peer,
            &shared,
            head,
            header_timeout.as_mut(),
            closing.now(),
        )
        .await;
        if !keep || closing.now() {
            close_gently(&mut io).await;
            return;
        }
    }
}

/// Longest a closing connection's unread input is read and dropped, and
/// how much of it at most.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// Closes a client connection as nginx's lingering close does: the write
/// side first, then whatever the client is still sending (the rest of a
/// body the answer made moot) is read and dropped for a bounded time, so
/// closing with unread input does not reset the connection and destroy
/// the answer before the client has read it.
async fn close_gently<IO: AsyncRead + AsyncWrite + Unpin>(io: &mut IO) {
    let _ = io.shutdown().await;
    let mut scratch = [0u8; 8192];
    let mut left = LINGER_BYTES;
    let drain = async {
        while left > 0 {
            match io.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// One request, from its parsed head to the end of its response. Returns
/// whether the client connection can carry another. `timer` is the
/// connection's one timer, free once the head is read.
#[allow(clippy::too_many_arguments)]
async fn serve_request<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    upstream: &mut Option<UpstreamConn>,
    peer: SocketAddr,
    shared: &Shared,
    head: RequestHead,
    timer: Pin<&mut tokio::time::Sleep>,
    draining: bool,
) -> bool
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let RequestHead {
        mut parts,
        body,
        keep_alive,
        mut expects_continue,
    } = head;
    let http10 = is_http10(&parts);
    // A gateway shutting down says so on its last response.
    let keep_alive = keep_alive && !draining;
    let (handling, mut outcome, step) = proxy::begin(shared, peer, &mut parts);
    let mut form = None;
    let step = match step {
        Step::ReadForm(refused) => {
            let mut read = None;
            if !expects_continue || send(io, CONTINUE).await.is_ok() {
                read = read_whole(io, buf, body, proxy::EXCHANGE_BODY_MAX, shared).await;
            }
            expects_continue = false;
            let step = proxy::exchange_form(shared, &mut outcome, &refused, read.as_deref());
            form = Some(read);
            step
        }
        step => step,
    };
    // An unread body would be taken for the next request.
    let body_read = body == BodyLen::Empty || matches!(form, Some(Some(_)));
    let answer = match (step, &shared.upstream) {
        (Step::Answer(r), _) => r,
        (Step::Pass, None) => proxy::authz_allow(&parts.headers),
        (Step::Pass, Some(target)) => {
            let request = Forwarding {
                parts,
                body: match form {
                    Some(Some(bytes)) => Sent::Buffered(bytes),
                    _ => Sent::Streamed(body),
                },
                expects_continue,
                keep_alive,
            };
            let client = Client { io, buf, out };
            return forward(
                client, upstream, shared, target, request, handling, outcome, timer,
            )
            .await;
        }
        (Step::ReadForm(_), _) => unreachable!("the form was read above"),
    };
    let keep = keep_alive && body_read;
    own_answer(io, out, shared, handling, outcome, answer, http10, keep).await
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Reads a whole body of at most `max` bytes within the upstream timeout.
async fn read_whole<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    len: BodyLen,
    max: usize,
    shared: &Shared,
) -> Option<Vec<u8>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    if matches!(len, BodyLen::Length(n) if n > max as u64) {
        return None;
    }
    let mut sink = LimitedSink {
        bytes: Vec::new(),
        max,
    };
    let mut out = Vec::new();
    let copy = copy_body(io, buf, &mut sink, &mut out, len, false);
    match tokio::time::timeout(shared.upstream_timeout, copy).await {
        Ok(Ok(())) => Some(sink.bytes),
        _ => None,
    }
}

/// A writer into memory that fails past `max` bytes.
struct LimitedSink {
    bytes: Vec<u8>,
    max: usize,
}

impl AsyncWrite for LimitedSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.bytes.len() + buf.len() > this.max {
            return Poll::Ready(Err(std::io::ErrorKind::FileTooLarge.into()));
        }
        this.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Where a forwarded request's body comes from.
enum Sent {
    /// Read already (a token-exchange form).
    Buffered(Vec<u8>),
    /// Still on the client connection, framed so.
    Streamed(BodyLen),
}

/// An accepted request on its way to the upstream.
struct Forwarding {
    parts: Parts,
    body: Sent,
    expects_continue: bool,
    keep_alive: bool,
}

/// A response head from the upstream.
struct ResponseHead {
    status: StatusCode,
    headers: HeaderMap,
    body: BodyLen,
    keep_alive: bool,
}

/// The client connection's stream and buffers.
struct Client<'c, IO> {
    io: &'c mut IO,
    /// Bytes read past the current request's head.
    buf: &'c mut BytesMut,
    /// Bytes on their way out.
    out: &'c mut Vec<u8>,
}

/// Why an exchange with the upstream ended without a response head.
enum Failure {
    /// The upstream could not be reached or failed.
    Upstream(UpstreamError),
    /// The client's body broke its framing.
    ClientMalformed,
    /// The client went away before its body was sent.
    ClientGone,
}

/// Sends an accepted request upstream and its answer back; any failure is
/// a gateway error status, never a retry without the checks. `timer`
/// bounds the exchange up to the response head by the upstream timeout.
#[allow(clippy::too_many_arguments)]
async fn forward<IO>(
    client: Client<'_, IO>,
    upstream: &mut Option<UpstreamConn>,
    shared: &Shared,
    target: &Upstream,
    mut request: Forwarding,
    handling: proxy::Handling<'_>,
    mut outcome: Outcome,
    mut timer: Pin<&mut tokio::time::Sleep>,
) -> bool
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let Client { io, buf, out } = client;
    let method = request.parts.method.clone();
    let http10 = is_http10(&request.parts);
    let parts = &mut request.parts;
    proxy::upstream_headers(&mut parts.headers, &parts.uri, target, &handling.addr);
    // Framing is the gateway's own; `Expect` was answered here.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::EXPECT);
    let body_len = match &request.body {
        Sent::Buffered(bytes) => BodyLen::Length(bytes.len() as u64),
        Sent::Streamed(len) => *len,
    };
    let mut up_head = Vec::with_capacity(512);
    up_head.extend_from_slice(parts.method.as_str().as_bytes());
    up_head.push(b' ');
    up_head.extend_from_slice(target.base.as_bytes());
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    up_head.extend_from_slice(pq.as_bytes());
    up_head.extend_from_slice(b" HTTP/1.1\r\n");
    write_headers(&mut up_head, &parts.headers);
    match body_len {
        BodyLen::Length(n) => {
            write_length(&mut up_head, n);
        }
        BodyLen::Chunked => up_head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyLen::Empty | BodyLen::UntilClose => {}
    }
    up_head.extend_from_slice(b"\r\n");
    // A request the upstream cannot have acted on may be sent again on a
    // fresh connection when an idle one turns out closed (RFC 9110 §9.2.2:
    // idempotent, and its body still at hand).
    let replayable = method.is_idempotent()
        && match &request.body {
            Sent::Buffered(_) => true,
            Sent::Streamed(len) => *len == BodyLen::Empty,
        };
    let exchange = async {
        let mut tries = 0;
        loop {
            tries += 1;
            // A retry goes on a new connection, never on another idle one.
            let idle = upstream.take().filter(|_| tries == 1);
            let idle = idle.and_then(|mut c| (!c.closed()).then_some(c));
            let pooled = || IDLE.try_with(IdlePool::take).ok().flatten();
            let pooled = || pooled().filter(|_| tries == 1);
            let mut conn = match idle.or_else(pooled) {
                Some(c) => c,
                None => UpstreamConn {
                    io: connect(shared, target).await.map_err(Failure::Upstream)?,
                    buf: BytesMut::with_capacity(8192),
                    reused: false,
                },
            };
            let fresh = !conn.reused;
            let (sent, answer) =
                round_trip(io, buf, out, &mut conn, &up_head, &mut request, &method).await;
            match sent {
                Some(Err(Broke::Source)) => return Err(Failure::ClientMalformed),
                Some(Err(Broke::SourceGone)) => return Err(Failure::ClientGone),
                _ => {}
            }
            match answer {
                Ok(head) => return Ok((conn, head, sent == Some(Ok(())))),
                Err(nothing) if nothing && !fresh && replayable && tries == 1 => continue,
                Err(_) => return Err(Failure::Upstream(UpstreamError::Failed)),
            }
        }
    };
    timer
        .as_mut()
        .reset(tokio::time::Instant::now() + shared.upstream_timeout);
    let result = tokio::select! {
        biased;
        r = exchange => Ok(r),
        () = timer => Err(()),
    };
    let result = match result {
        Ok(exchanged) => exchanged,
        Err(()) => Err(Failure::Upstream(UpstreamError::Timeout)),
    };
    let (mut conn, head, request_sent) = match result {
        Ok(exchanged) => exchanged,
        Err(Failure::ClientGone) => {
            // Nobody to answer; the log says so as nginx does.
            let mut status = Outcome::client_gone();
            proxy::conclude(shared, handling, outcome, &mut status).await;
            return false;
        }
        Err(failure) => {
            let (answer, keep) = match failure {
                Failure::Upstream(kind) => (
                    outcome.upstream_failed(shared, kind),
                    // The client's request was read whole only without a body.
                    request.keep_alive && body_len == BodyLen::Empty,
                ),
                _ => (outcome.malformed_body(), false),
            };
            return own_answer(io, out, shared, handling, outcome, answer, http10, keep).await;
        }
    };
    outcome.answered(head.status.as_u16());
    let ResponseHead {
        mut status,
        mut headers,
        body,
        keep_alive: upstream_keep,
    } = head;
    proxy::strip_hop_by_hop(&mut headers);
    let to_client_chunked = matches!(body, BodyLen::Chunked | BodyLen::UntilClose) && !http10;
    // An HTTP/1.0 client learns where an unframed body ends by the close.
    let until_close = matches!(body, BodyLen::Chunked | BodyLen::UntilClose) && http10;
    let keep = request.keep_alive && request_sent && !until_close;
    if body != BodyLen::Empty {
        headers.remove(header::CONTENT_LENGTH);
    }
    proxy::conclude(shared, handling, outcome, &mut status).await;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    write_status(out, status);
    write_headers(out, &headers);
    if !headers.contains_key(header::DATE) {
        write_date(out, shared.clock.now());
    }
    match body {
        BodyLen::Length(n) => write_length(out, n),
        _ if to_client_chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    After::new(keep, http10).write(out);
    out.extend_from_slice(b"\r\n");
    let copied = copy_body(
        &mut conn.io,
        &mut conn.buf,
        io,
        out,
        body,
        to_client_chunked,
    )
    .await;
    if copied.is_ok() && upstream_keep && conn.buf.is_empty() && request_sent {
        conn.reused = true;
        *upstream = Some(conn);
    }
    copied.is_ok() && keep
}

/// Sends the request upstream and reads the response head. Returns how
/// sending ended (`None` when the answer came first) and the answer;
/// `Err(true)` when the upstream sent nothing at all (an idle connection
/// it had closed). A failed write still waits for an answer: the upstream
/// may have answered early (413, 401) and closed.
///
/// A streamed body is sent while the answer is awaited, so an upstream
/// that refuses before reading the whole body is heard at once rather
/// than after the upstream timeout.
async fn round_trip<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    pending: &mut Vec<u8>,
    conn: &mut UpstreamConn,
    up_head: &[u8],
    request: &mut Forwarding,
    method: &Method,
) -> (Option<Result<(), Broke>>, Result<ResponseHead, bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    pending.clear();
    pending.extend_from_slice(up_head);
    let len = match &request.body {
        Sent::Buffered(bytes) => {
            pending.extend_from_slice(bytes);
            BodyLen::Empty
        }
        Sent::Streamed(len) => *len,
    };
    if len == BodyLen::Empty {
        let sent = flush(&mut conn.io, pending).await;
        return (
            Some(sent),
            read_response_head(&mut conn.io, &mut conn.buf, method).await,
        );
    }
    if request.expects_continue {
        request.expects_continue = false;
        if send(io, CONTINUE).await.is_err() {
            return (Some(Err(Broke::SourceGone)), Err(false));
        }
    }
    let chunk = len == BodyLen::Chunked;
    let UpstreamConn {
        io: up,
        buf: up_buf,
        ..
    } = conn;
    let body = StreamedBody {
        io,
        buf,
        pending,
        len,
        chunk,
    };
    match up {
        UpstreamIo::Plain(tcp) => {
            let (mut reader, mut writer) = tcp.split();
            send_while_awaiting(body, &mut reader, &mut writer, up_buf, method).await
        }
        UpstreamIo::Tls(tls) => {
            // rustls reads and writes through one state: tokio's split
            // takes turns on it.
            let (mut reader, mut writer) = tokio::io::split(&mut **tls);
            send_while_awaiting(body, &mut reader, &mut writer, up_buf, method).await
        }
    }
}

/// A request body still on the client connection, on its way upstream.
struct StreamedBody<'a, IO> {
    io: &'a mut IO,
    buf: &'a mut BytesMut,
    /// The request head, not yet written.
    pending: &'a mut Vec<u8>,
    len: BodyLen,
    chunk: bool,
}

/// Copies the body to `writer` while the response head is awaited on
/// `reader` (the two halves of one upstream connection). A refusal that
/// arrives first ends the copy; any other early answer waits for it, as
/// nginx relays responses once it has sent the body.
async fn send_while_awaiting<IO, R, W>(
    body: StreamedBody<'_, IO>,
    reader: &mut R,
    writer: &mut W,
    up_buf: &mut BytesMut,
    method: &Method,
) -> (Option<Result<(), Broke>>, Result<ResponseHead, bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let StreamedBody {
        io,
        buf,
        pending,
        len,
        chunk,
    } = body;
    let copy = copy_body(io, buf, writer, pending, len, chunk);
    let answer = read_response_head(reader, up_buf, method);
    tokio::pin!(copy, answer);
    let mut sent = None;
    loop {
        tokio::select! {
            biased;
            done = &mut copy, if sent.is_none() => {
                if matches!(done, Err(Broke::Source | Broke::SourceGone)) {
                    return (Some(done), Err(false));
                }
                sent = Some(done);
            }
            head = &mut answer => {
                if sent.is_none() && head.as_ref().is_ok_and(|h| h.status.as_u16() < 400) {
                    // Not a refusal: the upstream wants the rest of the
                    // body, and its response is relayed once that is sent
                    // (as nginx, which buffers request bodies by default).
                    let done = copy.as_mut().await;
                    if matches!(done, Err(Broke::Source | Broke::SourceGone)) {
                        return (Some(done), Err(false));
                    }
                    return (Some(done), head);
                }
                return (sent, head);
            }
        }
    }
}

/// Reads the upstream's final response head (skipping 1xx) from `reader`,
/// with `buf` holding what was read before. `Err(true)` when the upstream
/// sent nothing at all.
async fn read_response_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    method: &Method,
) -> Result<ResponseHead, bool> {
    let mut got_any = false;
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(|_| false)?;
                    let http10 = resp.version == Some(0);
                    let mut map = HeaderMap::with_capacity(resp.headers.len());
                    for h in resp.headers.iter() {
                        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| false)?;
                        let value = HeaderValue::from_bytes(h.value).map_err(|_| false)?;
                        map.append(name, value);
                    }
                    Some((len, status, http10, map))
                }
                Ok(httparse::Status::Partial) => None,
                Err(_) => return Err(false),
            }
        };
        if let Some((len, status, http10, headers)) = parsed {
            buf.advance(len);
            if status == StatusCode::SWITCHING_PROTOCOLS {
                // The gateway never asks for an upgrade.
                return Err(false);
            }
            if status.is_informational() {
                continue;
            }
            let body = response_body(method, status, &headers).map_err(|_| false)?;
            // A message with both lengths "ought to be handled as an error"
            // (RFC 9112 §6.3): relayed by its chunks, but the connection
            // is not trusted with another.
            let both_lengths = headers.contains_key(header::TRANSFER_ENCODING)
                && headers.contains_key(header::CONTENT_LENGTH);
            let keep_alive =
                wants_keep_alive(&headers, http10) && body != BodyLen::UntilClose && !both_lengths;
            return Ok(ResponseHead {
                status,
                headers,
                body,
                keep_alive,
            });
        }
        if buf.len() > RESPONSE_HEAD_MAX {
            return Err(false);
        }
        buf.reserve(8192);
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(!got_any),
            Ok(_) => got_any = true,
        }
    }
}

/// Answers with a response of the gateway's own (a refusal, a gateway
/// error), logged; returns whether the connection stays open.
#[allow(clippy::too_many_arguments)]
async fn own_answer<IO>(
    io: &mut IO,
    out: &mut Vec<u8>,
    shared: &Shared,
    handling: proxy::Handling<'_>,
    outcome: Outcome,
    answer: hyper::Response<Body>,
    http10: bool,
    keep: bool,
) -> bool
where
    IO: AsyncWrite + Unpin,
{
    let (mut head, _) = answer.into_parts();
    proxy::conclude(shared, handling, outcome, &mut head.status).await;
    out.clear();
    write_own_head(
        out,
        head.status,
        &head.headers,
        After::new(keep, http10),
        shared.clock.now(),
    );
    send(io, out).await.is_ok() && keep
}

/// The head of a response of the gateway's own, with an empty body.
fn write_own_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    after: After,
    now: SystemTime,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_status(out, status);
    write_headers(out, headers);
    write_date(out, now);
    after.write(out);
    out.extend_from_slice(b"content-length: 0\r\n\r\n");
}

/// What the client connection does after a response, as its `Connection`
/// header says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// Stays open; HTTP/1.1's default, so no header.
    KeepAlive11,
    /// Stays open for an HTTP/1.0 client that asked for it.
    KeepAlive10,
    /// Closes.
    Close,
}

impl After {
    fn new(keep: bool, http10: bool) -> After {
        match (keep, http10) {
            (false, _) => After::Close,
            (true, false) => After::KeepAlive11,
            (true, true) => After::KeepAlive10,
        }
    }

    fn write(self, out: &mut Vec<u8>) {
        match self {
            After::KeepAlive11 => {}
            After::KeepAlive10 => out.extend_from_slice(b"connection: keep-alive\r\n"),
            After::Close => out.extend_from_slice(b"connection: close\r\n"),
        }
    }
}

fn write_length(out: &mut Vec<u8>, n: u64) {
    use std::io::Write as _;
    let _ = write!(out, "content-length: {n}\r\n");
}

fn write_status(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// An IMF-fixdate (RFC 9110 §5.6.7), as hyper's server added to every
/// response without one.
fn write_date(out: &mut Vec<u8>, now: SystemTime) {
    const IMF_FIXDATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    if let Ok(date) = time::OffsetDateTime::from(now).format(IMF_FIXDATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Head parsing and chunked decoding on fuzzed bytes, with their promises
/// asserted (built only by `cargo fuzz`, see `fuzz/`): no panic; a head
/// either parses to framing the rules allow or is refused; chunked framing
/// decodes the same whole, a byte at a time and in pieces of seven, and
/// what it decodes survives re-encoding.
#[cfg(any(fuzzing, test))]
pub fn fuzz_http1(data: &[u8]) {
    if let Ok(Some((len, head))) = parse_request_head(data, 100) {
        assert!(len <= data.len());
        assert_eq!(
            request_body(&head.parts.headers, is_http10(&head.parts)),
            Ok(head.body)
        );
    }
    let decode = |step: usize| {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        for piece in data.chunks(step) {
            used += d.feed(piece, &mut |b| out.extend_from_slice(b)).ok()?;
            if d.is_done() {
                break;
            }
        }
        Some((out, used, d.is_done()))
    };
    let whole = decode(data.len().max(1));
    assert_eq!(whole, decode(1));
    assert_eq!(whole, decode(7));
    if let Some((out, _, true)) = whole {
        let mut again = Vec::new();
        encode_chunk(&mut again, &out);
        again.extend_from_slice(LAST_CHUNK);
        let mut d = ChunkedDecoder::new();
        let mut back = Vec::new();
        assert_eq!(
            d.feed(&again, &mut |b| back.extend_from_slice(b)),
            Ok(again.len())
        );
        assert!(d.is_done());
        assert_eq!(back, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in list {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn request_framing_refuses_what_smuggling_needs() {
        let ok = |list: &[(&str, &str)], http10| request_body(&headers(list), http10);
        assert_eq!(ok(&[], false), Ok(BodyLen::Empty));
        assert_eq!(
            ok(&[("content-length", "12")], false),
            Ok(BodyLen::Length(12))
        );
        assert_eq!(
            ok(&[("content-length", "7"), ("content-length", "7")], false),
            Ok(BodyLen::Length(7))
        );
        assert_eq!(
            ok(&[("content-length", "7, 7")], false),
            Ok(BodyLen::Length(7))
        );
        assert_eq!(
            ok(&[("transfer-encoding", "chunked")], false),
            Ok(BodyLen::Chunked)
        );
        assert_eq!(
            ok(&[("transfer-encoding", " Chunked ")], false),
            Ok(BodyLen::Chunked)
        );
        for refused in [
            &[("content-length", "5"), ("transfer-encoding", "chunked")][..],
            &[("content-length", "5"), ("content-length", "6")],
            &[("content-length", "5, 6")],
            &[("content-length", "+5")],
            &[("content-length", "-1")],
            &[("content-length", "0x10")],
            &[("content-length", "")],
            &[("content-length", "99999999999999999999")],
            &[("transfer-encoding", "gzip, chunked")],
            &[("transfer-encoding", "chunked, identity")],
            &[("transfer-encoding", "identity")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "xchunked")],
        ] {
            assert_eq!(ok(refused, false), Err(()), "{refused:?}");
        }
        // HTTP/1.0 has no chunked framing.
        assert_eq!(ok(&[("transfer-encoding", "chunked")], true), Err(()));
    }

    #[test]
    fn response_framing_follows_the_method_and_status() {
        let h = headers(&[("content-length", "10")]);
        let get = &Method::GET;
        assert_eq!(
            response_body(get, StatusCode::OK, &h),
            Ok(BodyLen::Length(10))
        );
        assert_eq!(
            response_body(&Method::HEAD, StatusCode::OK, &h),
            Ok(BodyLen::Empty)
        );
        assert_eq!(
            response_body(get, StatusCode::NOT_MODIFIED, &h),
            Ok(BodyLen::Empty)
        );
        assert_eq!(
            response_body(get, StatusCode::NO_CONTENT, &HeaderMap::new()),
            Ok(BodyLen::Empty)
        );
        assert_eq!(
            response_body(get, StatusCode::OK, &HeaderMap::new()),
            Ok(BodyLen::UntilClose)
        );
        let both = headers(&[("content-length", "10"), ("transfer-encoding", "chunked")]);
        assert_eq!(
            response_body(get, StatusCode::OK, &both),
            Ok(BodyLen::Chunked)
        );
        let gzip = headers(&[("transfer-encoding", "gzip, chunked")]);
        assert_eq!(response_body(get, StatusCode::OK, &gzip), Err(()));
    }

    /// Decodes `input` fed in pieces of `step` bytes: the data and how many
    /// bytes the body took.
    fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut data = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step) {
            let n = d.feed(piece, &mut |b| data.extend_from_slice(b))?;
            used += n;
            if d.is_done() {
                return Ok((data, used));
            }
        }
        Err(ChunkError("incomplete"))
    }

    #[test]
    fn chunked_bodies_decode_alike_in_any_pieces() {
        let body = b"5;name=value\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\nGET /next";
        let end = body.len() - b"GET /next".len();
        for step in 1..body.len() {
            let (data, used) = decode(body, step).unwrap();
            assert_eq!(data, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
            assert_eq!(used, end, "the next request's bytes are left, step {step}");
        }
        assert_eq!(decode(b"0\r\n\r\n", 5).unwrap(), (Vec::new(), 5));
    }

    #[test]
    fn chunked_framing_that_is_not_exact_is_refused() {
        let long_ext = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(CHUNK_EXT_MAX + 1));
        let long_trailer = format!("0\r\nx: {}\r\n\r\n", "t".repeat(TRAILERS_MAX));
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..], // bare LF after the size
            b"5\r\nhello\n0\r\n\r\n",      // bare LF after the data
            b"5\r\nhelloX\r\n0\r\n\r\n",   // data longer than its size
            b"\r\nhello\r\n0\r\n\r\n",     // no size
            b"-5\r\nhello\r\n0\r\n\r\n",   // not hex
            b"0x5\r\nhello\r\n0\r\n\r\n",  // not hex either
            b"10000000000000000\r\n",      // 17 digits: over 64 bits
            b"5 5\r\nhello\r\n0\r\n\r\n",  // space inside the size
            b"0\r\nx: 1\n\r\n",            // bare LF in trailers
            b"0\r\n\r\r",                  // no final LF
            long_ext.as_bytes(),
            long_trailer.as_bytes(),
        ] {
            assert!(
                decode(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(
                decode(bad, bad.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Sixteen digits are the most a size may have.
        let mut d = ChunkedDecoder::new();
        assert!(d.feed(b"000000000000000a\r\n", &mut |_| {}).is_ok());
    }

    #[test]
    fn any_mix_of_framing_pieces_decodes_alike_however_split() {
        // Pieces of valid and broken framing, strung together at random
        // (a fixed xorshift, so a failure repeats): the fuzz target's
        // assertions, run on every build.
        const PIECES: [&[u8]; 16] = [
            b"5\r\nhello\r\n",
            b"0\r\n\r\n",
            b"A;ext=1\r\n0123456789\r\n",
            b"0\r\nx: 1\r\n\r\n",
            b"\r\n",
            b"\n",
            b"3\r\n",
            b"abc",
            b"ffffffffffffffff\r\n",
            b"1 ;x\r\nz\r\n",
            b"GET / HTTP/1.1\r\n",
            b"content-length: 3\r\n",
            b"transfer-encoding: chunked\r\n",
            b"host: a\r\n",
            b"\r",
            b"\x00",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..3000 {
            let mut input = Vec::new();
            for _ in 0..(state % 9) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                input.extend_from_slice(PIECES[(state % 16) as usize]);
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            fuzz_http1(&input);
        }
    }

    #[test]
    fn chunks_are_re_encoded_canonically() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello");
        encode_chunk(&mut out, b"");
        encode_chunk(&mut out, &[b'x'; 26]);
        out.extend_from_slice(LAST_CHUNK);
        let expected = [&b"5\r\nhello\r\n1a\r\n"[..], &[b'x'; 26], b"\r\n0\r\n\r\n"].concat();
        assert_eq!(out, expected);
        assert_eq!(decode(&out, 3).unwrap().0.len(), 31);
    }

    #[test]
    fn heads_are_parsed_once_they_can_be_complete() {
        let head = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
        assert!(!head_may_end(&head[..head.len() - 1], 0));
        assert!(head_may_end(head, head.len() - 1));
        assert!(head_may_end(b"GET / HTTP/1.1\nhost: a\n\n", 20));
        // Scanning resumes a few bytes back, so an end split across reads
        // is found.
        assert!(head_may_end(head, head.len() - 3));
        let (len, parsed) = parse_request_head(head, 100).unwrap().unwrap();
        assert_eq!(len, head.len());
        assert_eq!(parsed.body, BodyLen::Empty);
        assert!(parsed.keep_alive);
        assert!(parse_request_head(&head[..10], 100).unwrap().is_none());
        let many: String = (0..5).map(|i| format!("x-{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(parse_request_head(many.as_bytes(), 4), Err(true)));
        assert!(parse_request_head(many.as_bytes(), 5).is_ok());
        let two_hosts = b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n";
        assert!(matches!(parse_request_head(two_hosts, 100), Err(false)));
        // Folded header lines (obs-fold) are refused.
        assert!(matches!(
            parse_request_head(b"GET / HTTP/1.1\r\nx-a: 1\r\n b\r\n\r\n", 100),
            Err(false)
        ));
        let close = b"GET / HTTP/1.0\r\n\r\n";
        assert!(
            !parse_request_head(close, 100)
                .unwrap()
                .unwrap()
                .1
                .keep_alive
        );
        let kept = b"GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n";
        assert!(parse_request_head(kept, 100).unwrap().unwrap().1.keep_alive);
        let closed = b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n";
        assert!(
            !parse_request_head(closed, 100)
                .unwrap()
                .unwrap()
                .1
                .keep_alive
        );
    }
}
