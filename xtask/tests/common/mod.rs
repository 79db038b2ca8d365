//! Test support: a throwaway copy of the workspace (at a path with a space and non-ASCII
//! characters), the real xtask binary run in it, a PATH that hides chosen tools, and file checks.
#![allow(dead_code)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
};

#[path = "../../src/http.rs"]
pub mod http;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The real workspace (the tests' source).
pub fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub struct Workspace {
    /// Holds the copy; removed on drop.
    base: PathBuf,
    pub root: PathBuf,
}

impl Workspace {
    /// A copy of the tracked project files (no target/, dist/, vendor/, .git).
    pub fn copy() -> Workspace {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let base = std::env::temp_dir().join(format!("xtask-it-{}-{n}", std::process::id()));
        let root = base.join("check out ü");
        let _ = fs::remove_dir_all(&base);
        copy_tree(&source_root(), &root);
        Workspace { base, root }
    }

    /// Makes the copy a git repository with one commit.
    pub fn git_init(&self) {
        for args in [
            &["init", "-q"][..],
            &["add", "-A"],
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
                "commit",
                "-qm",
                "test",
            ],
        ] {
            let out = Command::new("git")
                .args(args)
                .current_dir(&self.root)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Runs the xtask with `args` in the copy.
    pub fn xtask(&self, args: &[&str]) -> Run {
        self.xtask_env(args, &[])
    }

    /// Runs the xtask with extra environment variables.
    pub fn xtask_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("running the xtask"))
    }

    /// The xtask command, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(args).current_dir(&self.root);
        cmd
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A PATH with every program of the current PATH except `hidden`.
    pub fn path_without(&self, hidden: &[&str]) -> String {
        let shadow = self.base.join(format!("path-without-{}", hidden.join("-")));
        let _ = fs::remove_dir_all(&shadow);
        fs::create_dir_all(&shadow).unwrap();
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap()) {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let link = shadow.join(&name);
                if hidden.iter().any(|h| name == *h) || link.exists() {
                    continue;
                }
                let _ = std::os::unix::fs::symlink(entry.path(), link);
            }
        }
        shadow.to_str().unwrap().to_string()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        let skip = ["target", "dist", ".git", "vendor"]
            .iter()
            .any(|s| name == *s);
        if skip {
            continue;
        }
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else if kind.is_file() {
            fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// A finished xtask run.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "xtask failed:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
    pub fn failed(self) -> Run {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "xtask should have failed:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// sha256 of a file, by coreutils' sha256sum.
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// An ELF file's machine (e_machine) and whether it has a program interpreter or dynamic section.
pub struct Elf {
    pub machine: u16,
    pub is_64: bool,
    pub dynamic: bool,
}

pub fn elf(path: &Path) -> Elf {
    let b = fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{} is no ELF file", path.display());
    assert_eq!(b[5], 1, "little-endian expected");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let is_64 = b[4] == 2;
    assert!(is_64, "64-bit ELF expected");
    let (phoff, phentsize, phnum) = (
        u64_at(32) as usize,
        u16_at(54) as usize,
        u16_at(56) as usize,
    );
    let dynamic = (0..phnum).any(|i| matches!(u32_at(phoff + i * phentsize), 2 | 3)); // PT_DYNAMIC, PT_INTERP
    Elf {
        machine: u16_at(18),
        is_64,
        dynamic,
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
