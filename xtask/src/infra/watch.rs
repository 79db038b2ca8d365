//! Watching a directory tree for changes with Linux's inotify, through libc: what `dev` needs
//! (every directory but `vendor/` and dot directories, new ones as they come; a file written and
//! closed, or renamed into place, marked as saved) and no more. It replaced the `notify` crate,
//! which cost about a second of every cold compile.

use std::{
    collections::HashMap,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::mpsc,
};

use anyhow::{Context, Result};

/// A change to a file under the watched tree.
#[derive(Debug, Clone)]
pub struct Event {
    pub path: PathBuf,
    /// Written and closed, or renamed into place: a save that is whole.
    pub saved: bool,
}

const MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MODIFY
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO;

/// Starts watching `dir`: its events come on the channel, from a thread of their own, until the
/// process ends.
pub fn start(dir: &Path) -> Result<mpsc::Receiver<Event>> {
    // SAFETY: inotify_init1(2) takes flags only and returns a new descriptor or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("starting inotify");
    }
    // SAFETY: `fd` is a descriptor we just made and own alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut dirs = HashMap::new();
    add_tree(&fd, dir, &mut dirs).with_context(|| format!("watching {}", dir.display()))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || read_events(fd, dirs, tx));
    Ok(rx)
}

/// Watches `dir` and every directory below it but `vendor/` and dot directories.
fn add_tree(fd: &OwnedFd, dir: &Path, dirs: &mut HashMap<i32, PathBuf>) -> Result<()> {
    let name = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .context("a directory's name holds a NUL byte")?;
    // SAFETY: `fd` is an inotify descriptor; `name` is a NUL-terminated path alive across the call.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), name.as_ptr(), MASK) };
    if wd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("watching {}", dir.display()));
    }
    dirs.insert(wd, dir.to_path_buf());
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() && !skipped(&entry.file_name()) {
            add_tree(fd, &entry.path(), dirs)?;
        }
    }
    Ok(())
}

fn skipped(name: &std::ffi::OsStr) -> bool {
    name == "vendor" || name.as_encoded_bytes().starts_with(b".")
}

/// Reads events until the receiver is gone; a new directory is watched as it comes.
fn read_events(fd: OwnedFd, mut dirs: HashMap<i32, PathBuf>, tx: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: `buf` is a writable buffer of `buf.len()` bytes that lives across the call.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        for (wd, mask, name) in parse(&buf[..n as usize]) {
            let Some(dir) = dirs.get(&wd) else { continue };
            let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
            let path = dir.join(name);
            if mask & libc::IN_ISDIR != 0 {
                if mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 && !skipped(name) {
                    let _ = add_tree(&fd, &path, &mut dirs);
                }
                continue;
            }
            let saved = mask & (libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO) != 0;
            if tx.send(Event { path, saved }).is_err() {
                return;
            }
        }
    }
}

/// The events in what one read gave: `struct inotify_event` (wd, mask, cookie, len, then `len`
/// bytes of NUL-padded name), one after another.
fn parse(mut bytes: &[u8]) -> Vec<(i32, u32, &[u8])> {
    let mut out = Vec::new();
    let word = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    while bytes.len() >= 16 {
        let (wd, mask, len) = (
            word(bytes, 0) as i32,
            word(bytes, 4),
            word(bytes, 12) as usize,
        );
        let Some(name) = bytes.get(16..16 + len) else {
            break;
        };
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        out.push((wd, mask, name));
        bytes = &bytes[16 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_as_the_kernel_lays_them_out() {
        let mut bytes = Vec::new();
        for (wd, mask, name) in [
            (1i32, libc::IN_CLOSE_WRITE, &b"main.go"[..]),
            (2, libc::IN_CREATE, b""),
        ] {
            let padded = if name.is_empty() { 0 } else { 16 };
            bytes.extend(wd.to_ne_bytes());
            bytes.extend(mask.to_ne_bytes());
            bytes.extend(0u32.to_ne_bytes());
            bytes.extend((padded as u32).to_ne_bytes());
            let mut n = name.to_vec();
            n.resize(padded, 0);
            bytes.extend(n);
        }
        let events = parse(&bytes);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], (1, libc::IN_CLOSE_WRITE, &b"main.go"[..]));
        assert_eq!(events[1], (2, libc::IN_CREATE, &b""[..]));
    }

    #[test]
    fn a_save_in_a_new_directory_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let rx = start(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("cmd")).unwrap();
        // The new directory is watched once its event is read: write until a save arrives.
        let file = dir.path().join("cmd/main.go");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            std::fs::write(&file, "package main\n").unwrap();
            match rx.recv_timeout(std::time::Duration::from_millis(200)) {
                Ok(e) if e.path == file && e.saved => break,
                _ => assert!(std::time::Instant::now() < deadline, "no save event"),
            }
        }
        std::fs::create_dir(dir.path().join("vendor")).unwrap();
        std::fs::write(dir.path().join("vendor/x.go"), "x").unwrap();
        std::fs::write(dir.path().join("top.go"), "x").unwrap();
        let mut seen = Vec::new();
        while let Ok(e) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
            seen.push(e.path);
        }
        assert!(seen.contains(&dir.path().join("top.go")), "{seen:?}");
        assert!(
            !seen
                .iter()
                .any(|p| p.starts_with(dir.path().join("vendor"))),
            "{seen:?}"
        );
    }
}
