//! The engine's HTTP API on a local Unix socket: how the xtask asks the engine about images and
//! moves or removes their names. A request costs about 1 ms there, where a `docker` call costs
//! 10–15 ms on this project's machines, and `direct` makes several after Go has linked
//! (docs/performance.md). Docker (both stores) and Podman serve the same requests.
//!
//! Used only where the CLI itself would reach the engine through a Unix socket: `DOCKER_HOST` is
//! `unix://…`, or neither it nor a context is set (the default socket). Any other endpoint (TCP
//! with TLS, ssh, a context) goes through the CLI, which knows its keys and contexts.
//!
//! A request is HTTP/1.0, one per connection: Docker and Podman answer it with a length and no
//! chunking, and close. `Ctx::request` sends one (echoed, `--dry-run`, signals, as for a process).
//! An upload (`docker load`'s archive, sent while it is made) is HTTP/1.1 with a chunked body
//! and `Connection: close`; its answer may be chunked.

use std::{
    fmt,
    io::{ErrorKind, Read, Write},
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::infra::{
    process::{no_answer, say_still_waiting, Kind, STILL_WAITING, STOP_GRACE},
    signals,
};

/// The engine's socket, when the CLI would use one.
#[derive(Debug, Clone)]
pub struct Api {
    socket: Utf8PathBuf,
}

/// One request: what it asks (a JSON body, for a few), and the `docker` command it stands for
/// (what is echoed).
#[derive(Debug)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub body: Option<String>,
    pub shown: String,
    pub kind: Kind,
}

/// A request that failed, as data: what it stood for and how it ended.
#[derive(Debug)]
pub struct ApiError {
    pub shown: String,
    pub end: ApiEnd,
}

/// How a failed request ended.
#[derive(Debug)]
pub enum ApiEnd {
    /// The engine answered with this status, in its own words.
    Refused { status: u16, message: String },
    /// No whole answer within the bound: a stuck engine.
    NoAnswer(Duration),
    /// A signal came while a query or a change waited.
    Stopped(i32),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.shown;
        match &self.end {
            ApiEnd::Refused { message, .. } => write!(f, "`{shown}` (engine API): {message}"),
            ApiEnd::NoAnswer(t) => write!(f, "`{shown}` (engine API): {}", no_answer(*t)),
            ApiEnd::Stopped(signal) => write!(f, "`{shown}` stopped by {}", signals::name(*signal)),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The engine has no such image (or container).
    pub fn not_found(&self) -> bool {
        matches!(self.end, ApiEnd::Refused { status: 404, .. })
    }

    /// The engine's own words for a refusal.
    pub fn refusal(&self) -> Option<&str> {
        match &self.end {
            ApiEnd::Refused { message, .. } => Some(message),
            _ => None,
        }
    }
}

impl Api {
    /// The socket of `endpoint` (`docker::engine_key`'s answer), when it is one.
    pub fn at(endpoint: &str) -> Option<Api> {
        let path = endpoint.strip_prefix("unix://")?;
        Some(Api {
            socket: Utf8PathBuf::from(path),
        })
    }

    /// Sends `request` and reads the whole answer within `timeout`: the body of a 2xx answer,
    /// else an `ApiError` (a socket that does not answer is an I/O error). As for a process
    /// (`process::Running::wait`): after `STILL_WAITING` it says once what it waits for, and a
    /// signal stops the wait, but for a clean-up's, which is let finish.
    pub fn send(&self, request: Request, timeout: Duration) -> Result<Vec<u8>> {
        let body = request.body.as_deref().unwrap_or("");
        let head = format!(
            "{} {} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            request.method,
            request.path,
            body.len()
        );
        self.open(request, &head, Some(timeout))?.answer(timeout)
    }

    /// Starts `request` with a body sent as it is made (`Upload`, in another thread if need be);
    /// its answer comes once the body is finished (`Pending::answer`).
    pub fn upload(&self, request: Request) -> Result<(Upload, Pending)> {
        let head = format!(
            "{} {} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\
             Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n",
            request.method, request.path
        );
        let pending = self.open(request, &head, None)?;
        let stream = pending.stream.try_clone()?;
        Ok((Upload { stream }, pending))
    }

    /// Connects and sends a request's head.
    fn open(&self, request: Request, head: &str, timeout: Option<Duration>) -> Result<Pending> {
        let socket = &self.socket;
        let through = || format!("`{}` through unix://{socket}", request.shown);
        let mut stream = UnixStream::connect(socket)
            .with_context(|| format!("connecting to the engine at unix://{socket}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(20)))?;
        stream.set_write_timeout(timeout)?;
        stream.write_all(head.as_bytes()).with_context(through)?;
        Ok(Pending { stream, request })
    }
}

/// A request's body, sent chunk by chunk. Dropped unfinished, the engine takes the body as cut
/// short and does nothing with it.
pub struct Upload {
    stream: UnixStream,
}

impl Upload {
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(()); // an empty chunk would end the body
        }
        write!(self.stream, "{:x}\r\n", bytes.len())?;
        self.stream.write_all(bytes)?;
        self.stream.write_all(b"\r\n")
    }

    /// The body's end.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.stream.write_all(b"0\r\n\r\n")
    }
}

/// A request sent, its answer to come.
pub struct Pending {
    stream: UnixStream,
    request: Request,
}

impl Pending {
    /// The `docker` command the request stands for.
    pub fn shown(&self) -> &str {
        &self.request.shown
    }

    /// Reads the whole answer within `timeout` (see `Api::send`). A change fed from here
    /// (`Kind::Fed`), or one not to be cut short (`Kind::Whole`), is let finish after a signal for
    /// `STOP_GRACE`, as its process would be.
    pub fn answer(mut self, timeout: Duration) -> Result<Vec<u8>> {
        let Pending { stream, request } = &mut self;
        let shown = &request.shown;
        let fail = |end| ApiError {
            shown: shown.clone(),
            end,
        };
        let (started, mut noticed, mut signalled) = (Instant::now(), false, None);
        let mut answer = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("`{shown}` (engine API)")),
            }
            if let Some(signal) = signals::received() {
                let at = *signalled.get_or_insert_with(Instant::now);
                let stops = match request.kind {
                    Kind::Cleanup => false,
                    Kind::Fed | Kind::Whole => at.elapsed() > STOP_GRACE,
                    Kind::Change | Kind::Query => true,
                };
                if stops {
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return Err(fail(ApiEnd::Stopped(signal)).into());
                }
            }
            if started.elapsed() >= timeout {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return Err(fail(ApiEnd::NoAnswer(timeout)).into());
            }
            if !noticed && started.elapsed() >= STILL_WAITING {
                noticed = true;
                say_still_waiting(shown, true, started.elapsed());
            }
        }
        let (status, chunked, body) = split_answer(&answer)
            .with_context(|| format!("`{shown}`: the engine's answer is not HTTP"))?;
        let body = match chunked {
            true => dechunk(body)
                .with_context(|| format!("`{shown}`: the engine's answer is cut short"))?,
            false => body.to_vec(),
        };
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body);
        let message = jzon::parse(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        Err(fail(ApiEnd::Refused { status, message }).into())
    }
}

/// A path segment or query value, escaped (`repo=localhost:5000/app`).
pub fn escape(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

/// The status of an HTTP answer, whether its body is chunked, and the body.
fn split_answer(answer: &[u8]) -> Option<(u16, bool, &[u8])> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    Some((status, chunked, &answer[end + 4..]))
}

/// A chunked body's bytes; None when it ends before its last chunk.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[..line]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        body = &body[line + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_split_into_status_and_body() {
        let answer = b"HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(split_answer(answer), Some((404, false, &b"{}"[..])));
        let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2\r\n\"}\r\n0\r\n\r\n";
        let (status, chunked, body) = split_answer(answer).unwrap();
        assert_eq!((status, chunked), (200, true));
        assert_eq!(dechunk(body).as_deref(), Some(&b"{\"a\"}"[..]));
        assert_eq!(dechunk(b"3\r\n{\"a"), None, "cut short");
        assert_eq!(split_answer(b"garbage"), None);
        assert!(Api::at("tcp://127.0.0.1:2375").is_none());
        assert_eq!(escape("localhost:5000/app"), "localhost%3A5000%2Fapp");
    }
}
