//! The smoke test, against the app's contract (`pipeline::app`): run the image hardened
//! (read-only, no capabilities) on a free loopback port, wait until its own health check passes,
//! run by us with `docker exec` (Podman without systemd never runs an image's HEALTHCHECK), or,
//! with none, until the first probe answers; ask every probe from here when the engine publishes
//! its ports here; stop it with SIGTERM (the exit code the contract expects), remove it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{
    infra::process::ProcessError,
    infra::{
        ctx::Ctx,
        docker::{self, Confined, TempContainer},
        http,
    },
    pipeline::app::{self, App},
};

/// How long the container has to turn healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(15);
/// How long an app has to stop after SIGTERM before the engine kills it.
pub const STOP_WITHIN_S: u64 = 5;

/// Smoke-tests the image `id`, the candidate for `tag` (which it does not name yet), against the
/// app's contract: its health check passes (when it declares one), every probe gets the answer
/// expected, and SIGTERM gives the exit code expected.
pub fn run(ctx: &Ctx, checkout: &str, app: &App, id: &str, tag: &str) -> Result<()> {
    let image = format!("{tag} ({id})");
    ctx.step(&format!("smoke test {image}"), || {
        // An app that serves no HTTP (a worker) publishes nothing: it must run, and stop.
        let publish = if app.serves_http() { vec![(None, app.port)] } else { Vec::new() };
        let confined = Confined {
            publish,
            ..Confined::default()
        };
        let hardening = confined.args();
        let hardening: Vec<&str> = hardening.iter().map(String::as_str).collect();
        let purpose = format!("{}-smoke", app.name);
        let container = TempContainer::create(ctx, checkout, id, &purpose, &hardening, &[])?;
        let name = &container.name;
        let endpoint = docker::endpoint(ctx);
        // The engine's published ports are ours to reach only when it runs on this host's network.
        let local = docker::publishes_here(&endpoint);
        docker::start(ctx, name)?;
        ctx.after_real_run(|| {
            let started = Instant::now();
            let logs = || container_log(ctx, name);
            let with_log = |e: anyhow::Error| anyhow::anyhow!("{e:#}; its log:\n{}", logs());
            let addr = match app.serves_http() {
                true => Some(published(ctx, name, app, started).map_err(with_log)?),
                false => None,
            };
            let ready = addr.as_deref().filter(|_| local);
            let health = wait_healthy(ctx, name, id, app, ready, started).map_err(with_log)?;
            let healthy_after = started.elapsed();
            let checked = if let (Some(addr), true) = (&addr, local) {
                for probe in &app.probes {
                    let (status, body) = http::get(addr, &probe.path)
                        .with_context(|| format!("GET {} from {addr}", probe.path))
                        .map_err(with_log)?;
                    if !probe.accepts(status, &body) {
                        bail!(
                            "GET {} answered {status} {body:?}, expected {} (app.json's probes); its log:\n{}",
                            probe.path,
                            probe.expected(),
                            logs()
                        );
                    }
                }
                let paths: Vec<&str> = app.probes.iter().map(|p| p.path.as_str()).collect();
                format!("{health}, answered {} on {addr}", paths.join(" "))
            } else if addr.is_none() {
                format!("{health} (no probes: it serves no HTTP)")
            } else {
                format!(
                    "{health} (health check only: {} is the engine's own loopback, and \
                     {endpoint} runs elsewhere; the probes were not asked from here)",
                    addr.unwrap_or_default()
                )
            };
            let stop = stop(ctx, name, app.stop_exit).map_err(with_log)?;
            // Healthy by its own health check, or ready by the first probe's answer.
            let state = if app.health == app::Health::None { "ready" } else { "healthy" };
            println!(
                "smoke: {image} {state} after {:.1}s: {checked}; {stop}",
                healthy_after.as_secs_f64()
            );
            Ok(())
        })
    })
}

/// The loopback address the engine published the app's port on.
fn published(ctx: &Ctx, name: &str, app: &App, started: Instant) -> Result<String> {
    let port = format!("{}/tcp", app.port);
    // A server that exited at once has no port: that is what is said then.
    let addr = match docker::port(ctx, name, &port) {
        Ok(addr) => addr,
        Err(e) => {
            still_running(ctx, name, started)?;
            return Err(e.context("finding the published port"));
        }
    };
    addr.lines()
        .find(|l| l.starts_with("127.0.0.1:"))
        .map(str::to_string)
        .context("no loopback port published")
}

/// Stops the container with SIGTERM (the engine kills it after `STOP_WITHIN_S`): what happened,
/// or an error when the exit code is not `expected`.
pub fn stop(ctx: &Ctx, name: &str, expected: i32) -> Result<String> {
    let asked = Instant::now();
    docker::stop(ctx, name, STOP_WITHIN_S)?;
    let took = asked.elapsed().as_secs_f64();
    let format = "{{.State.ExitCode}}";
    let code: i32 = docker::container_state(ctx, name, format)?
        .trim()
        .parse()
        .unwrap_or(-1);
    let killed = code == 137;
    let what = match (code == expected, killed) {
        (_, true) => format!("SIGTERM ignored: killed after {took:.1} s (exit 137)"),
        (_, false) if code == app::GO_UNHANDLED_SIGTERM_EXIT && code == expected => {
            format!(
                "SIGTERM → exit {code} after {took:.1} s (no handler: Go's default, as expected)"
            )
        }
        _ => format!("SIGTERM → exit {code} after {took:.1} s"),
    };
    if code != expected {
        bail!("{what}, expected exit {expected} (app.json's stop_exit)");
    }
    Ok(what)
}

/// Waits until the container is ready: its health check passes, run by us with `docker exec` (the
/// image's own, or the contract's where the engine does not show it), else, with none, until the
/// first probe gets its answer at `addr` (None: the engine publishes elsewhere; then it must stay
/// up for a second). Fails at once when the server exits, and after `HEALTHY_WITHIN`, with the
/// real time. What was checked.
pub fn wait_healthy(
    ctx: &Ctx,
    name: &str,
    id: &str,
    app: &App,
    addr: Option<&str>,
    started: Instant,
) -> Result<String> {
    let check = health_command(ctx, id, app);
    // No probe: it serves no HTTP; then, without a health check, it must stay up for a second.
    let ready = addr.zip(app.probes.first());
    // What the health check said when it last failed: the reason, when it never passes.
    let mut said = String::new();
    loop {
        ctx.check_signal("waiting for the container to turn healthy")?;
        still_running(ctx, name, started)?;
        match (&check, ready) {
            (Some(check), _) => {
                match docker::exec(ctx, name, check, HEALTHY_WITHIN) {
                    Ok(_) => return Ok(format!("health check `{}` passed", check.join(" "))),
                    Err(e) => match ProcessError::of(&e).filter(|p| p.code().is_some()) {
                        // It answered, not healthy (yet).
                        Some(p) => said = format!("{}{}", p.stdout_text(), p.stderr_text()),
                        None => return Err(e),
                    },
                }
            }
            (None, Some((addr, probe))) => {
                if http::get(addr, &probe.path).is_ok_and(|(s, b)| probe.accepts(s, &b)) {
                    return Ok("no health check declared".into());
                }
            }
            (None, None) if started.elapsed() >= Duration::from_secs(1) => {
                return Ok("no health check declared, up for 1 s".into());
            }
            (None, None) => {}
        }
        if started.elapsed() >= HEALTHY_WITHIN {
            let what = match &check {
                Some(check) => format!(
                    "its health check (`{}`) did not pass{}",
                    check.join(" "),
                    match said.trim() {
                        "" => String::new(),
                        said => format!(" (it last said: {said})"),
                    }
                ),
                None => match ready {
                    Some((_, probe)) => {
                        format!("GET {} did not answer {}", probe.path, probe.expected())
                    }
                    None => "it did not stay up".into(),
                },
            };
            bail!("{what} within {:.1} s", started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fails, with its exit code and when, where the container's server has exited.
fn still_running(ctx: &Ctx, name: &str, started: Instant) -> Result<()> {
    let format = "{{.State.Running}} {{.State.ExitCode}}";
    let state = docker::container_state(ctx, name, format)?;
    if let Some(("false", code)) = state.split_once(' ') {
        bail!(
            "the server exited with code {code} {:.1} s after it started",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The command the image's HEALTHCHECK runs: `["CMD", args…]` as it is, `["CMD-SHELL", line]`
/// through `sh -c`, none for `["NONE"]`. An engine that does not show it (Podman's Docker API)
/// gets the contract's.
fn health_command(ctx: &Ctx, id: &str, app: &App) -> Option<Vec<String>> {
    let value = docker::inspect(ctx, id, "{{json .Config.Healthcheck.Test}}").unwrap_or_default();
    let test: Vec<String> = jzon::parse(&value)
        .unwrap_or(jzon::JsonValue::Null)
        .members()
        .filter_map(|w| w.as_str())
        .map(str::to_string)
        .collect();
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, [line])) if kind == "CMD-SHELL" => {
            Some(vec!["sh".into(), "-c".into(), line.clone()])
        }
        Some((kind, _)) if kind == "NONE" => None,
        _ => app.health_command("/"),
    }
}

/// The container's whole log, standard output and standard error as the app wrote them.
pub fn container_log(ctx: &Ctx, name: &str) -> String {
    match docker::logs(ctx, name, Duration::from_secs(10)) {
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
