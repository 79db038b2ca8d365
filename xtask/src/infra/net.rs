//! Can we reach a host? A TCP connect within a time limit, with DNS bounded too, through
//! HTTPS_PROXY (an HTTP CONNECT) unless NO_PROXY exempts the host.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    sync::mpsc,
    time::{Duration, Instant},
};

/// A loopback port free now (the kernel's pick).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether `host:443` answers within `limit` (DNS included), as HTTPS clients here would reach it.
pub fn https_reachable(host: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    match proxy_for(host) {
        Some(proxy) => through_proxy(&proxy, host, deadline),
        None => connect(&format!("{host}:443"), deadline).is_some(),
    }
}

/// HTTPS_PROXY (or https_proxy) as `host:port`, unless NO_PROXY names `host`.
fn proxy_for(host: &str) -> Option<String> {
    let var = |k: &str| {
        std::env::var(k)
            .ok()
            .or_else(|| std::env::var(k.to_lowercase()).ok())
    };
    let no_proxy = var("NO_PROXY").unwrap_or_default();
    if exempt(&no_proxy, host) {
        return None;
    }
    let proxy = var("HTTPS_PROXY").filter(|p| !p.is_empty())?;
    let proxy = proxy.split("://").last()?.trim_end_matches('/');
    let proxy = proxy.rsplit_once('@').map_or(proxy, |(_, h)| h);
    Some(if proxy.contains(':') {
        proxy.to_string()
    } else {
        format!("{proxy}:80")
    })
}

fn exempt(no_proxy: &str, host: &str) -> bool {
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|e| {
            let domain = e.trim_start_matches('*').trim_start_matches('.');
            e == "*" || host == domain || host.ends_with(&format!(".{domain}"))
        })
}

/// A TCP connection to `addr`, name resolution and connect both done by `deadline`.
fn connect(addr: &str, deadline: Instant) -> Option<TcpStream> {
    let (tx, rx) = mpsc::channel();
    let name = addr.to_string();
    // getaddrinfo cannot be given a time limit: ask in a thread, wait only until the deadline.
    std::thread::spawn(move || {
        let _ = tx.send(
            name.to_socket_addrs()
                .map(|a| a.collect::<Vec<SocketAddr>>()),
        );
    });
    let addrs = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()?
        .ok()?;
    addrs.iter().find_map(|a| {
        let left = deadline.saturating_duration_since(Instant::now());
        (!left.is_zero())
            .then(|| TcpStream::connect_timeout(a, left).ok())
            .flatten()
    })
}

fn through_proxy(proxy: &str, host: &str, deadline: Instant) -> bool {
    let Some(mut stream) = connect(proxy, deadline) else {
        return false;
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let _ = stream.set_read_timeout(Some(left));
    if write!(
        stream,
        "CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap_or(0);
    let reply = String::from_utf8_lossy(&buf[..n]);
    reply.split_whitespace().nth(1) == Some("200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_matching() {
        assert!(exempt("localhost,.github.com", "api.github.com"));
        assert!(exempt("github.com", "github.com"));
        assert!(exempt("*", "github.com"));
        assert!(!exempt("example.com", "github.com"));
        assert!(!exempt("", "github.com"));
    }

    #[test]
    fn a_closed_port_is_unreachable_within_the_limit() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        assert!(connect(
            &format!("127.0.0.1:{port}"),
            Instant::now() + Duration::from_secs(2)
        )
        .is_none());
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
