//! Test support: a throwaway copy of the workspace (at a path with a space and non-ASCII
//! characters), the real xtask binary run in it, a PATH that hides chosen tools, and file checks.
#![allow(dead_code)]

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, MutexGuard,
    },
};

#[path = "../../src/http.rs"]
pub mod http;
#[path = "../../src/project.rs"]
pub mod project;

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

static ENGINE: Mutex<()> = Mutex::new(());

/// Docker tests run one at a time: `clean` and the image-list checks see the whole engine.
pub fn engine() -> MutexGuard<'static, ()> {
    ENGINE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A workspace copy for a test that uses the engine: holds the engine for the test's duration,
/// and on drop (after a failed assertion too) runs `clean`, so that no image of the test is left.
pub struct DockerWorkspace {
    pub ws: Workspace,
    /// The test's own image tag.
    pub tag: String,
    _engine: MutexGuard<'static, ()>,
}

impl DockerWorkspace {
    pub fn new() -> DockerWorkspace {
        let engine = engine();
        let ws = Workspace::copy();
        let tag = tag(&ws);
        DockerWorkspace {
            ws,
            tag,
            _engine: engine,
        }
    }
}

impl std::ops::Deref for DockerWorkspace {
    type Target = Workspace;
    fn deref(&self) -> &Workspace {
        &self.ws
    }
}

impl Drop for DockerWorkspace {
    fn drop(&mut self) {
        let _ = self.ws.xtask(&["clean"]);
    }
}

/// `docker ARGS`, which must succeed; its trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn lines(s: &str) -> BTreeSet<String> {
    s.lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// A tag of the test's own, from the workspace copy's unique directory name.
pub fn tag(ws: &Workspace) -> String {
    let n = ws
        .root
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    format!("xtask-test-{n}:latest")
}

/// The filter for this checkout's images and containers (the xtask's own `checkout_id`).
pub fn checkout_label(ws: &Workspace) -> String {
    let root = camino::Utf8PathBuf::try_from(ws.root.clone()).unwrap();
    format!(
        "label={}={}",
        project::LABEL_CHECKOUT,
        project::Paths { root }.checkout_id()
    )
}

/// An image's labels, as JSON.
pub fn labels_json(image: &str) -> String {
    docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        image,
    ])
}

/// The filter for every image of the project, whatever the checkout.
pub fn project_label() -> String {
    format!("label={}={}", project::LABEL_PROJECT, project::APP)
}

/// Dangling images that match `label_filter`, on the engine `docker_host` names (None: the
/// default one).
pub fn dangling(docker_host: Option<&str>, label_filter: &str) -> BTreeSet<String> {
    let mut cmd = Command::new("docker");
    cmd.args([
        "image",
        "ls",
        "-q",
        "--filter",
        "dangling=true",
        "--filter",
        label_filter,
    ]);
    if let Some(host) = docker_host {
        cmd.env("DOCKER_HOST", host);
    }
    let out = cmd.output().expect("docker");
    assert!(
        out.status.success(),
        "listing dangling images: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines(&String::from_utf8_lossy(&out.stdout))
}

/// Containers of this checkout, running or not.
pub fn our_containers(ws: &Workspace) -> BTreeSet<String> {
    lines(&docker(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &checkout_label(ws),
    ]))
}

/// The image's file list (what `docker export` shows, less what the engine adds to every container).
pub fn files_in(image: &str) -> BTreeSet<String> {
    let id = docker(&["create", image]);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {id} | tar -t"))
        .output()
        .unwrap();
    docker(&["rm", "-f", &id]);
    let runtime = [
        ".dockerenv",
        "dev/",
        "proc/",
        "sys/",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
        "etc/mtab",
    ];
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .filter(|l| {
            !l.is_empty()
                && !l.ends_with('/')
                && !runtime.iter().any(|r| l == r || l.starts_with(r))
        })
        .collect()
}

pub fn binary_sha_in(image: &str, path: &str, ws: &Workspace) -> String {
    let id = docker(&["create", image]);
    let out = ws.path("target/from-image");
    docker(&["cp", &format!("{id}:{path}"), out.to_str().unwrap()]);
    docker(&["rm", "-f", &id]);
    sha256(&out)
}
