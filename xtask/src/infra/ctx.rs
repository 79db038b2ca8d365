//! `Ctx`: the one door to processes and files that change something. It echoes each command,
//! honours `--dry-run` (prints instead of running), and stops on SIGINT, SIGTERM or SIGHUP: the
//! signal is forwarded to the running child, later changes are refused, clean-up commands (and
//! the queries they need) still run. Queries (`read`, `try_read`) run in every mode and change
//! nothing. A command can also run in the background (`start`, `start_read`: a `Running`, waited
//! for later, stopped when dropped unwaited). No other module checks `--dry-run` or starts a
//! process that changes state.

use std::{
    cell::RefCell,
    collections::BTreeSet,
    ffi::OsStr,
    os::fd::AsRawFd,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use xshell::{Cmd, Shell};

use crate::{infra::signals, project::Paths};

/// The flags every command takes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Global {
    pub dry_run: bool,
    pub no_setup: bool,
    pub offline: bool,
}

pub struct Ctx {
    pub sh: Shell,
    pub paths: Paths,
    /// `--no-setup`: install nothing; a missing tool is an error.
    pub no_setup: bool,
    /// `--offline`: never reach GitHub or a registry.
    pub offline: bool,
    dry_run: bool,
    /// Hosts that did not answer in this run: asked once, not on every step.
    unreachable: RefCell<BTreeSet<String>>,
}

/// What a child's standard output does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stdout {
    Inherit,
    Null,
    Capture,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Changes something: echoed, skipped by `--dry-run`, refused after a signal.
    Change,
    /// Undoes something of ours (a temporary container): runs after a signal too, and is let
    /// finish: in a process group of its own, out of reach of the terminal's Ctrl-C.
    Cleanup,
    /// A change that reads what the xtask writes (`docker load`): it ends when its input does,
    /// and the xtask decides when: like a clean-up, never stopped by a signal.
    Fed,
    /// Reads state: quiet, runs under `--dry-run`.
    Query,
}

impl Ctx {
    pub fn new(global: Global, paths: Paths) -> Result<Ctx> {
        let sh = Shell::new().context("starting the command shell")?;
        sh.change_dir(&paths.root);
        Ok(Ctx {
            sh,
            paths,
            no_setup: global.no_setup,
            offline: global.offline,
            dry_run: global.dry_run,
            unreachable: RefCell::default(),
        })
    }

    /// Runs a command that changes something (its output shown).
    pub fn run(&self, cmd: Cmd<'_>) -> Result<()> {
        self.exec(Kind::Change, Stdout::Inherit, None, &[], cmd)
            .map(drop)
    }

    /// `run`, its standard output dropped (`docker tag`, `docker image rm`: IDs nobody reads).
    pub fn run_quiet(&self, cmd: Cmd<'_>) -> Result<()> {
        self.exec(Kind::Change, Stdout::Null, None, &[], cmd)
            .map(drop)
    }

    /// `run` with environment variables, shown with the command.
    pub fn run_env(&self, env: &[(&str, String)], cmd: Cmd<'_>) -> Result<()> {
        self.exec(Kind::Change, Stdout::Inherit, None, env, cmd)
            .map(drop)
    }

    /// `run` with its output kept back (the bench's many builds): echoed as one line, its output
    /// shown only when it fails.
    pub fn run_captured(&self, cmd: Cmd<'_>) -> Result<()> {
        self.exec(Kind::Change, Stdout::Capture, None, &[], cmd)
            .map(drop)
    }

    /// A command that changes something and whose output the caller needs (`docker create`).
    pub fn run_read(&self, cmd: Cmd<'_>) -> Result<String> {
        self.exec(Kind::Change, Stdout::Capture, None, &[], cmd)
            .map(text)
    }

    /// Removes something of ours: runs after a signal too, and is not stopped by one.
    pub fn cleanup(&self, cmd: Cmd<'_>) -> Result<()> {
        self.exec(Kind::Cleanup, Stdout::Null, None, &[], cmd)
            .map(drop)
    }

    /// A query: its trimmed standard output; on failure, an error with its standard error.
    pub fn read(&self, cmd: Cmd<'_>) -> Result<String> {
        self.exec(Kind::Query, Stdout::Capture, None, &[], cmd)
            .map(text)
    }

    /// A query whose output is bytes (a manifest, whose digest must be of the exact bytes).
    pub fn read_bytes(&self, cmd: Cmd<'_>) -> Result<Vec<u8>> {
        self.exec(Kind::Query, Stdout::Capture, None, &[], cmd)
    }

    /// A query whose failure only means "no answer" (an image that is not there).
    pub fn try_read(&self, cmd: Cmd<'_>) -> Option<String> {
        self.read(cmd).ok().filter(|s| !s.is_empty())
    }

    /// A query that must answer within `timeout` (the engine check): never hangs.
    pub fn read_within(&self, timeout: Duration, cmd: Cmd<'_>) -> Result<String> {
        self.exec(Kind::Query, Stdout::Capture, Some(timeout), &[], cmd)
            .map(text)
    }

    /// A query within `timeout` whose exit status the caller reads (an inspect of many images
    /// fails when one is missing, and still prints the others).
    pub fn read_output(&self, timeout: Duration, cmd: Cmd<'_>) -> Result<std::process::Output> {
        let (shown, expr) = with_env(&[], cmd);
        self.start_expr(Kind::Query, Stdout::Capture, Some(timeout), &shown, expr)?
            .wait_output()
    }

    /// A pipeline or a command fed from bytes, as duct builds it; `shown` is what is echoed.
    pub fn run_expr(&self, shown: &str, expr: duct::Expression) -> Result<()> {
        self.start_expr(Kind::Change, Stdout::Null, None, shown, expr)?
            .wait()
            .map(drop)
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
    pub fn start_daemon(&self, cmd: Cmd<'_>, log: &Utf8Path) -> Result<()> {
        let mut std = Command::from(cmd);
        let shown = display(&std);
        self.change(format!("{shown} >{log} 2>&1 &"), || {
            use std::os::unix::process::CommandExt;
            eprintln!("$ {shown} >{log} 2>&1 &");
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .with_context(|| format!("opening {log}"))?;
            std.stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()
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

    /// Remembers that `host` did not answer in this run.
    pub fn mark_unreachable(&self, host: &str) {
        self.unreachable.borrow_mut().insert(host.to_string());
    }

    pub fn is_unreachable(&self, host: &str) -> bool {
        self.unreachable.borrow().contains(host)
    }

    fn exec(
        &self,
        kind: Kind,
        stdout: Stdout,
        timeout: Option<Duration>,
        env: &[(&str, String)],
        cmd: Cmd<'_>,
    ) -> Result<Vec<u8>> {
        let (shown, expr) = with_env(env, cmd);
        self.start_expr(kind, stdout, timeout, &shown, expr)?.wait()
    }

    /// A change that runs in the background while the xtask does other work (`go build` while
    /// the engine is asked): echoed now, its output shown; `wait` for its end.
    pub fn start(&self, env: &[(&str, String)], cmd: Cmd<'_>) -> Result<Running> {
        let (shown, expr) = with_env(env, cmd);
        self.start_expr(Kind::Change, Stdout::Inherit, None, &shown, expr)
    }

    /// `start` for a command fed from a pipe, as duct builds it (`docker load`), its output
    /// captured (shown when it fails).
    pub fn start_fed(&self, shown: &str, expr: duct::Expression) -> Result<Running> {
        self.start_expr(Kind::Fed, Stdout::Capture, None, shown, expr)
    }

    /// `cleanup` in the background: `wait` for its end (dropped, it is waited for, not stopped).
    pub fn start_cleanup(&self, cmd: Cmd<'_>) -> Result<Running> {
        let (shown, expr) = with_env(&[], cmd);
        self.start_expr(Kind::Cleanup, Stdout::Null, None, &shown, expr)
    }

    /// A query in the background: `wait_text` for its answer.
    pub fn start_read(&self, cmd: Cmd<'_>) -> Result<Running> {
        let (shown, expr) = with_env(&[], cmd);
        self.start_expr(Kind::Query, Stdout::Capture, None, &shown, expr)
    }

    fn start_expr(
        &self,
        kind: Kind,
        stdout: Stdout,
        timeout: Option<Duration>,
        shown: &str,
        expr: duct::Expression,
    ) -> Result<Running> {
        // A query always has a bounded wait: a stuck engine is an error, not a hang.
        let timeout = match kind {
            Kind::Query => Some(timeout.unwrap_or(QUERY_ANSWER)),
            _ => timeout,
        };
        let mut running = Running {
            shown: shown.to_string(),
            handle: None,
            stoppable: !matches!(kind, Kind::Cleanup | Kind::Fed),
            deadline: timeout.map(|t| (Instant::now() + t, t)),
            // What shows no output of its own says, once, that it is still waited for.
            notice: stdout != Stdout::Inherit,
            started: Instant::now(),
        };
        let changes = matches!(kind, Kind::Change | Kind::Fed);
        if kind != Kind::Query && self.dry_run {
            println!("[dry-run] {shown}");
            return Ok(running);
        }
        // After a signal no new change starts; clean-up, and the queries it needs, still run.
        if changes {
            self.check_signal(shown)?;
        }
        // A signal that comes while this command runs stops it (not a clean-up).
        running.stoppable &= signals::received().is_none();
        if kind != Kind::Query {
            eprintln!("$ {shown}");
        }
        // Children never read the terminal (a prompt would hang CI); an inner stdin (bytes fed to
        // `docker load`) wins over this outer one.
        let mut expr = expr.stdin_null().unchecked();
        if !running.stoppable {
            expr = expr.before_spawn(|command| {
                std::os::unix::process::CommandExt::process_group(command, 0);
                Ok(())
            });
        }
        expr = match stdout {
            Stdout::Inherit => expr,
            Stdout::Null => expr.stdout_null(),
            Stdout::Capture => expr.stdout_capture(),
        };
        // Captured output goes into the error; so does a clean-up's reason (an image that stays).
        if stdout == Stdout::Capture || kind == Kind::Cleanup {
            expr = expr.stderr_capture();
        }
        running.handle = Some(
            expr.start()
                .with_context(|| format!("starting `{shown}`"))?,
        );
        Ok(running)
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
        let path = self.paths.lock_file();
        let dir = self.paths.xtask_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
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
                self.announce(format!(
                    "another cargo xtask is building in this checkout: waiting for {path}"
                ));
                announced = true;
            }
            // Polled, so that a signal stops the wait.
            self.check_signal("waiting for the checkout's lock")?;
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

/// A command `Ctx` started: waited for by `wait`, or, dropped unwaited (an error or a signal
/// elsewhere), stopped and reaped.
pub struct Running {
    shown: String,
    /// None under `--dry-run`.
    handle: Option<duct::Handle>,
    stoppable: bool,
    deadline: Option<(Instant, Duration)>,
    /// Says once, after `STILL_WAITING`, what is being waited for and how to stop.
    notice: bool,
    started: Instant,
}

/// How long a query may take (`read_within` sets others).
const QUERY_ANSWER: Duration = Duration::from_secs(120);
/// When a command that prints nothing of its own is said to be still waited for.
const STILL_WAITING: Duration = Duration::from_secs(10);

impl Running {
    /// Waits for the end: its standard output when captured; an error with its standard error
    /// when it failed. A signal that comes meanwhile is forwarded to it.
    pub fn wait(self) -> Result<Vec<u8>> {
        let shown = self.shown.clone();
        let output = self.wait_output()?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            // The end of it: where a build says what failed.
            let lines: Vec<&str> = stderr.trim().lines().collect();
            let why = lines[lines.len().saturating_sub(20)..].join("\n");
            bail!(
                "`{shown}` failed ({}){}{why}",
                output.status,
                if why.is_empty() { "" } else { ": " }
            );
        }
        Ok(output.stdout)
    }

    /// Waits for the end, whatever its exit status: what it printed, and how it ended.
    pub fn wait_output(mut self) -> Result<std::process::Output> {
        let Some(handle) = self.handle.take() else {
            return Ok(std::process::Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(0),
                stdout: Vec::new(),
                stderr: Vec::new(),
            }); // --dry-run
        };
        let shown = &self.shown;
        // Since when a signal has been seen: the child is told (a clean-up is let finish), and
        // killed after the grace.
        let mut signalled: Option<Instant> = None;
        let output = loop {
            if let Some(out) = handle
                .wait_timeout(Duration::from_millis(20))
                .with_context(|| format!("waiting for `{shown}`"))?
            {
                break out;
            }
            if let Some(signal) = signals::received() {
                match signalled {
                    None => {
                        if self.stoppable {
                            forward(&handle, signal);
                        }
                        signalled = Some(Instant::now());
                    }
                    Some(at) if at.elapsed() > STOP_GRACE => {
                        let _ = handle.kill();
                    }
                    Some(_) => {}
                }
            }
            if let Some((deadline, timeout)) = self.deadline {
                if Instant::now() >= deadline {
                    let _ = handle.kill();
                    bail!(
                        "`{shown}`: no answer within {} s (is the engine stuck? see whether \
                         `docker info` answers)",
                        timeout.as_secs()
                    );
                }
            }
            if self.notice && self.started.elapsed() >= STILL_WAITING {
                self.notice = false;
                eprintln!(
                    "... still waiting for `{shown}` after {} s: the engine has not answered (stuck \
                     or busy); Ctrl-C stops it",
                    STILL_WAITING.as_secs()
                );
            }
        };
        if let Some(signal) = signals::received().filter(|_| self.stoppable) {
            bail!("`{shown}` stopped by {}", signals::name(signal));
        }
        Ok(output.clone())
    }

    /// `wait`, the output as trimmed text.
    pub fn wait_text(self) -> Result<String> {
        self.wait().map(text)
    }

    /// Returns once the command has a child process named `name` (`go build` running `link`),
    /// has ended, or a signal came; at once where /proc does not list children (not Linux).
    pub fn until_child(&self, name: &str) {
        let Some(pid) = self.handle.as_ref().and_then(|h| h.pids().first().copied()) else {
            return;
        };
        loop {
            let running = self
                .handle
                .as_ref()
                .is_some_and(|h| matches!(h.try_wait(), Ok(None)));
            if !running || signals::received().is_some() || has_child(pid, name) != Some(false) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether process `pid` has a child named `name`; None when /proc does not tell.
fn has_child(pid: u32, name: &str) -> Option<bool> {
    let named = |child: &str| {
        std::fs::read_to_string(format!("/proc/{child}/comm"))
            .is_ok_and(|comm| comm.trim_end() == name)
    };
    // Thread by thread: a child belongs to the thread that forked it.
    for thread in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        // No such file: a kernel without CONFIG_PROC_CHILDREN.
        let children = std::fs::read_to_string(thread.path().join("children")).ok()?;
        if children.split_whitespace().any(named) {
            return Some(true);
        }
    }
    Some(false)
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // A clean-up is let finish; anything else is stopped.
            if self.stoppable {
                forward(&handle, signals::received().unwrap_or(libc::SIGTERM));
            }
            let stopped = Instant::now();
            while let Ok(None) = handle.wait_timeout(Duration::from_millis(20)) {
                if stopped.elapsed() > STOP_GRACE {
                    let _ = handle.kill();
                    break;
                }
            }
        }
    }
}

/// How long a child has to stop after a signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

fn forward(handle: &duct::Handle, signal: i32) {
    for pid in handle.pids() {
        // SAFETY: kill(2) on a child we started and have not reaped.
        unsafe { libc::kill(pid as i32, signal) };
    }
}

/// The command with `env` set, and how it is echoed (`K=V command`).
fn with_env(env: &[(&str, String)], cmd: Cmd<'_>) -> (String, duct::Expression) {
    let std = Command::from(cmd);
    let shown = env
        .iter()
        .map(|(k, v)| format!("{k}={} ", quote(v)))
        .collect::<String>()
        + &display(&std);
    let mut expr = to_duct(&std);
    for (k, v) in env {
        expr = expr.env(k, v);
    }
    (shown, expr)
}

/// xshell builds the command (its `cmd!` splices arguments safely); duct runs it, so that it can be
/// waited for with a deadline and signalled.
fn to_duct(std: &Command) -> duct::Expression {
    let args: Vec<&OsStr> = std.get_args().collect();
    let mut expr = duct::cmd(std.get_program(), args);
    if let Some(dir) = std.get_current_dir() {
        expr = expr.dir(dir);
    }
    for (key, value) in std.get_envs() {
        expr = match value {
            Some(value) => expr.env(key, value),
            None => expr.env_remove(key),
        };
    }
    expr
}

/// A command's output as text, trimmed.
fn text(stdout: Vec<u8>) -> String {
    String::from_utf8_lossy(&stdout).trim().to_string()
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

/// A command as a shell would take it back: arguments with spaces or quotes in single quotes.
fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(v: &str) -> String {
    let plain = |c: char| c.is_alphanumeric() || "-_./:=@%+,^{}".contains(c);
    if !v.is_empty() && v.chars().all(plain) {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_child_waits_for_the_child_or_the_end() {
        let ctx = Ctx::new(Global::default(), Paths::discover().unwrap()).unwrap();
        let sh = &ctx.sh;
        // Busy a while without a child, then a child named `sleep`.
        let script =
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 3 >/dev/null 2>&1 & wait";
        let parent = ctx.start_read(xshell::cmd!(sh, "sh -c {script}")).unwrap();
        parent.until_child("sleep");
        let handle = parent.handle.as_ref().unwrap();
        assert!(
            matches!(handle.try_wait(), Ok(None)),
            "returned after the end"
        );
        assert_eq!(has_child(handle.pids()[0], "sleep"), Some(true));
        // No such child: back (at the latest once the command has ended), never stuck.
        let done = ctx.start_read(xshell::cmd!(sh, "true")).unwrap();
        done.until_child("link");
        done.wait().unwrap();
    }
}
