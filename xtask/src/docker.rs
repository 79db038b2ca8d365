//! The docker CLI: is an engine there, which builder, and the few image queries the steps share.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::{ctx::Ctx, flags::Builder, project, tools};

/// The engine as the xtask sees it.
#[derive(Debug, Clone)]
pub struct Engine {
    /// The engine's API version, e.g. (1, 41).
    pub api: (u32, u32),
    /// BuildKit is usable from this client: buildx is installed, or the client is older than 23
    /// (which has BuildKit built in behind `DOCKER_BUILDKIT=1`).
    pub buildkit: bool,
}

impl Engine {
    /// Multi-stage builds need API 1.31 (Docker 17.05).
    pub fn multistage(&self) -> bool {
        self.api >= (1, 31)
    }
}

/// Runs `docker ARGS` with a deadline; `Ok(stdout)` or `Err(why)`. Never hangs past `timeout`.
fn docker_with_deadline(args: &[&str], timeout: Duration) -> std::result::Result<String, String> {
    let handle = duct::cmd("docker", args)
        .stdout_capture()
        .stderr_capture()
        .stdin_null()
        .unchecked()
        .start()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(out) = handle.try_wait().map_err(|e| e.to_string())? {
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
            return if out.status.success() && !stdout.is_empty() {
                Ok(stdout)
            } else {
                Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
            };
        }
        if Instant::now() >= deadline {
            let _ = handle.kill();
            return Err(format!("no answer within {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `None` when an engine answers within `timeout`, else why not.
pub fn engine_error(timeout: Duration) -> Option<String> {
    docker_with_deadline(&["version", "--format", "{{.Server.APIVersion}}"], timeout).err()
}

/// Finds the engine (within 4 s) or says clearly why there is none and how to start one.
pub fn engine(ctx: &Ctx) -> Result<Engine> {
    tools::require(ctx, &[tools::DOCKER])?;
    let timeout = Duration::from_secs(4);
    let format = "{{.Server.APIVersion}} {{.Client.Version}}";
    let versions = docker_with_deadline(&["version", "--format", format], timeout).map_err(|why| {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        anyhow::anyhow!(
            "cannot reach the Docker engine at {host}: {why}\n\
             Start it (`cargo xtask setup` starts a local dockerd, or `sudo systemctl start docker`), \
             or point DOCKER_HOST at a running engine."
        )
    })?;
    let (api, client) = versions.split_once(' ').unwrap_or((&versions, ""));
    let api = api
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .with_context(|| format!("unexpected engine API version `{api}`"))?;
    let client_major: u32 = client
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let buildkit = (client_major > 0 && client_major < 23)
        || tools::BUILDX.present()
        || docker_with_deadline(&["buildx", "version"], timeout).is_ok();
    Ok(Engine { api, buildkit })
}

/// The image's ID, when the engine has it.
pub fn image_id(ctx: &Ctx, reference: &str) -> Option<String> {
    inspect(ctx, reference, "{{.Id}}")
}

/// The image's size in bytes, as `docker images` shows it.
pub fn image_size(ctx: &Ctx, reference: &str) -> Option<u64> {
    inspect(ctx, reference, "{{.Size}}")?.parse().ok()
}

fn inspect(ctx: &Ctx, reference: &str, format: &str) -> Option<String> {
    let sh = &ctx.sh;
    cmd!(sh, "docker image inspect --format {format} {reference}")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .filter(|s| !s.is_empty())
}

/// Tries `docker pull`; false when the registry cannot be reached (or `--offline`).
pub fn try_pull(ctx: &Ctx, reference: &str) -> bool {
    if ctx.global.offline {
        return false;
    }
    if ctx.global.dry_run {
        println!("[dry-run] docker pull {reference}");
        return true;
    }
    let sh = &ctx.sh;
    cmd!(sh, "docker pull -q {reference}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// IDs of what `docker <kind> ls` lists with our labels (`kind`: image, container).
pub fn ours(ctx: &Ctx, kind: &str, extra_filter: &[&str]) -> Result<Vec<String>> {
    let sh = &ctx.sh;
    let project = format!("label={}={}", project::LABEL_PROJECT, project::APP);
    let checkout = format!(
        "label={}={}",
        project::LABEL_CHECKOUT,
        ctx.paths.checkout_id()
    );
    let all = if kind == "image" { "--all" } else { "-a" };
    let mut filters = vec![
        "--filter".to_string(),
        project,
        "--filter".to_string(),
        checkout,
    ];
    for f in extra_filter {
        filters.extend(["--filter".to_string(), f.to_string()]);
    }
    let out = cmd!(sh, "docker {kind} ls {all} --quiet --no-trunc {filters...}")
        .quiet()
        .read()
        .with_context(|| format!("listing our {kind}s"))?;
    let mut ids: Vec<String> = out.lines().map(str::to_string).collect();
    ids.dedup();
    Ok(ids)
}

/// The ownership labels every image and container we make carries.
pub fn ownership_labels(ctx: &Ctx) -> Vec<String> {
    vec![
        format!("{}={}", project::LABEL_PROJECT, project::APP),
        format!("{}={}", project::LABEL_CHECKOUT, ctx.paths.checkout_id()),
    ]
}

/// Our dangling images: this checkout's superseded builds, and what a build stopped halfway left
/// (those carry only the project label, which every stage sets in its first step). Another
/// checkout's are left alone.
pub fn our_dangling(ctx: &Ctx) -> Result<Vec<String>> {
    let sh = &ctx.sh;
    let project = format!("label={}={}", project::LABEL_PROJECT, project::APP);
    let out = cmd!(
        sh,
        "docker image ls --quiet --no-trunc --filter dangling=true --filter {project}"
    )
    .quiet()
    .read()
    .context("listing dangling images")?;
    let ids: Vec<&str> = out.lines().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let format = format!(
        "{{{{.Id}}}} {{{{index .Config.Labels \"{}\"}}}}",
        project::LABEL_CHECKOUT
    );
    let inspected = cmd!(sh, "docker image inspect --format {format} {ids...}")
        .quiet()
        .read()?;
    let mine = ctx.paths.checkout_id();
    Ok(inspected
        .lines()
        .filter_map(|line| {
            let (id, checkout) = line.split_once(' ').unwrap_or((line, ""));
            let checkout = checkout.trim();
            let ours = checkout.is_empty() || checkout == "<no value>" || checkout == mine;
            ours.then(|| id.to_string())
        })
        .collect())
}

/// Removes our dangling images; also after Ctrl-C. Returns how many went.
pub fn prune_dangling(ctx: &Ctx) -> Result<usize> {
    let dangling = our_dangling(ctx)?;
    if dangling.is_empty() {
        return Ok(0);
    }
    let sh = &ctx.sh;
    let ids = &dangling;
    ctx.run_cleanup(cmd!(sh, "docker image rm {ids...}").ignore_stdout())?;
    Ok(dangling.len())
}

/// A temporary container that is removed however the step ends.
pub struct TempContainer<'a> {
    ctx: &'a Ctx,
    pub name: String,
}

impl<'a> TempContainer<'a> {
    pub fn create(
        ctx: &'a Ctx,
        image: &str,
        purpose: &str,
        extra: &[&str],
    ) -> Result<TempContainer<'a>> {
        let sh = &ctx.sh;
        let name = format!("{}-{purpose}-{}", project::APP, std::process::id());
        let labels: Vec<String> = ownership_labels(ctx)
            .into_iter()
            .flat_map(|l| ["--label".to_string(), l])
            .collect();
        ctx.run(
            cmd!(
                sh,
                "docker create --name {name} {labels...} {extra...} {image}"
            )
            .ignore_stdout(),
        )
        .with_context(|| format!("creating a container from {image}"))?;
        Ok(TempContainer { ctx, name })
    }
}

impl Drop for TempContainer<'_> {
    /// Runs even after Ctrl-C (which stops `ctx.run`): the container must go.
    fn drop(&mut self) {
        let sh = &self.ctx.sh;
        let name = &self.name;
        if let Err(e) = self
            .ctx
            .run_cleanup(cmd!(sh, "docker rm -f {name}").ignore_stdout())
        {
            eprintln!("warning: could not remove container {name}: {e:#}");
        }
    }
}

/// Fails unless the engine can build for `builder`.
pub fn check_builder(engine: &Engine, builder: Builder) -> Result<()> {
    if builder == Builder::BuildKit && !engine.buildkit {
        bail!(
            "BuildKit is not available from this docker client: {}, or use `--builder legacy`",
            tools::BUILDX.install_hint()
        );
    }
    Ok(())
}

/// What `docker system df` says these kinds ("Images", "Build Cache", …) take, in bytes; 0 when
/// unknown.
pub fn disk_usage(ctx: &Ctx, kinds: &[&str]) -> u64 {
    let sh = &ctx.sh;
    let format = "{{.Type}}\t{{.Size}}";
    let out = cmd!(sh, "docker system df --format {format}")
        .quiet()
        .read()
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(kind, _)| kinds.contains(kind))
        .map(|(_, size)| parse_size(size))
        .sum()
}

/// "1.234GB" → 1_234_000_000 (docker's decimal units).
fn parse_size(s: &str) -> u64 {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let factor = match unit.to_ascii_lowercase().as_str() {
        "b" | "" => 1e0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return 0,
    };
    (num.parse::<f64>().unwrap_or(0.0) * factor) as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("1.5GB"), 1_500_000_000);
        assert_eq!(super::parse_size("4.73MB"), 4_730_000);
        assert_eq!(super::parse_size("0B"), 0);
        assert_eq!(super::parse_size("12kB"), 12_000);
    }
}
