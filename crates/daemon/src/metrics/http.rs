//! A deliberately small, bounded HTTP/1.1 server on `std::net`.
//!
//! It serves a handful of read-only endpoints to Prometheus and to a browser, so it
//! does exactly that and no more: `GET` and `HEAD` only (`405` otherwise), one request
//! per connection (`Connection: close`, so no idle keep-alive connections pile up), no
//! request bodies. What an unfriendly client can cost is bounded:
//!
//! * [`HANDLERS`] handler threads, fed by a queue of [`QUEUE`] accepted connections;
//!   when the queue is full a connection gets a `503` and is closed at once;
//! * a request head of at most [`MAX_REQUEST`] bytes (`431` past that);
//! * [`REQUEST_DEADLINE`] for the whole request head, however slowly it trickles in
//!   (`408`), and a write timeout for the response.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Handler threads: scrapes and a page or two at a time need no more.
pub const HANDLERS: usize = 4;
/// Accepted connections waiting for a handler.
pub const QUEUE: usize = 16;
/// Largest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Time allowed to receive the whole request head.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Time allowed for each write of the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request: method and target, split into path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD` (others never reach the handler).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string after `?`, empty when none.
    pub query: String,
}

impl Request {
    /// The value of `name=` in the query (no percent-decoding: the endpoints only take
    /// numbers).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// A response: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// `200 OK` with `body`.
    pub fn ok(content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status: 200,
            content_type,
            body,
        }
    }

    /// An error status with a one-line text body.
    pub fn error(status: u16, message: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{status} {message}\n").into_bytes(),
        }
    }
}

/// What answers requests.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Serve `listener` with `handler` until `stop` is set (and one more connection
/// arrives to wake the accept loop). Returns once the threads are started.
pub fn serve(listener: TcpListener, handler: Handler, stop: Arc<AtomicBool>) -> io::Result<()> {
    let (tx, rx) = sync_channel::<TcpStream>(QUEUE);
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..HANDLERS {
        let (rx, handler) = (rx.clone(), handler.clone());
        std::thread::Builder::new()
            .name(format!("metrics-http-{i}"))
            .spawn(move || handle_queue(&rx, &handler))?;
    }
    std::thread::Builder::new()
        .name("metrics-accept".into())
        .spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::debug!("metrics accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                match tx.try_send(stream) {
                    Ok(()) => {}
                    Err(TrySendError::Full(mut s)) => {
                        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                        let _ = write_response(&mut s, &Response::error(503, "busy"), false);
                    }
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
            // Dropping `tx` ends the handler threads once the queue is drained.
        })?;
    Ok(())
}

fn handle_queue(rx: &Mutex<Receiver<TcpStream>>, handler: &Handler) {
    loop {
        // The lock is held only while waiting for the next connection, never while
        // handling one.
        let next = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(mut stream) = next else { return };
        if let Err(e) = handle_connection(&mut stream, handler) {
            tracing::trace!("metrics connection: {e}");
        }
    }
}

/// Why a request head could not be read.
#[derive(Debug, PartialEq, Eq)]
enum ReadError {
    TooLarge,
    Timeout,
    Closed,
}

/// Read up to the blank line ending the head, within the size limit and deadline.
fn read_head(stream: &mut impl ReadWithTimeout, limit: Duration) -> Result<Vec<u8>, ReadError> {
    let deadline = Instant::now() + limit;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = find_head_end(&head) {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_REQUEST {
            return Err(ReadError::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        stream.set_timeout(left).map_err(|_| ReadError::Closed)?;
        match stream.read(&mut buf) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::Timeout)
            }
            Err(_) => return Err(ReadError::Closed),
        }
    }
}

/// A reader whose per-read timeout can be set (a `TcpStream`, or a test double).
trait ReadWithTimeout: Read {
    fn set_timeout(&mut self, t: Duration) -> io::Result<()>;
}

impl ReadWithTimeout for TcpStream {
    fn set_timeout(&mut self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

/// Index just past the `\r\n\r\n` (or bare `\n\n`) ending the head.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parse the request line. `Err` carries the response to send instead.
pub fn parse_request(head: &[u8]) -> Result<Request, Response> {
    let text = std::str::from_utf8(head).map_err(|_| Response::error(400, "bad request"))?;
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Response::error(400, "bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Response::error(505, "HTTP/1.x only"));
    }
    if method != "GET" && method != "HEAD" {
        return Err(Response::error(405, "only GET and HEAD"));
    }
    // Origin form only ("/path?query"); absolute URIs and "*" are not served.
    if !target.starts_with('/') {
        return Err(Response::error(400, "bad request target"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
    })
}

fn handle_connection(stream: &mut TcpStream, handler: &Handler) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let response = match read_head(stream, REQUEST_DEADLINE) {
        Ok(head) => match parse_request(&head) {
            Ok(req) => {
                let head_only = req.method == "HEAD";
                let resp = handler(&req);
                write_response(stream, &resp, head_only)?;
                return stream.shutdown(Shutdown::Write);
            }
            Err(resp) => resp,
        },
        Err(ReadError::TooLarge) => Response::error(431, "request too large"),
        Err(ReadError::Timeout) => Response::error(408, "request timeout"),
        Err(ReadError::Closed) => return Ok(()),
    };
    write_response(stream, &response, false)?;
    linger(stream);
    Ok(())
}

/// Close after an error response to a request that was not read to its end: stop
/// sending, then read and discard what the client still sends (briefly, and a bounded
/// amount). Closing with unread data would make the kernel send a reset, which can
/// destroy the response before the client has read it.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 4096];
    let mut left = 64 * 1024usize;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

fn write_response(stream: &mut impl Write, resp: &Response, head_only: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    if resp.status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    if resp.content_type.starts_with("text/html") {
        // The page loads only its own script and style and talks only to this server.
        head.push_str(
            "Content-Security-Policy: default-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'\r\nX-Frame-Options: DENY\r\n",
        );
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&resp.body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn request(addr: std::net::SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn server() -> (std::net::SocketAddr, Arc<AtomicBool>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Handler = Arc::new(|r: &Request| {
            if r.path == "/hello" {
                Response::ok(
                    "text/plain",
                    format!("hi {}", r.query_param("who").unwrap_or("?")).into_bytes(),
                )
            } else {
                Response::error(404, "not found")
            }
        });
        serve(l, handler, stop.clone()).unwrap();
        (addr, stop)
    }

    #[test]
    fn serves_get_and_head_and_refuses_the_rest() {
        let (addr, _stop) = server();
        let r = request(addr, b"GET /hello?who=you HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Length: 6\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nhi you"), "{r}");
        let r = request(addr, b"HEAD /hello HTTP/1.0\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        let r = request(addr, b"GET /nope HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = request(addr, b"POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET, HEAD"),
            "{r}"
        );
        let r = request(addr, b"GET http://x/hello HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        let r = request(addr, b"GET /hello SPDY/3\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 505 "), "{r}");
    }

    #[test]
    fn oversized_requests_are_refused() {
        let (addr, _stop) = server();
        let mut raw = b"GET /hello HTTP/1.1\r\n".to_vec();
        while raw.len() < MAX_REQUEST + 2048 {
            raw.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let r = request(addr, &raw);
        assert!(r.starts_with("HTTP/1.1 431 "), "{}", &r[..r.len().min(80)]);
    }

    #[test]
    fn heads_end_at_the_blank_line() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"),
            Some(24)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    /// A reader that never produces the end of the head: the deadline must end it.
    struct Trickle;
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(20));
            buf[0] = b'a';
            Ok(1)
        }
    }
    impl ReadWithTimeout for Trickle {
        fn set_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_trickling_client_is_bounded() {
        // 1 byte per 20 ms: the size limit (8 KiB ≈ 160 s) is not reached before the
        // deadline ends it.
        let started = Instant::now();
        let limit = Duration::from_millis(300);
        assert_eq!(read_head(&mut Trickle, limit), Err(ReadError::Timeout));
        assert!(started.elapsed() < limit + Duration::from_millis(500));
    }

    #[test]
    fn request_lines_parse() {
        let r = parse_request(b"GET /api/history?since=12.5&x=1 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(
            (r.path.as_str(), r.query_param("since")),
            ("/api/history", Some("12.5"))
        );
        assert_eq!(r.query_param("y"), None);
        assert_eq!(parse_request(b"GET  / HTTP/1.1").unwrap_err().status, 400);
        assert_eq!(parse_request(b"\xff\xfe").unwrap_err().status, 400);
    }
}
