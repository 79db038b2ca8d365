//! Provisioning on Debian/Ubuntu: apt packages (a few from other suites, pinned so that nothing
//! else ever comes from them) and a running Docker engine.

use std::{fs, process::Stdio, time::Duration};

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::{
    ctx::Ctx,
    docker, project,
    tools::{self, Tool},
};

/// Everything the pipeline uses, in install order.
pub const ALL: [Tool; 9] = [
    tools::DOCKER,
    tools::DOCKERD,
    tools::GO,
    tools::GIT,
    tools::DEBOOTSTRAP,
    tools::HTTPROUTER_SRC,
    tools::GLIDE,
    tools::BUILDX,
    tools::UPX,
];

const SOURCES: &str = "/etc/apt/sources.list.d/go-docker-prod-xtask.sources";
const PREFERENCES: &str = "/etc/apt/preferences.d/go-docker-prod-xtask";

/// `cargo xtask setup`: installs what is missing, starts the engine. A second run only checks.
pub fn run(ctx: &Ctx) -> Result<()> {
    let missing: Vec<Tool> = ALL.iter().copied().filter(|t| !t.present()).collect();
    if missing.is_empty() {
        ctx.announce(format!("all tools present: {}", tools::names(&ALL)));
    } else if let Some(reason) = cannot_provision() {
        bail!(
            "cannot install here ({reason}). Install these yourself:\n{}",
            missing
                .iter()
                .map(|t| format!("  {}: {}", t.name, t.install_hint()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    } else {
        install(ctx, &missing)?;
    }
    ensure_engine(ctx).map(|_| ())
}

/// Why this machine cannot be provisioned by us, if it cannot.
pub fn cannot_provision() -> Option<String> {
    if !std::path::Path::new("/etc/debian_version").exists() || which::which("apt-get").is_err() {
        return Some("not a Debian/Ubuntu system with apt-get".into());
    }
    if !is_root() {
        return Some("not root: run `sudo cargo xtask setup`".into());
    }
    None
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Installs the packages behind `missing` with apt, each action announced.
pub fn install(ctx: &Ctx, missing: &[Tool]) -> Result<()> {
    ctx.step(&format!("setup: install {}", tools::names(missing)), || {
        let sh = &ctx.sh;
        let (native, extra): (Vec<Tool>, Vec<Tool>) =
            missing.iter().partition(|t| t.suite.is_none());
        if !extra.is_empty() {
            add_extra_suites(ctx, &extra)?;
        }
        ctx.announce("apt-get update");
        ctx.run(cmd!(sh, "apt-get update -q"))?;
        let apt = |specs: Vec<String>, recommends: bool| {
            let no_rec = if recommends {
                None
            } else {
                Some("--no-install-recommends")
            };
            ctx.run_env(
                &[
                    ("DEBIAN_FRONTEND", "noninteractive".into()),
                    ("NEEDRESTART_SUSPEND", "1".into()),
                ],
                cmd!(sh, "apt-get install -y -q {no_rec...} {specs...}"),
            )
        };
        if !native.is_empty() {
            let mut specs: Vec<String> = native.iter().map(|t| t.apt_spec()).collect();
            specs.dedup(); // docker and dockerd come in one package
            ctx.announce(format!("installing {}", specs.join(" ")));
            apt(specs, true)?;
        }
        // One package from another suite at a time, and only when apt would install it alone.
        for tool in extra {
            let spec = tool.apt_spec();
            check_installs_alone(ctx, &spec, tool.package)?;
            ctx.announce(format!(
                "installing {spec} (alone: nothing else comes from {})",
                tool.suite.unwrap_or("")
            ));
            apt(vec![spec], false)?;
        }
        Ok(())
    })
}

/// Adds the other suites with priority 1: apt takes from them only what is asked for by name.
fn add_extra_suites(ctx: &Ctx, extra: &[Tool]) -> Result<()> {
    let mut suites: Vec<&str> = extra.iter().filter_map(|t| t.suite).collect();
    suites.sort_unstable();
    suites.dedup();
    let sources = format!(
        "# Added by `cargo xtask setup` (go-docker-prod): single packages from these suites.\n\
         Types: deb\nURIs: {}\nSuites: {}\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        project::DEBIAN_MIRROR,
        suites.join(" ")
    );
    let preferences = suites
        .iter()
        .map(|s| format!("Package: *\nPin: release n={s}\nPin-Priority: 1\n"))
        .collect::<Vec<_>>()
        .join("\n");
    for (path, text) in [(SOURCES, sources), (PREFERENCES, preferences)] {
        if fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        ctx.announce(format!("writing {path} ({})", suites.join(", ")));
        if !ctx.global.dry_run {
            fs::write(path, text).with_context(|| format!("writing {path}"))?;
        }
    }
    Ok(())
}

/// Refuses an install that would bring or upgrade anything besides `package` (apt would happily
/// upgrade libc6 and base-files to trixie's for a trixie package that needs them).
fn check_installs_alone(ctx: &Ctx, spec: &str, package: &str) -> Result<()> {
    if ctx.global.dry_run {
        return Ok(());
    }
    let sh = &ctx.sh;
    let plan = cmd!(sh, "apt-get -s install --no-install-recommends {spec}")
        .quiet()
        .read()
        .with_context(|| format!("simulating `apt-get install {spec}`"))?;
    let others: Vec<&str> = plan
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != package)
        .collect();
    if !others.is_empty() {
        bail!(
            "refusing to install {spec}: apt would also install or upgrade {}",
            others.join(", ")
        );
    }
    Ok(())
}

/// The Docker engine, which must answer: when none does and we may, starts the local `dockerd`
/// in the background and waits for it.
pub fn ensure_engine(ctx: &Ctx) -> Result<docker::Engine> {
    let down = match docker::engine(ctx) {
        Ok(engine) => return Ok(engine),
        Err(e) => e,
    };
    let may_start = !ctx.global.no_setup
        && !ctx.global.dry_run
        && std::env::var_os("DOCKER_HOST").is_none()
        && cannot_provision().is_none();
    if !may_start {
        return Err(down);
    }
    tools::offer(ctx, tools::DOCKERD);
    if !tools::DOCKERD.present() {
        return Err(down);
    }
    ctx.step("setup: start dockerd", || {
        let log_path = ctx.paths.target().join("dockerd.log");
        fs::create_dir_all(ctx.paths.target())?;
        let log = fs::File::create(&log_path).with_context(|| format!("creating {log_path}"))?;
        ctx.announce(format!(
            "no Docker engine answers: starting dockerd in the background (log: {log_path})"
        ));
        use std::os::unix::process::CommandExt;
        std::process::Command::new("dockerd")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting dockerd")?;
        for _ in 0..120 {
            if docker::engine_error(Duration::from_secs(5)).is_none() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!("dockerd did not answer within 30 s: see {log_path}")
    })?;
    docker::engine(ctx)
}
