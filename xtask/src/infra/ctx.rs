//! `Ctx`: the one door to processes and to files that change something. It runs a `Cmd`
//! (`process`) in one of a few verbs: `run` (a change: echoed, skipped by `--dry-run`), `read` (a
//! query: quiet, runs in every mode, within a bound), `cleanup` (undoes something of ours: runs
//! after a signal too) and `start` (any of them in the background: a `Running`, waited for later,
//! stopped when dropped unwaited). It stops on SIGINT, SIGTERM or SIGHUP: the signal is forwarded
//! to the running child, later changes are refused, clean-ups (and the queries they need) still
//! run. No other module checks `--dry-run` or starts a process; `request` sends the engine's API
//! requests by the same rules.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use crate::{
    infra::{
        engine_api::{Api, Pending, Request, Upload},
        process::{text, Cmd, Kind, Running, Stdout},
        signals,
    },
    project::Paths,
};

/// The flags every command takes.
#[derive(Debug, Default, Clone)]
pub struct Global {
    pub dry_run: bool,
    pub no_setup: bool,
    pub offline: bool,
    pub app: Option<String>,
}

pub struct Ctx {
    pub paths: Paths,
    /// `--no-setup`: install nothing; a missing tool is an error.
    pub no_setup: bool,
    /// `--offline`: never reach GitHub or a registry.
    pub offline: bool,
    /// `--app NAME`: of the images app.json's `images` makes, only this one.
    pub app: Option<String>,
    dry_run: bool,
    /// Set for every command this context runs (`with_env`).
    env: Vec<(String, String)>,
    /// Hosts that did not answer in this run: asked once, not on every step.
    unreachable: RefCell<BTreeSet<String>>,
    /// What this context resolved once for the whole run (`remember`): where the engine is.
    resolved: RefCell<BTreeMap<&'static str, String>>,
}

/// How long a query may take (`Cmd::within` sets others).
const QUERY_ANSWER: Duration = Duration::from_secs(120);

impl Ctx {
    pub fn new(global: Global, paths: Paths) -> Result<Ctx> {
        Ok(Ctx {
            paths,
            no_setup: global.no_setup,
            offline: global.offline,
            app: global.app,
            dry_run: global.dry_run,
            env: Vec::new(),
            unreachable: RefCell::default(),
            resolved: RefCell::default(),
        })
    }

    /// This context, with `key=value` set for every command it runs (the bench's second engine:
    /// `DOCKER_HOST`), and seen by `var`.
    pub fn with_env(&self, key: &str, value: &str) -> Ctx {
        let mut env = self.env.clone();
        env.push((key.to_string(), value.to_string()));
        Ctx {
            paths: self.paths.clone(),
            no_setup: self.no_setup,
            offline: self.offline,
            app: self.app.clone(),
            dry_run: self.dry_run,
            env,
            unreachable: self.unreachable.clone(),
            // Another environment may mean another engine.
            resolved: RefCell::default(),
        }
    }

    /// `what`, as `resolve` finds it the first time this context asks, for the rest of the run
    /// (where the engine is does not change under a running xtask).
    pub fn remember(&self, what: &'static str, resolve: impl FnOnce() -> String) -> String {
        if let Some(known) = self.resolved.borrow().get(what) {
            return known.clone();
        }
        let value = resolve();
        self.resolved.borrow_mut().insert(what, value.clone());
        value
    }

    /// An environment variable as this context's commands see it.
    pub fn var(&self, key: &str) -> Option<String> {
        match self.env.iter().rev().find(|(k, _)| k == key) {
            Some((_, v)) => Some(v.clone()),
            None => std::env::var(key).ok(),
        }
    }

    /// Runs a change and waits for it: its standard output when `Cmd::kept`, else empty.
    pub fn run(&self, cmd: Cmd) -> Result<String> {
        self.start(cmd)?.wait().map(text)
    }

    /// A query: its trimmed standard output; a failure is a `ProcessError`.
    pub fn read(&self, cmd: Cmd) -> Result<String> {
        self.start(cmd.as_query())?.wait().map(text)
    }

    /// A query whose failure only means "no answer" (an image that is not there).
    pub fn try_read(&self, cmd: Cmd) -> Option<String> {
        self.read(cmd).ok().filter(|s| !s.is_empty())
    }

    /// Removes something of ours: runs after a signal too, and is not stopped by one.
    pub fn cleanup(&self, cmd: Cmd) -> Result<()> {
        self.start(cmd.as_cleanup())?.wait().map(drop)
    }

    /// Starts `cmd` in the background, as its kind says (a change unless `Cmd::as_query`,
    /// `as_cleanup` or `fed`): `wait` for its end.
    pub fn start(&self, cmd: Cmd) -> Result<Running> {
        let cmd = self.env.iter().fold(cmd, |cmd, (k, v)| cmd.env(k, v));
        let (kind, stdout) = (cmd.kind, cmd.stdout);
        // A query always has a bounded wait: a stuck engine is an error, not a hang.
        let timeout = match kind {
            Kind::Query => Some(cmd.timeout.unwrap_or(QUERY_ANSWER)),
            _ => cmd.timeout,
        };
        let shown = cmd.shown();
        let mut running = Running {
            shown: shown.clone(),
            program: cmd.program(),
            args: cmd.arguments(),
            handle: None,
            stoppable: !matches!(kind, Kind::Cleanup | Kind::Fed | Kind::Whole),
            deadline: timeout.map(|t| (Instant::now() + t, t)),
            // What shows no output of its own says, once, that it is still waited for.
            notice: stdout != Stdout::Shown,
            started: Instant::now(),
        };
        let changes = matches!(kind, Kind::Change | Kind::Fed | Kind::Whole);
        if kind != Kind::Query && self.dry_run {
            println!("[dry-run] {shown}");
            return Ok(running);
        }
        // After a signal no new change starts; clean-up, and the queries it needs, still run.
        if changes {
            self.check_signal(&shown)?;
        }
        // A signal that comes while this command runs stops it (not a clean-up).
        running.stoppable &= signals::received().is_none();
        if kind != Kind::Query {
            eprintln!("$ {shown}");
        }
        // Children never read the terminal (a prompt would hang CI); a command's own input (bytes
        // fed to `docker load`) wins over this outer one.
        let dies_with_xtask = cmd.dies_with_xtask;
        let program = cmd.program();
        let mut expr = cmd.expression(&self.paths.root).stdin_null().unchecked();
        if dies_with_xtask {
            let xtask = std::process::id();
            expr = expr.before_spawn(move |command| {
                // SAFETY: the closure runs in the child between fork and exec, and calls only
                // prctl(2), getppid(2) and _exit(2), which are async-signal-safe; it allocates
                // nothing. PR_SET_PDEATHSIG has the kernel kill the child when its parent goes;
                // a parent that went before it was set is caught by getppid.
                unsafe {
                    std::os::unix::process::CommandExt::pre_exec(command, move || {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        if libc::getppid() as u32 != xtask {
                            libc::_exit(1);
                        }
                        Ok(())
                    });
                }
                Ok(())
            });
        }
        if !running.stoppable {
            expr = expr.before_spawn(|command| {
                std::os::unix::process::CommandExt::process_group(command, 0);
                Ok(())
            });
        }
        expr = match stdout {
            Stdout::Shown => expr,
            Stdout::Quiet => expr.stdout_null(),
            Stdout::Kept => expr.stdout_capture(),
        };
        // Kept output goes into the error; so does a clean-up's reason (an image that stays).
        if stdout == Stdout::Kept || kind == Kind::Cleanup {
            expr = expr.stderr_capture();
        }
        running.handle = Some(
            expr.start()
                .with_context(|| format!("starting `{shown}`{}", where_found(&program)))?,
        );
        Ok(running)
    }

    /// A request to the engine's API (`engine_api`), as its kind says: a change is echoed as the
    /// `docker` command it stands for, skipped by `--dry-run` (an empty answer) and refused after
    /// a signal; a query runs in every mode. The answer's body, within `timeout`.
    pub fn request(&self, api: &Api, request: Request, timeout: Duration) -> Result<Vec<u8>> {
        if !self.announce_request(&request)? {
            return Ok(Vec::new());
        }
        api.send(request, timeout)
    }

    /// A request whose body is sent as it is made (`Api::upload`), as `request` does: None under
    /// `--dry-run`.
    pub fn upload(&self, api: &Api, request: Request) -> Result<Option<(Upload, Pending)>> {
        if !self.announce_request(&request)? {
            return Ok(None);
        }
        api.upload(request).map(Some)
    }

    /// Echoes a change (`--dry-run`: says it instead, and false); refuses one after a signal.
    fn announce_request(&self, request: &Request) -> Result<bool> {
        if request.kind != Kind::Query {
            if self.dry_run {
                println!("[dry-run] {}", request.shown);
                return Ok(false);
            }
            if matches!(request.kind, Kind::Change | Kind::Fed | Kind::Whole) {
                self.check_signal(&request.shown)?;
            }
            eprintln!("$ {}", request.shown);
        }
        Ok(true)
    }

    /// Changes files (or anything else done in-process): under `--dry-run` only says what it
    /// would do. `None` when it did not run.
    pub fn change<T>(
        &self,
        what: impl AsRef<str>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<Option<T>> {
        if !self.dry_run {
            self.check_signal(what.as_ref())?;
        }
        self.note(what, f)
    }

    /// `change` for the bookkeeping of what was done (the record of the images built): done
    /// after a signal too, so that what exists is on record.
    pub fn note<T>(
        &self,
        what: impl AsRef<str>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<Option<T>> {
        if self.dry_run {
            println!("[dry-run] {}", what.as_ref());
            return Ok(None);
        }
        f().map(Some)
    }

    /// Work that only makes sense after a real run (a summary of what was built).
    pub fn after_real_run(&self, f: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.dry_run {
            return Ok(());
        }
        f()
    }

    /// Starts a daemon in its own process group (a terminal's Ctrl-C does not stop it), its
    /// output appended to `log`.
    pub fn start_daemon(&self, cmd: Cmd, log: &Utf8Path) -> Result<()> {
        let shown = cmd.shown();
        self.change(format!("{shown} >{log} 2>&1 &"), || {
            eprintln!("$ {shown} >{log} 2>&1 &");
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .with_context(|| format!("opening {log}"))?;
            cmd.expression(&self.paths.root)
                .stdin_null()
                .stdout_file(log.try_clone()?)
                .stderr_file(log)
                .unchecked()
                .before_spawn(|command| {
                    std::os::unix::process::CommandExt::process_group(command, 0);
                    Ok(())
                })
                .start()
                .with_context(|| format!("starting `{shown}`"))?;
            Ok(())
        })
        .map(drop)
    }

    /// Fails when a signal came: no new work starts after one.
    pub fn check_signal(&self, before: &str) -> Result<()> {
        if let Some(signal) = signals::received() {
            bail!("stopped by {} before `{before}`", signals::name(signal));
        }
        Ok(())
    }

    /// Whether a signal came (a loop that waits for something else asks).
    pub fn signalled(&self) -> bool {
        signals::received().is_some()
    }

    /// The signal that came ended the command as asked: it ends as a success, and what the command
    /// still does (its clean-up) runs as changes do (`dev`).
    pub fn stopped_as_asked(&self) {
        signals::acknowledge();
    }

    /// Remembers that `host` did not answer in this run.
    pub fn mark_unreachable(&self, host: &str) {
        self.unreachable.borrow_mut().insert(host.to_string());
    }

    pub fn is_unreachable(&self, host: &str) -> bool {
        self.unreachable.borrow().contains(host)
    }

    /// One line that says what the xtask decided, and why.
    pub fn announce(&self, msg: impl AsRef<str>) {
        eprintln!("--> {}", msg.as_ref());
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("warning: {}", msg.as_ref());
    }

    /// Runs `f` as a named step: prints the step, then how long it took.
    pub fn step<T>(&self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.begin(name).end(f())
    }

    /// A step whose work is spread out (a build in the background): printed now, ended by `end`.
    pub fn begin(&self, name: &str) -> Step {
        eprintln!("==> {name}");
        Step {
            name: name.to_string(),
            started: Instant::now(),
        }
    }

    /// Holds the checkout's lock until dropped, so that two xtasks never build into one `dist/`.
    pub fn lock(&self) -> Result<std::fs::File> {
        let what = "another cargo xtask is building in this checkout";
        self.lock_at(&self.paths.lock_file(), what)
    }

    /// An exclusive hold on the file at `path` (made if missing), waited for (saying `held_by`
    /// once) until a signal; released when the file is dropped.
    pub fn lock_at(&self, path: &Utf8Path, held_by: &str) -> Result<std::fs::File> {
        let dir = path.parent().context("a lock file needs a directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {path}"))?;
        let mut announced = false;
        loop {
            // SAFETY: flock(2) on a descriptor we own; released when the file is closed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(file);
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err).with_context(|| format!("locking {path}"));
            }
            if !announced {
                self.announce(format!("{held_by}: waiting for {path}"));
                announced = true;
            }
            // Polled, so that a signal stops the wait.
            self.check_signal(&format!("waiting for {path}"))?;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A step under way (`Ctx::begin`).
pub struct Step {
    name: String,
    started: Instant,
}

impl Step {
    /// Prints how the step ended and how long it took; passes `result` on.
    pub fn end<T>(self, result: Result<T>) -> Result<T> {
        let verdict = if result.is_ok() { "done" } else { "FAILED" };
        let took = secs(self.started.elapsed());
        eprintln!("    {}: {verdict} in {took}", self.name);
        result
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// 4_712_345 → "4.71 MB" (decimal units, as `docker images` shows them).
pub fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// Where PATH finds `program`, for an error that starting it gave: a file that is there but
/// cannot run (a broken symlink, a missing interpreter) says only "No such file or directory".
fn where_found(program: &str) -> String {
    match which::which(program) {
        Ok(path) => format!(
            " ({} is found there; a missing interpreter or library, or a broken link, stops it)",
            path.display()
        ),
        Err(_) => format!(" (`{program}` is not on PATH, or not a file that can run)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_remembered_is_resolved_once_per_context() {
        let ctx = Ctx::new(Global::default(), Paths::discover().unwrap()).unwrap();
        let asked = std::cell::Cell::new(0);
        let resolve = || {
            asked.set(asked.get() + 1);
            "unix:///a".to_string()
        };
        assert_eq!(ctx.remember("x", resolve), "unix:///a");
        assert_eq!(ctx.remember("x", resolve), "unix:///a");
        assert_eq!(asked.get(), 1);
        // Another environment may mean another engine: asked again.
        ctx.with_env("DOCKER_HOST", "unix:///b")
            .remember("x", resolve);
        assert_eq!(asked.get(), 2);
    }

    #[test]
    fn a_program_that_cannot_start_is_named_with_its_path() {
        let ctx = Ctx::new(Global::default(), Paths::discover().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let broken = camino::Utf8Path::from_path(dir.path())
            .unwrap()
            .join("docker");
        std::fs::write(&broken, "#!/nonexistent/sh\n").unwrap();
        std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let e = ctx.read(crate::cmd!("{broken} version")).unwrap_err();
        let said = format!("{e:#}");
        assert!(said.contains(&format!("{broken} is found there")), "{said}");
    }

    #[test]
    fn until_child_waits_for_the_child_or_the_end() {
        let ctx = Ctx::new(Global::default(), Paths::discover().unwrap()).unwrap();
        // Busy a while without a child, then a child named `sleep`.
        let script =
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 3 >/dev/null 2>&1 & wait";
        let parent = ctx.start(crate::cmd!("sh -c {script}").as_query()).unwrap();
        parent.until_child("sleep");
        let handle = parent.handle.as_ref().unwrap();
        assert!(
            matches!(handle.try_wait(), Ok(None)),
            "returned after the end"
        );
        // No such child: back (at the latest once the command has ended), never stuck.
        let done = ctx.start(crate::cmd!("true").as_query()).unwrap();
        done.until_child("link");
        done.wait().unwrap();
    }

    #[test]
    fn a_failed_command_is_a_process_error_with_its_output() {
        let ctx = Ctx::new(Global::default(), Paths::discover().unwrap()).unwrap();
        let script = "echo out; echo err >&2; exit 3";
        let e = ctx.read(crate::cmd!("sh -c {script}")).unwrap_err();
        let failed = crate::infra::process::ProcessError::of(&e).unwrap();
        assert_eq!(failed.code(), Some(3));
        assert_eq!(
            (failed.stdout_text(), failed.stderr_text()),
            ("out".into(), "err".into())
        );
    }
}
