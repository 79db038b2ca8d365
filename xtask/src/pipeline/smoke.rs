//! The smoke test: run the image hardened (read-only, no capabilities) on a free loopback port,
//! wait until its health check says healthy, check /healthz and /hello/x, stop it with SIGTERM (it
//! must exit 0), remove it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::{
    infra::{
        ctx::Ctx,
        docker::{self, TempContainer},
        http,
    },
    project,
};

/// How long the container has to turn healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(15);

pub fn run(ctx: &Ctx, checkout: &str, image: &str) -> Result<()> {
    ctx.step(&format!("smoke test {image}"), || {
        let publish = format!("127.0.0.1::{}", project::APP_PORT);
        let hardening = ["--read-only", "--cap-drop", "ALL", "-p", &publish];
        let container = TempContainer::create(ctx, checkout, image, "smoke", &hardening, &[])?;
        let sh = &ctx.sh;
        let name = &container.name;
        let endpoint = docker::endpoint(ctx);
        // The engine's published ports are ours to reach only when it runs on this host's network.
        let local = docker::publishes_here(&endpoint);
        ctx.run_quiet(cmd!(sh, "docker start {name}")).context("starting the container")?;
        ctx.after_real_run(|| {
            let started = Instant::now();
            let healthy = wait_healthy(ctx, name)?;
            let port = format!("{}/tcp", project::APP_PORT);
            let addr = ctx.read(cmd!(sh, "docker port {name} {port}")).context("finding the published port")?;
            let addr = addr
                .lines()
                .find(|l| l.starts_with("127.0.0.1:"))
                .context("no loopback port published")?
                .to_string();
            let healthy_after = started.elapsed();
            let logs = || ctx.read(cmd!(sh, "docker logs {name}")).unwrap_or_default();
            if !healthy {
                bail!("{image} did not turn healthy within {} s; its log:\n{}", HEALTHY_WITHIN.as_secs(), logs());
            }
            let reachable = http::wait_ok(&addr, "/healthz", Duration::from_secs(5));
            if reachable {
                let (status, body) = http::get(&addr, "/hello/x").context("GET /hello/x")?;
                if status != 200 || body != "Hello, x!\n" {
                    bail!("GET /hello/x answered {status} {body:?}, expected 200 \"Hello, x!\\n\"");
                }
            } else if local {
                bail!("{image} is healthy but {addr} does not answer /healthz; its log:\n{}", logs());
            } else {
                ctx.announce(format!(
                    "{addr} is the engine's own loopback ({endpoint} runs elsewhere): its health check \
                     passed, /hello/x was not checked from here"
                ));
            }
            ctx.run_quiet(cmd!(sh, "docker stop -t 5 {name}")).context("stopping the container")?;
            let format = "{{.State.ExitCode}}";
            let code = ctx.read(cmd!(sh, "docker inspect --format {format} {name}"))?;
            if code.trim() != "0" {
                bail!("{image} exited with {code} after SIGTERM, expected 0");
            }
            let checked = if reachable { format!("answered /healthz and /hello/x on {addr}") } else { "health check only".into() };
            println!(
                "smoke: {image} healthy after {:.1}s, {checked}; SIGTERM → exit 0",
                healthy_after.as_secs_f64()
            );
            Ok(())
        })
    })
}

/// Polls the container's health status until healthy (true), unhealthy or exited (false).
fn wait_healthy(ctx: &Ctx, name: &str) -> Result<bool> {
    let sh = &ctx.sh;
    let format =
        "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.Running}}";
    let deadline = Instant::now() + HEALTHY_WITHIN;
    while Instant::now() < deadline {
        ctx.check_signal("waiting for the container to turn healthy")?;
        let state = ctx.read(cmd!(sh, "docker inspect --format {format} {name}"))?;
        match state.split_once(' ') {
            Some(("healthy", _)) => return Ok(true),
            Some(("unhealthy", _)) | Some((_, "false")) => return Ok(false),
            Some(("none", _)) => bail!("{name}: the image declares no health check"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Ok(false)
}
