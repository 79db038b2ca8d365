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
    process::{no_answer, say_still_waiting, Kind, STILL_WAITING},
    signals,
};

/// The engine's socket, when the CLI would use one.
#[derive(Debug, Clone)]
pub struct Api {
    socket: Utf8PathBuf,
}

/// One request: what it asks, and the `docker` command it stands for (what is echoed).
#[derive(Debug)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
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
    pub fn send(&self, request: &Request, timeout: Duration) -> Result<Vec<u8>> {
        let socket = &self.socket;
        let shown = &request.shown;
        let fail = |end| ApiError {
            shown: shown.clone(),
            end,
        };
        let mut stream = UnixStream::connect(socket)
            .with_context(|| format!("connecting to the engine at unix://{socket}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(20)))?;
        stream.set_write_timeout(Some(timeout))?;
        let head = format!(
            "{} {} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n",
            request.method, request.path
        );
        stream
            .write_all(head.as_bytes())
            .with_context(|| format!("`{shown}` through unix://{socket}"))?;
        let (started, mut noticed) = (Instant::now(), false);
        let mut answer = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("`{shown}` through unix://{socket}"))
                }
            }
            match signals::received() {
                Some(signal) if request.kind != Kind::Cleanup => {
                    return Err(fail(ApiEnd::Stopped(signal)).into())
                }
                _ => {}
            }
            if started.elapsed() >= timeout {
                return Err(fail(ApiEnd::NoAnswer(timeout)).into());
            }
            if !noticed && started.elapsed() >= STILL_WAITING {
                noticed = true;
                say_still_waiting(shown);
            }
        }
        let (status, body) = split_answer(&answer)
            .with_context(|| format!("`{shown}`: the engine's answer is not HTTP"))?;
        if (200..300).contains(&status) {
            return Ok(body.to_vec());
        }
        let text = String::from_utf8_lossy(body);
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

/// The status and the body of an HTTP answer.
fn split_answer(answer: &[u8]) -> Option<(u16, &[u8])> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, &answer[end + 4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_split_into_status_and_body() {
        let answer = b"HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(split_answer(answer), Some((404, &b"{}"[..])));
        assert_eq!(split_answer(b"garbage"), None);
        assert!(Api::at("tcp://127.0.0.1:2375").is_none());
        assert_eq!(escape("localhost:5000/app"), "localhost%3A5000%2Fapp");
    }
}
