//! Test support: a throwaway copy of the workspace as a git repository with one commit (at a path
//! with a space, non-ASCII characters, `#`, `%` and `'`), the real xtask binary run in it, a PATH
//! that hides chosen tools, and image checks. Facts come from the crate itself (`xtask::project`).
#![allow(dead_code)]

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, MutexGuard,
    },
    time::Duration,
};

#[allow(unused_imports)]
pub use xtask::{infra::http, project};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The test copies' one commit: its time is what the images must say they were created at.
pub const COMMIT_EPOCH: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
pub const COMMIT_TIME: &str = "2026-01-01T00:00:00Z";

/// The real workspace (the tests' source).
pub fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub struct Workspace {
    /// Holds the copy; removed on drop.
    pub base: PathBuf,
    pub root: PathBuf,
}

impl Workspace {
    /// A copy of the tracked project files (no target/, dist/, vendor/, .git), committed.
    pub fn copy() -> Workspace {
        let ws = Workspace::empty();
        copy_tree(&source_root(), &ws.root);
        ws.git(&["init", "-q"]);
        ws.git(&["add", "-A"]);
        ws.commit("test");
        ws
    }

    /// A second checkout of this one's commit (`git clone`), at another path.
    pub fn clone_of(other: &Workspace) -> Workspace {
        let ws = Workspace::empty();
        fs::remove_dir_all(&ws.root).unwrap();
        let out = Command::new("git")
            .args(["clone", "-q"])
            .arg(&other.root)
            .arg(&ws.root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git clone: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ws
    }

    fn empty() -> Workspace {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let base = std::env::temp_dir().join(format!("xtask-it-{}-{n}", std::process::id()));
        let root = base.join("check out ü #1 %41 'q'");
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&root).unwrap();
        Workspace { base, root }
    }

    /// `git ARGS` in the copy, which must succeed; its stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(&self.root)
            .env("GIT_AUTHOR_DATE", format!("@{COMMIT_EPOCH} +0000"))
            .env("GIT_COMMITTER_DATE", format!("@{COMMIT_EPOCH} +0000"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn commit(&self, message: &str) {
        self.git(&["commit", "-qam", message, "--allow-empty"]);
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
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
        if ["target", "dist", ".git", "vendor"]
            .iter()
            .any(|s| name == *s)
        {
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

/// Puts the fixture app `name` (`xtask/tests/apps/NAME`: its go-app/, and its app.json or none)
/// in place of the demo in `ws`, committed.
pub fn put_app(ws: &Workspace, name: &str) {
    let fixture = source_root().join("xtask/tests/apps").join(name);
    fs::remove_dir_all(ws.path("go-app")).unwrap();
    fs::remove_file(ws.path("app.json")).unwrap();
    copy_tree(&fixture.join("go-app"), &ws.path("go-app"));
    if fixture.join("app.json").is_file() {
        fs::copy(fixture.join("app.json"), ws.path("app.json")).unwrap();
    }
    ws.git(&["add", "-A"]);
    ws.commit(&format!("the {name} app"));
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
    /// The image ID the summary printed.
    pub fn image_id(&self) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("image ID "))
            .unwrap_or_else(|| panic!("no image ID in:\n{}", self.stdout))
            .to_string()
    }
}

/// Starts the xtask in its own process group; its output lines (stdout and stderr) on a channel.
pub fn spawn(
    ws: &Workspace,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, mpsc::Receiver<String>) {
    use std::os::unix::process::CommandExt;
    let mut cmd = ws.command(args);
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
    let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
    for stream in [stdout, stderr] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

/// Waits for an output line containing `marker`; returns what was read.
pub fn wait_for(rx: &mpsc::Receiver<String>, marker: &str) -> String {
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(marker) {
                    return seen;
                }
            }
            Err(_) => panic!("`{marker}` never came; read:\n{seen}"),
        }
    }
}

/// Ctrl-C as a terminal sends it: SIGINT to the whole process group.
pub fn ctrl_c(child: &Child) {
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
}

/// A signal to the xtask's whole process group.
pub fn signal_group(child: &Child, signal: i32) {
    unsafe { libc::kill(-(child.id() as i32), signal) };
}

/// A signal to the xtask alone (CI cancelling a job, `timeout`): its children get nothing.
pub fn signal_alone(child: &Child, signal: i32) {
    unsafe { libc::kill(child.id() as i32, signal) };
}

pub fn rest(rx: mpsc::Receiver<String>) -> String {
    rx.iter().collect::<Vec<_>>().join("\n")
}

/// sha256 of a file.
pub fn sha256(path: &Path) -> String {
    xtask::infra::fsx::sha256_hex(&fs::read(path).unwrap())
}

/// An ELF file's machine (e_machine) and whether it has a program interpreter or dynamic section.
pub struct Elf {
    pub machine: u16,
    pub dynamic: bool,
}

pub fn elf(path: &Path) -> Elf {
    let b = fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{} is no ELF file", path.display());
    assert_eq!((b[4], b[5]), (2, 1), "64-bit little-endian ELF expected");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (
        u64_at(32) as usize,
        u16_at(54) as usize,
        u16_at(56) as usize,
    );
    let dynamic = (0..phnum).any(|i| matches!(u32_at(phoff + i * phentsize), 2 | 3)); // PT_DYNAMIC, PT_INTERP
    Elf {
        machine: u16_at(18),
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

/// A test's hold on the host's engine (and on this process's engine tests): `clean` and the
/// image-list checks see the whole engine.
pub struct EngineGuard {
    _host: HostEngine,
    _process: MutexGuard<'static, ()>,
}

/// Docker tests run one at a time: one per test process, and one on the host's engine across
/// the test processes (`cargo xtask ci` runs the private-engine tests beside the others).
pub fn engine() -> EngineGuard {
    let process = private_engines();
    EngineGuard {
        _host: host_engine(),
        _process: process,
    }
}

/// One test of this process at a time, on engines of its own: their load, and the second user,
/// one test at a time. Take `host_engine` too, for as long as the host's engine is used.
pub fn private_engines() -> MutexGuard<'static, ()> {
    ENGINE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host's engine, held across test processes until dropped.
pub struct HostEngine(fs::File);

pub fn host_engine() -> HostEngine {
    use std::os::fd::AsRawFd;
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(project::TESTS_HOST_ENGINE_LOCK);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: flock(2) on a descriptor we own; released when the file is closed (on drop).
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(locked, 0, "flock {}", path.display());
    HostEngine(file)
}

/// A workspace copy for a test that uses the engine: holds the engine for the test's duration,
/// and on drop (after a failed assertion too) runs `clean`, so that no image of the test is left.
pub struct DockerWorkspace {
    pub ws: Workspace,
    /// The test's own image tag.
    pub tag: String,
    _engine: EngineGuard,
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

/// `docker build` on the engine at `host` (None: the default one) of a Dockerfile given as text
/// (no context), tagged `tag` (None: untagged, as a rebuild leaves an image): the image's ID.
pub fn build_text(
    host: Option<&str>,
    buildkit: bool,
    dockerfile: &str,
    tag: Option<&str>,
    extra: &[&str],
) -> String {
    let iid = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("docker");
    cmd.args(["build", "-q", "--iidfile"])
        .arg(iid.path())
        .args(tag.map(|t| ["-t", t]).into_iter().flatten())
        .args(extra)
        .arg("-")
        .env("DOCKER_BUILDKIT", if buildkit { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(host) = host {
        cmd.env("DOCKER_HOST", host);
    }
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), dockerfile.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker build {tag:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Podman writes the bare hex.
    let hex = fs::read_to_string(iid.path()).unwrap();
    format!("sha256:{}", hex.trim().trim_start_matches("sha256:"))
}

/// The arguments of a cold legacy build of the image `tag` (slow enough to stop in its steps).
pub fn cold_legacy_build(tag: &str) -> [&str; 7] {
    [
        "image",
        "--offline",
        "--no-cache",
        "--builder",
        "legacy",
        "--tag",
        tag,
    ]
}

/// Images of a test's own making on the host's engine, removed when dropped (after a failed
/// assertion too).
pub struct RemovedOnDrop(pub Vec<String>);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = Command::new("docker")
                .args(["image", "rm"])
                .args(&self.0)
                .output();
        }
    }
}

/// `docker ARGS`, which must succeed; its trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    docker_at(None, args)
}

/// `docker ARGS` on the engine at `host` (None: the default one).
pub fn docker_at(host: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    if let Some(host) = host {
        cmd.env("DOCKER_HOST", host);
    }
    let out = cmd.output().expect("docker");
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
        .base
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    format!("{n}:latest")
}

/// An image's label.
pub fn label(image: &str, key: &str) -> String {
    docker(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
        image,
    ])
}

/// The filter for every image of the project.
pub fn project_label() -> String {
    format!("label={}={}", project::LABEL_PROJECT, project::TOOL)
}

/// Every dangling image on the engine at `host` (None: the default one), by full ID.
pub fn all_dangling(host: Option<&str>) -> BTreeSet<String> {
    let filter = [
        "image",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        "dangling=true",
    ];
    lines(&docker_at(host, &filter))
}

/// Dangling images of the project on the engine at `host` (None: the default one).
pub fn dangling(host: Option<&str>) -> BTreeSet<String> {
    lines(&docker_at(
        host,
        &[
            "image",
            "ls",
            "-q",
            "--filter",
            "dangling=true",
            "--filter",
            &project_label(),
        ],
    ))
}

/// The filter for the xtask's temporary containers, whatever checkout made them.
pub fn temp_label() -> String {
    format!("label={}", project::LABEL_TEMP)
}

/// The xtask's temporary containers.
pub fn temp_containers(host: Option<&str>) -> BTreeSet<String> {
    lines(&docker_at(
        host,
        &["ps", "-a", "-q", "--filter", &temp_label()],
    ))
}

/// What `docker export` of the image shows: "mode uid/gid size path" per entry, less what the
/// engine adds to every container.
pub fn export_listing(host: Option<&str>, image: &str) -> Vec<String> {
    let id = docker_at(host, &["create", image]);
    let mut cmd = Command::new("docker");
    cmd.args(["export", &id]);
    if let Some(h) = host {
        cmd.env("DOCKER_HOST", h);
    }
    let tar = cmd.output().unwrap().stdout;
    docker_at(host, &["rm", "-f", &id]);
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
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let e = entry.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if path.is_empty() || runtime.iter().any(|r| path == *r || path.starts_with(r)) {
            continue;
        }
        let h = e.header();
        out.push(format!(
            "{:o} {}/{} {} {path}",
            h.mode().unwrap() & 0o7777,
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.size().unwrap()
        ));
    }
    out
}

/// sha256 of a file inside an image.
pub fn file_sha_in(host: Option<&str>, image: &str, path: &str) -> String {
    let id = docker_at(host, &["create", image]);
    let mut cmd = Command::new("docker");
    cmd.args(["cp", &format!("{id}:{path}"), "-"]);
    if let Some(h) = host {
        cmd.env("DOCKER_HOST", h);
    }
    let tar = cmd.output().unwrap().stdout;
    docker_at(host, &["rm", "-f", &id]);
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
    xtask::infra::fsx::sha256_hex(&bytes)
}

/// Runs `cmd` in a mount namespace of its own where each of `dirs` is covered by an empty tmpfs
/// (root only): a tool is hidden without touching the system, or a directory made another
/// filesystem. The command's environment and working directory are kept.
pub fn with_tmpfs_over(dirs: &[&Path], cmd: &Command) -> Run {
    let mut script = String::new();
    for (i, _) in dirs.iter().enumerate() {
        script += &format!(
            "mkdir -p \"${}\" && mount -t tmpfs tmpfs \"${}\" && ",
            i + 1,
            i + 1
        );
    }
    script += &format!("shift {} && exec \"$@\"", dirs.len());
    let mut wrapped = Command::new("unshare");
    wrapped.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ]);
    wrapped.args(dirs);
    wrapped.arg(cmd.get_program()).args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    Run::from(wrapped.output().expect("unshare"))
}

/// Where Debian's Go lives (hidden, with `go` off PATH, for the no-Go cases).
pub fn go_root() -> PathBuf {
    Path::new(project::GO_BIN)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Debian's `docker-registry` on a free loopback port, its storage in a temporary directory;
/// stopped on drop.
pub struct Registry {
    pub addr: String,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// With `htpasswd`: a registry that asks for credentials (basic auth over the file's users).
    pub fn start_with(htpasswd: Option<&Path>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        let auth = htpasswd
            .map(|f| {
                format!(
                    "auth:\n  htpasswd:\n    realm: xtask-test\n    path: {}\n",
                    f.display()
                )
            })
            .unwrap_or_default();
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut registry = Registry {
            addr,
            dir,
            child: None,
        };
        registry.restart();
        registry
    }

    /// Stops the registry (its storage stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same address with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("docker-registry")
            .args(["serve"])
            .arg(self.dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (cargo xtask ci installs it)");
        self.child = Some(child);
        let addr = &self.addr;
        let up = (0..100).any(|_| {
            let ok = http::get(addr, "/v2/").is_ok_and(|(code, _)| code == 200 || code == 401);
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            ok
        });
        assert!(up, "the registry did not come up on {addr}");
    }
}

impl Registry {
    /// The registry's process, to kill from elsewhere (a tool's shim).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the registry runs").id()
    }

    /// How many blobs the registry stores.
    pub fn blob_count(&self) -> usize {
        let blobs = self.dir.path().join("data/docker/registry/v2/blobs/sha256");
        fs::read_dir(blobs)
            .map(|d| {
                d.flatten()
                    .flat_map(|p| fs::read_dir(p.path()).into_iter().flatten())
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The engines the tests start, each in mount and network namespaces of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The host's Docker 20.10, classic (graphdriver) image store.
    Classic,
    /// trixie's Docker 26 (unpacked by `cargo xtask ci`), containerd image store.
    Containerd,
    /// bookworm's Podman, serving the Docker API.
    Podman,
}

/// A test engine: with its own data root, exec root and socket, in mount and network namespaces of
/// its own with a tmpfs over /tmp, so that it cannot see the workspace (the test copies live in
/// /tmp). Its socket belongs to the docker group (the second user's tests reach it). Stopped and
/// removed on drop.
pub struct RemoteEngine {
    dir: PathBuf,
    pub host: String,
    pub kind: Kind,
    child: std::process::Child,
}

impl RemoteEngine {
    /// The second classic engine.
    pub fn start() -> RemoteEngine {
        RemoteEngine::start_kind(Kind::Classic)
    }

    pub fn start_kind(kind: Kind) -> RemoteEngine {
        // Short paths: containerd's sockets live under the exec root (108-byte limit).
        let dir = PathBuf::from(format!(
            "/var/tmp/xr-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let d = dir.to_str().unwrap();
        let dockerd = |extra: &str| {
            format!(
                "exec dockerd -G docker {extra} --data-root {d}/data --exec-root {d}/exec \
                 --pidfile {d}/dockerd.pid -H unix://{d}/docker.sock >{d}/engine.log 2>&1"
            )
        };
        let (serve, socket) = match kind {
            Kind::Classic => (dockerd(""), format!("{d}/docker.sock")),
            Kind::Containerd => {
                let root = project::TEST_DOCKER_ROOT;
                assert!(
                    Path::new(root).join("usr/sbin/dockerd").exists(),
                    "no {root}: `cargo xtask ci` unpacks trixie's Docker there"
                );
                fs::write(
                    dir.join("daemon.json"),
                    r#"{"features":{"containerd-snapshotter":true}}"#,
                )
                .unwrap();
                let config = format!("--config-file {d}/daemon.json");
                (
                    format!(
                        "export PATH={root}/usr/sbin:{root}/usr/bin:$PATH && {}",
                        dockerd(&config)
                    ),
                    format!("{d}/docker.sock"),
                )
            }
            Kind::Podman => {
                // This sandbox's root cannot raise nofile to Podman's default; no systemd here.
                fs::write(
                    dir.join("containers.conf"),
                    "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                     [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
                )
                .unwrap();
                fs::write(
                    dir.join("storage.conf"),
                    format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/run\"\n"),
                )
                .unwrap();
                (
                    format!(
                        "mkdir -p {d}/tmp && export CONTAINERS_CONF={d}/containers.conf \
                         CONTAINERS_STORAGE_CONF={d}/storage.conf && exec podman --root {d}/root \
                         --runroot {d}/run --tmpdir {d}/tmp system service --time=0 \
                         unix://{d}/podman.sock >{d}/engine.log 2>&1"
                    ),
                    format!("{d}/podman.sock"),
                )
            }
        };
        let script = format!("mount -t tmpfs tmpfs /tmp && ip link set lo up && {serve}");
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("unshare");
        let host = format!("unix://{socket}");
        let engine = RemoteEngine {
            dir,
            host,
            kind,
            child,
        };
        let up = (0..300).any(|_| {
            let ok = engine
                .docker(&["version", "--format", "{{.Server.APIVersion}}"])
                .status
                .success();
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            ok
        });
        let log = fs::read_to_string(engine.dir.join("engine.log")).unwrap_or_default();
        assert!(up, "the {kind:?} engine did not come up:\n{log}");
        engine
    }

    /// The engine's process (to stop and continue it).
    pub fn pid(&self) -> u32 {
        fs::read_to_string(self.dir.join("dockerd.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| self.child.id())
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .output()
            .unwrap()
    }

    /// The xtask in `ws` against this engine, offline.
    pub fn xtask(&self, ws: &Workspace, args: &[&str]) -> Run {
        let mut all = vec!["--offline"];
        all.extend_from_slice(args);
        ws.xtask_env(&all, &[("DOCKER_HOST", self.host.as_str())])
    }

    /// The ID of the image `reference` names here, if any.
    pub fn image_id(&self, reference: &str) -> Option<String> {
        let out = self.docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Copies an image from the local engine (the remote one cannot pull either).
    pub fn load(&self, image: &str) {
        let save = Command::new("docker")
            .args(["save", image])
            .output()
            .unwrap();
        assert!(save.status.success());
        let mut load = Command::new("docker")
            .args(["load", "-q"])
            .env("DOCKER_HOST", &self.host)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(load.stdin.as_mut().unwrap(), &save.stdout).unwrap();
        drop(load.stdin.take());
        assert!(
            load.wait().unwrap().success(),
            "loading {image} into the remote engine"
        );
    }
}

impl Drop for RemoteEngine {
    fn drop(&mut self) {
        // dockerd writes its pidfile; Podman's service is the shell's exec'd child.
        match fs::read_to_string(self.dir.join("dockerd.pid")) {
            Ok(pid) => {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
            Err(_) => {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Every strategy with the builders it takes: `direct` (no builder), then the Dockerfile ones on
/// both builders.
pub fn strategies() -> Vec<(&'static str, Option<&'static str>)> {
    let mut cases: Vec<(&str, Option<&str>)> = vec![("direct", None)];
    for builder in ["buildkit", "legacy"] {
        for strategy in ["multistage", "handoff", "single"] {
            cases.push((strategy, Some(builder)));
        }
    }
    cases
}

/// JSON bytes (a file the xtask or a tool wrote), parsed.
pub fn json(bytes: &[u8]) -> jzon::JsonValue {
    jzon::parse(std::str::from_utf8(bytes).expect("JSON is UTF-8")).expect("valid JSON")
}
