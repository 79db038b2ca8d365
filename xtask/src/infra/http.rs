//! A tiny HTTP/1.0 GET over loopback: enough for the smoke test (and the integration tests).

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

/// `GET path` from `addr` ("127.0.0.1:8080"): the status code and the body.
pub fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `GET path` until it answers 200 or `timeout` passes.
pub fn wait_ok(addr: &str, path: &str, timeout: Duration) -> bool {
    wait_for(addr, path, |status, _| status == 200, timeout)
}

/// Polls `GET path` until its answer (status, body) is one `accept` takes, or `timeout` passes.
pub fn wait_for(
    addr: &str,
    path: &str,
    accept: impl Fn(u16, &str) -> bool,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if get(addr, path).is_ok_and(|(status, body)| accept(status, &body)) {
            return true;
        }
        // A new container answers a few ms after it starts: `dev` waits on this.
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}
