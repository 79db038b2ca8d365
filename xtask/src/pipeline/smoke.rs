//! The smoke test: run the image hardened (read-only, no capabilities) on a free loopback port,
//! wait until its own health check passes, run by us with `docker exec` (Podman without systemd
//! never runs an image's HEALTHCHECK), check /healthz and /hello/x from here when the engine
//! publishes its ports here, stop it with SIGTERM (it must exit 0), remove it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{
    cmd,
    infra::process::ProcessError,
    infra::{
        ctx::Ctx,
        docker::{self, Confined, TempContainer},
        http,
    },
    project,
};

/// How long the container has to turn healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(15);

/// Smoke-tests the image `id`, the candidate for `tag` (which it does not name yet).
pub fn run(ctx: &Ctx, checkout: &str, id: &str, tag: &str) -> Result<()> {
    let image = format!("{tag} ({id})");
    ctx.step(&format!("smoke test {image}"), || {
        let confined = Confined {
            publish: vec![(None, project::APP_PORT)],
            ..Confined::default()
        };
        let hardening = confined.args();
        let hardening: Vec<&str> = hardening.iter().map(String::as_str).collect();
        let container = TempContainer::create(ctx, checkout, id, "smoke", &hardening, &[])?;
        let name = &container.name;
        let endpoint = docker::endpoint(ctx);
        // The engine's published ports are ours to reach only when it runs on this host's network.
        let local = docker::publishes_here(&endpoint);
        ctx.run(cmd!("docker start {name}").quiet()).context("starting the container")?;
        ctx.after_real_run(|| {
            let started = Instant::now();
            let logs = || container_log(ctx, name);
            wait_healthy(ctx, name, id, started).map_err(|e| anyhow::anyhow!("{e:#}; its log:\n{}", logs()))?;
            let healthy_after = started.elapsed();
            let port = format!("{}/tcp", project::APP_PORT);
            let addr = ctx.read(cmd!("docker port {name} {port}")).context("finding the published port")?;
            let addr = addr
                .lines()
                .find(|l| l.starts_with("127.0.0.1:"))
                .context("no loopback port published")?
                .to_string();
            let reachable = local && http::wait_ok(&addr, "/healthz", Duration::from_secs(5));
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
            ctx.run(cmd!("docker stop -t 5 {name}").quiet()).context("stopping the container")?;
            let format = "{{.State.ExitCode}}";
            let code = ctx.read(cmd!("docker inspect --format {format} {name}"))?;
            if code.trim() != "0" {
                bail!("{image} exited with {code} after SIGTERM, expected 0; its log:\n{}", logs());
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

/// Runs the image's own health check (its HEALTHCHECK's command) in the container until it
/// passes; fails at once when the server exits, and after `HEALTHY_WITHIN`, with the real time.
pub fn wait_healthy(ctx: &Ctx, name: &str, id: &str, started: Instant) -> Result<()> {
    let format = "{{.State.Running}} {{.State.ExitCode}}";
    let check = &health_command(ctx, id)?;
    let shown = check.join(" ");
    loop {
        ctx.check_signal("waiting for the container to turn healthy")?;
        let state = ctx.read(cmd!("docker inspect --format {format} {name}"))?;
        if let Some(("false", code)) = state.split_once(' ') {
            bail!(
                "the server exited with code {code} {:.1} s after it started",
                started.elapsed().as_secs_f64()
            );
        }
        match ctx.read(cmd!("docker exec {name} {check...}").within(HEALTHY_WITHIN)) {
            Ok(_) => return Ok(()),
            // It answered, not healthy (yet).
            Err(e) if ProcessError::of(&e).is_some_and(|p| p.code().is_some()) => {}
            Err(e) => return Err(e),
        }
        if started.elapsed() >= HEALTHY_WITHIN {
            bail!(
                "its health check (`{shown}`) did not pass within {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The command the image's HEALTHCHECK runs: `["CMD", args…]` as it is, `["CMD-SHELL", line]`
/// through `sh -c`. An engine that does not show it (Podman's Docker API) gets the check every image
/// of ours declares: its entrypoint with `-healthcheck`.
fn health_command(ctx: &Ctx, id: &str) -> Result<Vec<String>> {
    let strings = |format: &str| -> Vec<String> {
        let value = docker::inspect(ctx, id, format).unwrap_or_default();
        jzon::parse(&value)
            .unwrap_or(jzon::JsonValue::Null)
            .members()
            .filter_map(|w| w.as_str())
            .map(str::to_string)
            .collect()
    };
    let test = strings("{{json .Config.Healthcheck.Test}}");
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => return Ok(rest.to_vec()),
        Some((kind, [line])) if kind == "CMD-SHELL" => {
            return Ok(vec!["sh".into(), "-c".into(), line.clone()])
        }
        _ => {}
    }
    let mut entrypoint = strings("{{json .Config.Entrypoint}}");
    if entrypoint.is_empty() {
        bail!("{id} shows neither a health check nor an entrypoint: the smoke test needs one");
    }
    entrypoint.push(project::HEALTHCHECK_FLAG.to_string());
    Ok(entrypoint)
}

/// The container's whole log, standard output and standard error as the app wrote them.
pub fn container_log(ctx: &Ctx, name: &str) -> String {
    let logs = cmd!("docker logs {name}").both_outputs();
    match ctx.read(logs.within(Duration::from_secs(10))) {
        Ok(text) => {
            if text.is_empty() {
                "(empty)".into()
            } else {
                text
            }
        }
        Err(e) => format!("(could not be read: {e:#})"),
    }
}
