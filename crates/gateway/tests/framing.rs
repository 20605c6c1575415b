//! HTTP/1.1 framing through the gateway, against a scripted upstream that
//! answers with exact bytes and records exact bytes: chunked bodies both
//! ways, pipelining, bodies delimited by the close, HEAD, interim
//! responses, `Expect: 100-continue`, framing the gateway must refuse, and
//! upstream connections closed while idle.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that records each request's bytes as received and answers
/// with the bytes `script` gives for its request line.
struct Scripted {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<usize>>,
}

impl Scripted {
    /// `close_after`: close each connection after this many responses,
    /// without saying so (as an upstream's idle timeout does).
    async fn start(script: fn(&str) -> Vec<u8>, close_after: Option<usize>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                *c.lock().unwrap() += 1;
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut answered = 0;
                    while let Some(request) = read_request(&mut stream, &mut buf).await {
                        let line = request.lines().next().unwrap_or("").to_owned();
                        s.lock().unwrap().push(request);
                        if stream.write_all(&script(&line)).await.is_err() {
                            return;
                        }
                        answered += 1;
                        if line.contains("/early-ok") {
                            // Answered from the head; the body is read
                            // after, and its size recorded.
                            let want: usize = s
                                .lock()
                                .unwrap()
                                .last()
                                .unwrap()
                                .lines()
                                .find_map(|l| {
                                    l.to_lowercase()
                                        .strip_prefix("content-length: ")
                                        .map(|v| v.trim().parse().unwrap())
                                })
                                .unwrap();
                            while buf.len() < want {
                                let mut chunk = [0u8; 65536];
                                match stream.read(&mut chunk).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                }
                            }
                            s.lock()
                                .unwrap()
                                .push(format!("early-ok body {}", buf.len()));
                            buf.clear();
                            continue;
                        }
                        if line.contains("/early") {
                            // Holds the connection open without reading.
                            tokio::time::sleep(Duration::from_secs(20)).await;
                            return;
                        }
                        if close_after == Some(answered) || line.contains("/close") {
                            return;
                        }
                    }
                });
            }
        });
        Scripted {
            addr,
            seen,
            connections,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

/// Reads one request (head and body, framed by `content-length` or
/// canonical chunks, as the gateway sends them).
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_lowercase();
            let body_end = if head.starts_with("post /orders/early") {
                // Answered from the head, the body never read.
                Some(end + 4)
            } else if let Some(cl) = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
            {
                Some(end + 4 + cl.trim().parse::<usize>().unwrap())
            } else if head.contains("transfer-encoding: chunked") {
                buf[end + 4..]
                    .windows(5)
                    .position(|w| w == b"0\r\n\r\n")
                    .filter(|&i| i == 0 || buf[end + 4 + i - 2..end + 4 + i] == *b"\r\n")
                    .map(|i| end + 4 + i + 5)
            } else {
                Some(end + 4)
            };
            if let Some(body_end) = body_end.filter(|&e| e <= buf.len()) {
                let request = String::from_utf8_lossy(&buf[..body_end]).into_owned();
                buf.drain(..body_end);
                return Some(request);
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn script(line: &str) -> Vec<u8> {
    let path = line.split(' ').nth(1).unwrap_or("");
    let r: &[u8] = match path {
        "/orders/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 99\r\n\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nx-trailer: t\r\n\r\n",
        "/orders/close" => b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
        "/orders/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
        "/orders/continue" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
        "/orders/two-lengths" => b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok",
        "/orders/gzip-te" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "/orders/upgrade" => b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        "/orders/early-ok" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        "/orders/early" => b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        "/orders/bad-chunks" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-upstream: yes\r\n\r\nok",
    };
    r.to_vec()
}

/// Reads responses until the gateway closes the connection, and splits
/// them by their framing (lengths and chunks; the last may run to the
/// close). Chunked bodies are returned decoded.
async fn read_all(stream: &mut TcpStream, head_only: &[bool]) -> Vec<Reply> {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("the gateway closes within 10 s")
        .unwrap();
    let mut replies = Vec::new();
    let mut rest = &buf[..];
    while !rest.is_empty() {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut reply = parse_reply(&rest[..end]);
        rest = &rest[end..];
        let head_only = head_only.get(replies.len()).copied().unwrap_or(false);
        if head_only || reply.status == 100 {
        } else if let Some(n) = reply.header("content-length") {
            let n: usize = n.parse().unwrap();
            reply.body = rest[..n].to_vec();
            rest = &rest[n..];
        } else if reply.header("transfer-encoding") == Some("chunked") {
            let mut body = Vec::new();
            loop {
                let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
                let size =
                    usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16)
                        .expect("canonical chunk sizes");
                rest = &rest[line_end + 2..];
                if size == 0 {
                    assert_eq!(&rest[..2], b"\r\n", "no trailers after the last chunk");
                    rest = &rest[2..];
                    break;
                }
                body.extend_from_slice(&rest[..size]);
                assert_eq!(&rest[size..size + 2], b"\r\n");
                rest = &rest[size + 2..];
            }
            reply.body = body;
        } else {
            reply.body = rest.to_vec();
            rest = &[];
        }
        replies.push(reply);
    }
    replies
}

async fn gateway_for(up: &Scripted) -> (Env, Running) {
    let env = Env::new();
    let gw = Running::start(&env, &format!("http://{}", up.addr), |_| {}).await;
    (env, gw)
}

#[tokio::test]
async fn chunked_requests_are_re_framed_and_pipelined_requests_answered_in_order() {
    let up = Scripted::start(script, None).await;
    let (env, mut gw) = gateway_for(&up).await;
    let t = env.legit();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // Three requests in one write, after empty lines (which are ignored):
    // a chunked body with an extension, an upper-case size and a trailer,
    // a request with a length, and a last one that closes.
    let pipelined = format!(
        "\r\n\r\nPOST /orders HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {t}\r\ntransfer-encoding: chunked\r\n\r\n\
         5;note=x\r\nhello\r\nB\r\n world, ok!\r\n0\r\nx-checksum: 1\r\n\r\n\
         POST /orders HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {t}\r\ncontent-length: 3\r\n\r\nabc\
         GET /orders HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {t}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(pipelined.as_bytes()).await.unwrap();
    let replies = read_all(&mut s, &[]).await;
    assert_eq!(replies.len(), 3);
    assert!(replies.iter().all(|r| r.status == 200 && r.body == b"ok"));
    assert_eq!(replies[2].header("connection"), Some("close"));

    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    // The upstream gets canonical chunks, without the extension or the
    // trailer, and a length it can trust.
    assert!(
        seen[0].contains("transfer-encoding: chunked\r\n"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].ends_with("\r\n\r\n5\r\nhello\r\nb\r\n world, ok!\r\n0\r\n\r\n"),
        "{}",
        seen[0]
    );
    assert!(!seen[0].contains("note") && !seen[0].contains("x-checksum"));
    assert!(
        seen[1].ends_with("content-length: 3\r\n\r\nabc")
            || seen[1].contains("content-length: 3\r\n")
    );
    assert!(seen[1].ends_with("\r\n\r\nabc"));
    assert!(seen[2].starts_with("GET /orders HTTP/1.1\r\n"));
    // One upstream connection carried all three.
    assert_eq!(up.connections(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn upstream_bodies_reach_the_client_framed_by_the_gateway() {
    let up = Scripted::start(script, None).await;
    let (env, mut gw) = gateway_for(&up).await;
    let t = env.legit();
    let auth = format!("authorization: Bearer {t}");

    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let requests = format!(
        "GET /orders/chunked HTTP/1.1\r\nhost: a\r\n{auth}\r\n\r\n\
         HEAD /orders/head HTTP/1.1\r\nhost: a\r\n{auth}\r\n\r\n\
         GET /orders/continue HTTP/1.1\r\nhost: a\r\n{auth}\r\n\r\n\
         GET /orders/close HTTP/1.1\r\nhost: a\r\n{auth}\r\n\r\n\
         GET /orders HTTP/1.1\r\nhost: a\r\n{auth}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(requests.as_bytes()).await.unwrap();
    let replies = read_all(&mut s, &[false, true]).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    // Interim responses stay between the gateway and the upstream.
    assert_eq!(statuses, [200, 200, 201, 200, 200]);
    // Chunks are re-framed: the upstream's extension and trailer are gone,
    // and its contradictory content-length is not passed on.
    assert_eq!(replies[0].body, b"wikipedia");
    assert_eq!(replies[0].header("content-length"), None);
    // HEAD: the length of what GET would send, and no body.
    assert_eq!(replies[1].header("content-length"), Some("100"));
    assert_eq!(replies[1].body, b"");
    assert_eq!(replies[2].body, b"ok");
    // A body delimited by the upstream's close reaches an HTTP/1.1 client
    // chunked, so the client connection survives it.
    assert_eq!(replies[3].header("transfer-encoding"), Some("chunked"));
    assert_eq!(replies[3].body, b"until the end");
    assert_eq!(replies[4].body, b"ok");
    // Connections not trusted with another exchange were replaced: the
    // one whose response had both lengths (RFC 9112 §6.3) and the one the
    // upstream closed.
    assert_eq!(up.connections(), 3);

    // An HTTP/1.0 client has no chunks: the body runs to the close.
    let r = raw(
        gw.addr,
        &format!("GET /orders/chunked HTTP/1.0\nhost: a\n{auth}"),
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.body, b"wikipedia");
    gw.stop().await;
}

#[tokio::test]
async fn framing_the_gateway_cannot_pass_on_faithfully_is_refused() {
    let up = Scripted::start(script, None).await;
    let (env, mut gw) = gateway_for(&up).await;
    let t = env.legit();
    for path in ["/orders/two-lengths", "/orders/gzip-te", "/orders/upgrade"] {
        let r = get(gw.addr, path, Some(&t)).await;
        assert_eq!(r.status, 502, "{path}");
    }
    // A chunked body the upstream breaks off: the client cannot be told by
    // a status any more, so its connection is closed before the body ends.
    let r = raw(
        gw.addr,
        &format!("GET /orders/bad-chunks HTTP/1.1\nhost: a\nauthorization: Bearer {t}"),
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        !r.body.ends_with(b"0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );

    // A client's chunked body with a bare LF: refused, and the upstream
    // never sees a complete request.
    let before = up.seen().len();
    let r = raw(
        gw.addr,
        &format!(
            "POST /orders HTTP/1.1\nhost: a\nauthorization: Bearer {t}\ntransfer-encoding: chunked"
        ),
        b"5\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(up.seen().len(), before);
    let lines = gw.log_lines(5).await;
    let last = lines.last().unwrap();
    assert_eq!(last["status"], 400);
    assert_eq!(last["reasons"][0], "malformed-request");
    gw.stop().await;
}

#[tokio::test]
async fn expect_continue_is_answered_by_the_gateway_once_the_token_passes() {
    let up = Scripted::start(script, None).await;
    let (env, mut gw) = gateway_for(&up).await;
    let t = env.legit();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /orders HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {t}\r\ncontent-length: 5\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut interim))
        .await
        .expect("100 Continue before the body is sent")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.unwrap();
    let replies = read_all(&mut s, &[]).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 200);
    let seen = up.seen();
    assert!(seen[0].ends_with("\r\n\r\nhello"));
    assert!(!seen[0].contains("expect:"), "the gateway answered it");

    // Without a valid token there is no 100: the client never sends the
    // body.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /orders HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let replies = read_all(&mut s, &[]).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 401);
    assert_eq!(replies[0].header("connection"), Some("close"));
    assert_eq!(up.seen().len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_is_replaced() {
    // The upstream closes every connection after one response, without a
    // `connection: close`, as an idle timeout does.
    let up = Scripted::start(script, Some(1)).await;
    let (env, mut gw) = gateway_for(&up).await;
    let t = env.legit();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let auth = format!("authorization: Bearer {t}");
    s.write_all(format!("GET /orders HTTP/1.1\r\nhost: a\r\n{auth}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut first = [0u8; 512];
    let n = s.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A POST is not idempotent, so it must not be retried: it goes on a
    // fresh connection because the closed one is noticed first.
    s.write_all(
        format!("POST /orders HTTP/1.1\r\nhost: a\r\n{auth}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")
            .as_bytes(),
    )
    .await
    .unwrap();
    let replies = read_all(&mut s, &[]).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 200);
    assert_eq!(up.connections(), 2);
    assert!(up.seen()[1].ends_with("\r\n\r\nhi"));
    gw.stop().await;
}

#[tokio::test]
async fn upstream_connections_outlive_client_connections() {
    let up = Scripted::start(script, None).await;
    let env = Env::new();
    // One worker thread: each keeps idle upstream connections of its own.
    let mut gw = Running::start(&env, &format!("http://{}", up.addr), |c| c.workers = 1).await;
    let t = env.legit();
    // One request per client connection, as nginx sends by default.
    for _ in 0..5 {
        let r = get(gw.addr, "/orders", Some(&t)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
    }
    assert_eq!(up.seen().len(), 5);
    assert_eq!(
        up.connections(),
        1,
        "one upstream connection served them all"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_answering_before_the_body_is_heard_at_once() {
    let up = Scripted::start(script, None).await;
    let (env, mut gw) = gateway_for(&up).await;
    let t = env.legit();
    let s = TcpStream::connect(gw.addr).await.unwrap();
    let (mut reader, mut writer) = s.into_split();
    let size = 32 * 1024 * 1024;
    let head = format!(
        "POST /orders/early HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {t}\r\ncontent-length: {size}\r\n\r\n"
    );
    // The body is far larger than every buffer on the way: sending it all
    // first would block until the upstream timeout (30 s).
    let upload = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the upstream's early answer arrives within 10 s"
    );
    let r = parse_reply(&buf);
    assert_eq!(r.status, 413);
    // The client's body was not read to its end: its connection closes.
    assert_eq!(r.header("connection"), Some("close"));
    upload.abort();
    let lines = gw.log_lines(1).await;
    assert_eq!(lines[0]["upstream_status"], 413);
    gw.stop().await;
}

#[tokio::test]
async fn an_early_answer_that_is_not_a_refusal_still_gets_the_whole_body() {
    let up = Scripted::start(script, None).await;
    let (env, mut gw) = gateway_for(&up).await;
    let t = env.legit();
    let size = 4 * 1024 * 1024;
    let head = format!(
        "POST /orders/early-ok HTTP/1.1\nhost: a\nauthorization: Bearer {t}\ncontent-length: {size}"
    );
    let r = raw(gw.addr, &head, &vec![b'x'; size]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !up.seen().iter().any(|l| l.starts_with("early-ok body")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream never got the body"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        up.seen().contains(&format!("early-ok body {size}")),
        "{:?}",
        up.seen().last()
    );
    gw.stop().await;
}
