//! One way to run a process. A `Cmd` is a value: program, arguments, environment, directory,
//! input, how its output is treated and how long it may take. `cmd!("docker tag {id} {tag}")`
//! builds one (xshell splices each argument whole, `{list...}` as several); its builder methods
//! add to it. `Ctx` runs it (`run`, `read`, `start`, `cleanup`). A failure is a `ProcessError`:
//! the command, how it ended and what it printed, as data; each tool's module classifies it in
//! one place (`docker::refusal`, `docker::missing_only`, `publish::why`).

use std::{
    ffi::{OsStr, OsString},
    fmt,
    process::{ExitStatus, Output},
    time::{Duration, Instant},
};

use camino::{Utf8Path, Utf8PathBuf};

use crate::infra::signals;

/// A `Cmd` from a command line with `{var}` (one argument) and `{list...}` (many) spliced in.
#[macro_export]
macro_rules! cmd {
    ($line:literal) => {
        $crate::infra::process::Cmd::spliced(|sh| ::xshell::cmd!(sh, $line))
    };
}

/// What a command is to the run: it decides echo, `--dry-run` and signals (`Ctx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Changes something: echoed, skipped by `--dry-run`, refused after a signal, stopped by one.
    Change,
    /// Undoes something of ours (a temporary container): runs after a signal too, and is let
    /// finish: in a process group of its own, out of reach of the terminal's Ctrl-C.
    Cleanup,
    /// A change that reads what the xtask writes (`docker load`): it ends when its input does,
    /// and the xtask decides when: like a clean-up, never stopped by a signal.
    Fed,
    /// A change the engine may finish after its client is gone (`docker create`): refused after a
    /// signal, but once started let finish, out of reach of Ctrl-C, so that what it made is known
    /// and its guard removes it.
    Whole,
    /// Reads state: quiet, runs under `--dry-run`, always within a bound.
    Query,
}

/// What a child's standard output does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// On the terminal.
    Shown,
    /// Dropped (`docker tag`: IDs nobody reads).
    Quiet,
    /// Captured: the caller's, and the error's when it fails.
    Kept,
}

/// A command to run: see the module's doc.
#[derive(Debug)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    dir: Option<Utf8PathBuf>,
    stdin: Option<(os_pipe::PipeReader, String)>,
    /// Its output goes into the next one's input.
    next: Option<Box<Cmd>>,
    /// Standard error into standard output.
    merged: bool,
    /// Both outputs into this pipe, read by the caller as they come.
    to: Option<os_pipe::PipeWriter>,
    pub(crate) kind: Kind,
    pub(crate) stdout: Stdout,
    pub(crate) timeout: Option<Duration>,
    /// Killed when the xtask dies, however it dies (`dies_with_xtask`).
    pub(crate) dies_with_xtask: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            stdin: None,
            next: None,
            merged: false,
            to: None,
            kind: Kind::Change,
            stdout: Stdout::Shown,
            timeout: None,
            dies_with_xtask: false,
        }
    }

    /// Killed (SIGKILL) by the kernel when the xtask dies, even by `kill -9`: a server started
    /// for a check never outlives it.
    pub fn dies_with_xtask(mut self) -> Cmd {
        self.dies_with_xtask = true;
        self
    }

    /// What `cmd!` makes of xshell's command: its program and arguments (xshell's shell, a
    /// fresh one, adds nothing else).
    pub fn spliced(line: impl for<'a> FnOnce(&'a xshell::Shell) -> xshell::Cmd<'a>) -> Cmd {
        let sh = xshell::Shell::new().expect("xshell needs the current directory");
        let std = std::process::Command::from(line(&sh));
        Cmd::new(std.get_program()).args(std.get_args())
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Cmd {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable for this command alone, echoed with it (`K=V command`).
    pub fn env(mut self, key: &str, value: impl AsRef<str>) -> Cmd {
        self.env.push((key.to_string(), value.as_ref().to_string()));
        self
    }

    pub fn envs(self, vars: &[(&str, String)]) -> Cmd {
        vars.iter().fold(self, |cmd, (k, v)| cmd.env(k, v))
    }

    /// Runs in `dir` (else the checkout's root).
    pub fn dir(mut self, dir: impl AsRef<Utf8Path>) -> Cmd {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Reads its input from `reader`; `shown` says what that is in the echo.
    pub fn stdin(mut self, reader: os_pipe::PipeReader, shown: &str) -> Cmd {
        self.stdin = Some((reader, shown.to_string()));
        self
    }

    /// Its standard error goes where its standard output goes (`docker logs`: the app's two).
    pub fn both_outputs(mut self) -> Cmd {
        self.merged = true;
        self
    }

    /// Its standard output and error into `writer`, for the caller to read as they come
    /// (`docker logs -f`).
    pub fn output_to(mut self, writer: os_pipe::PipeWriter) -> Cmd {
        self.to = Some(writer);
        self
    }

    /// Its output becomes `next`'s input (`a | b`).
    pub fn pipe(mut self, next: Cmd) -> Cmd {
        self.next = Some(Box::new(next));
        self
    }

    /// Its standard output dropped.
    pub fn quiet(mut self) -> Cmd {
        self.stdout = Stdout::Quiet;
        self
    }

    /// Its output kept back (the bench's many builds): the caller's, shown when it fails.
    pub fn kept(mut self) -> Cmd {
        self.stdout = Stdout::Kept;
        self
    }

    /// It must end within `timeout`, else it is killed and fails (a query has a bound anyway).
    pub fn within(mut self, timeout: Duration) -> Cmd {
        self.timeout = Some(timeout);
        self
    }

    /// Started in the background as a query (`Ctx::start`).
    pub fn as_query(mut self) -> Cmd {
        self.kind = Kind::Query;
        self.stdout = Stdout::Kept;
        self
    }

    /// Started in the background as a clean-up (`Ctx::start`).
    pub fn as_cleanup(mut self) -> Cmd {
        self.kind = Kind::Cleanup;
        if self.stdout == Stdout::Shown {
            self.stdout = Stdout::Quiet;
        }
        self
    }

    /// A change not to be cut short once started (`Kind::Whole`).
    pub fn whole(mut self) -> Cmd {
        self.kind = Kind::Whole;
        self
    }

    /// A change fed from the xtask (`docker load`), never stopped by a signal; output kept.
    pub fn fed(mut self) -> Cmd {
        self.kind = Kind::Fed;
        self.stdout = Stdout::Kept;
        self
    }

    /// The command as a shell would take it back, with its environment and input.
    pub fn shown(&self) -> String {
        let env = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={} ", quote(v)))
            .collect::<String>();
        let line = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let input = match &self.stdin {
            Some((_, shown)) => format!(" < {shown}"),
            None => String::new(),
        };
        let next = match &self.next {
            Some(next) => format!(" | {}", next.shown()),
            None => String::new(),
        };
        format!("{env}{line}{input}{next}")
    }

    pub fn program(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    pub fn arguments(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The duct expression that runs it, in `default_dir` unless it names its own.
    pub(crate) fn expression(self, default_dir: &Utf8Path) -> duct::Expression {
        let mut expr = duct::cmd(&self.program, &self.args);
        expr = expr.dir(self.dir.as_deref().unwrap_or(default_dir));
        for (k, v) in &self.env {
            expr = expr.env(k, v);
        }
        if let Some((reader, _)) = self.stdin {
            expr = expr.stdin_file(reader);
        }
        if self.merged {
            expr = expr.stderr_to_stdout();
        }
        if let Some(writer) = self.to {
            if let Ok(copy) = writer.try_clone() {
                expr = expr.stderr_file(copy);
            }
            expr = expr.stdout_file(writer);
        }
        match self.next {
            Some(next) => expr.pipe(next.expression(default_dir)),
            None => expr,
        }
    }
}

/// Why a command failed, with what it printed: the program, its arguments and the command as
/// echoed, as data.
#[derive(Debug)]
pub struct ProcessError {
    pub shown: String,
    pub program: String,
    pub args: Vec<String>,
    pub end: End,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// How a failed command ended.
#[derive(Debug)]
pub enum End {
    /// It could not be started (not found, not executable).
    NotStarted(std::io::Error),
    /// It exited unsuccessfully, or a signal killed it.
    Status(ExitStatus),
    /// It did not end within its bound, and was killed.
    NoAnswer(Duration),
    /// A signal to the xtask stopped it.
    Stopped(i32),
}

impl ProcessError {
    /// The `ProcessError` inside an error chain, if one is there.
    pub fn of(e: &anyhow::Error) -> Option<&ProcessError> {
        e.chain().find_map(|c| c.downcast_ref::<ProcessError>())
    }

    /// The exit code, when it exited.
    pub fn code(&self) -> Option<i32> {
        match &self.end {
            End::Status(status) => status.code(),
            _ => None,
        }
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.shown;
        match &self.end {
            End::NotStarted(e) => write!(f, "starting `{shown}`: {e}"),
            End::Status(status) => {
                // The end of it: where a build says what failed.
                let stderr = self.stderr_text();
                let lines: Vec<&str> = stderr.lines().collect();
                let why = lines[lines.len().saturating_sub(20)..].join("\n");
                write!(f, "`{shown}` failed ({status})")?;
                if !why.is_empty() {
                    write!(f, ": {why}")?;
                }
                Ok(())
            }
            End::NoAnswer(t) => write!(f, "`{shown}`: {}", no_answer(*t)),
            End::Stopped(signal) => write!(f, "`{shown}` stopped by {}", signals::name(*signal)),
        }
    }
}

impl std::error::Error for ProcessError {}

/// A command `Ctx` started: waited for by `wait`, or, dropped unwaited (an error or a signal
/// elsewhere), stopped and reaped.
pub struct Running {
    pub(crate) shown: String,
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    /// None under `--dry-run`.
    pub(crate) handle: Option<duct::Handle>,
    pub(crate) stoppable: bool,
    pub(crate) deadline: Option<(Instant, Duration)>,
    /// Says once, after `STILL_WAITING`, what is being waited for and how to stop.
    pub(crate) notice: bool,
    pub(crate) started: Instant,
}

/// When a command that prints nothing of its own is said to be still waited for.
pub(crate) const STILL_WAITING: Duration = Duration::from_secs(10);

/// Says, once `STILL_WAITING` has passed, what is waited for and how to stop it (a command, or a
/// request to the engine's API: `engine`, which the delay is then said to be), `waited` since it
/// started (a command started long before it is waited for has waited longer).
pub(crate) fn say_still_waiting(shown: &str, engine: bool, waited: Duration) {
    let why = if engine {
        "the engine has not answered (stuck or busy)"
    } else {
        "it shows nothing until it ends"
    };
    eprintln!(
        "... still waiting for `{shown}` after {} s: {why}; Ctrl-C stops it",
        waited.as_secs()
    );
}

/// Why a command or a request to the engine ended unanswered after `t`.
pub(crate) fn no_answer(t: Duration) -> String {
    format!(
        "no answer within {} s (is the engine stuck? see whether `docker info` answers)",
        t.as_secs()
    )
}

/// How long a child has to stop after a signal before it is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

impl Running {
    fn error(&self, end: End, output: Option<Output>) -> ProcessError {
        let (stdout, stderr) = output.map_or((Vec::new(), Vec::new()), |o| (o.stdout, o.stderr));
        ProcessError {
            shown: self.shown.clone(),
            program: self.program.clone(),
            args: self.args.clone(),
            end,
            stdout,
            stderr,
        }
    }

    /// Waits for the end: its standard output when kept; a `ProcessError` when it failed. A
    /// signal that comes meanwhile is forwarded to it.
    pub fn wait(mut self) -> anyhow::Result<Vec<u8>> {
        let Some(handle) = self.handle.take() else {
            return Ok(Vec::new()); // --dry-run
        };
        // Since when a signal has been seen: the child is told (a clean-up is let finish), and
        // killed after the grace.
        let mut signalled: Option<Instant> = None;
        let output = loop {
            match handle.wait_timeout(Duration::from_millis(20)) {
                Ok(Some(out)) => break out.clone(),
                Ok(None) => {}
                Err(e) => return Err(self.error(End::NotStarted(e), None).into()),
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
                    return Err(self.error(End::NoAnswer(timeout), None).into());
                }
            }
            if self.notice && self.started.elapsed() >= STILL_WAITING {
                self.notice = false;
                let engine = self.program.rsplit('/').next() == Some(super::tools::DOCKER.name);
                say_still_waiting(&self.shown, engine, self.started.elapsed());
            }
        };
        if let Some(signal) = signals::received().filter(|_| self.stoppable) {
            return Err(self.error(End::Stopped(signal), Some(output)).into());
        }
        if !output.status.success() {
            return Err(self.error(End::Status(output.status), Some(output)).into());
        }
        Ok(output.stdout)
    }

    /// `wait`, the output as trimmed text.
    pub fn wait_text(self) -> anyhow::Result<String> {
        self.wait().map(text)
    }

    /// Returns once the command has a child process named `name` (`go build` running `link`),
    /// has ended, or a signal came.
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

fn forward(handle: &duct::Handle, signal: i32) {
    for pid in handle.pids() {
        // SAFETY: kill(2) on a child we started and have not reaped.
        unsafe { libc::kill(pid as i32, signal) };
    }
}

/// A command's output as text, trimmed.
pub fn text(stdout: Vec<u8>) -> String {
    String::from_utf8_lossy(&stdout).trim().to_string()
}

fn quote(v: &str) -> String {
    shlex::try_quote(v).map_or_else(|_| format!("{v:?}"), |q| q.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmd_splices_each_value_as_one_argument() {
        let (id, many) = ("a b", ["x", "y z"]);
        let cmd = cmd!("docker tag {id} {many...}").env("K", "v w");
        assert_eq!(cmd.program(), "docker");
        assert_eq!(cmd.arguments(), ["tag", "a b", "x", "y z"]);
        assert_eq!(cmd.shown(), "K='v w' docker tag 'a b' x 'y z'");
    }

    #[test]
    fn a_failure_keeps_the_command_and_its_output_as_data() {
        let err = ProcessError {
            shown: "docker image rm x".into(),
            program: "docker".into(),
            args: vec!["image".into(), "rm".into(), "x".into()],
            end: End::Status(std::os::unix::process::ExitStatusExt::from_raw(256)),
            stdout: Vec::new(),
            stderr: b"Error response from daemon: conflict\n".to_vec(),
        };
        assert_eq!(err.code(), Some(1));
        let shown = err.to_string();
        assert!(shown.starts_with("`docker image rm x` failed (exit status: 1): Error response"));
        let e = anyhow::Error::from(err).context("removing x");
        assert_eq!(ProcessError::of(&e).unwrap().program, "docker");
    }
}
