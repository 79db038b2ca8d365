//! What every command gets: the shell, the workspace paths, the global flags, and the one place
//! that decides whether a command really runs (`--dry-run`) and how progress is shown.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use xshell::{Cmd, Shell};

use crate::{flags::Global, project::Paths};

pub struct Ctx {
    pub sh: Shell,
    pub paths: Paths,
    pub global: Global,
}

impl Ctx {
    pub fn new(global: Global) -> Result<Ctx> {
        let sh = Shell::new().context("starting the command shell")?;
        let paths = Paths::discover()?;
        sh.change_dir(&paths.root);
        Ok(Ctx { sh, paths, global })
    }

    /// Runs a command that changes something; with `--dry-run` only prints it.
    pub fn run(&self, cmd: Cmd<'_>) -> Result<()> {
        self.run_env(&[], cmd)
    }

    /// `run`, with environment variables that are shown with the command.
    pub fn run_env(&self, env: &[(&str, String)], cmd: Cmd<'_>) -> Result<()> {
        self.exec(env, cmd, true)
    }

    /// Runs a clean-up command (removing a temporary container or a superseded image): unlike
    /// `run`, also after Ctrl-C.
    pub fn run_cleanup(&self, cmd: Cmd<'_>) -> Result<()> {
        self.exec(&[], cmd, false)
    }

    fn exec(&self, env: &[(&str, String)], cmd: Cmd<'_>, stop_on_interrupt: bool) -> Result<()> {
        let shown = env
            .iter()
            .map(|(k, v)| format!("{k}={} ", quote(v)))
            .collect::<String>()
            + &cmd.to_string();
        if self.global.dry_run {
            println!("[dry-run] {shown}");
            return Ok(());
        }
        if stop_on_interrupt && crate::interrupt::happened() {
            anyhow::bail!("interrupted before `{shown}`");
        }
        let cmd = env.iter().fold(cmd.quiet(), |c, (k, v)| c.env(k, v));
        eprintln!("$ {shown}");
        cmd.run().with_context(|| format!("`{shown}` failed"))
    }

    /// One line that says what the xtask decided, and why.
    pub fn announce(&self, msg: impl AsRef<str>) {
        eprintln!("--> {}", msg.as_ref());
    }

    /// Runs `f` as a named step: prints the step, then how long it took.
    pub fn step<T>(&self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        eprintln!("==> {name}");
        let started = Instant::now();
        let result = f();
        let verdict = if result.is_ok() { "done" } else { "FAILED" };
        eprintln!("    {name}: {verdict} in {}", secs(started.elapsed()));
        result
    }

    /// Holds the checkout's lock until dropped, so that two xtasks never build into one `dist/`.
    pub fn lock(&self) -> Result<std::fs::File> {
        let path = self.paths.lock_file();
        std::fs::create_dir_all(self.paths.target())
            .with_context(|| format!("creating {}", self.paths.target()))?;
        let file = std::fs::File::create(&path).with_context(|| format!("opening {path}"))?;
        let mut announced = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {path}"))
                }
            }
            if !announced {
                self.announce(format!(
                    "another cargo xtask is building in this checkout: waiting for {path}"
                ));
                announced = true;
            }
            // Polled, so that Ctrl-C stops the wait.
            if crate::interrupt::happened() {
                anyhow::bail!("interrupted while waiting for {path}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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

fn quote(v: &str) -> String {
    if v.is_empty() || v.contains(|c: char| c.is_whitespace() || "\"'$\\".contains(c)) {
        format!("{v:?}")
    } else {
        v.to_string()
    }
}
