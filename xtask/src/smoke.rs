//! `image --smoke`: run the image hardened (read-only, no capabilities) on a free loopback port,
//! check /healthz and /hello/x, stop it with SIGTERM (it must exit 0), remove it.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::{ctx::Ctx, docker::TempContainer, http, project};

pub fn run(ctx: &Ctx, image: &str) -> Result<()> {
    ctx.step(&format!("smoke test {image}"), || {
        let publish = format!("127.0.0.1::{}", project::APP_PORT);
        let container = TempContainer::create(
            ctx,
            image,
            "smoke",
            &["--read-only", "--cap-drop", "ALL", "-p", &publish],
        )?;
        if ctx.global.dry_run {
            return Ok(());
        }
        let sh = &ctx.sh;
        let name = &container.name;
        cmd!(sh, "docker start {name}")
            .quiet()
            .ignore_stdout()
            .run()
            .context("starting the container")?;
        let port = format!("{}/tcp", project::APP_PORT);
        let addr = cmd!(sh, "docker port {name} {port}")
            .quiet()
            .read()
            .context("finding the published port")?;
        let addr = addr
            .lines()
            .find(|l| l.starts_with("127.0.0.1:"))
            .context("no loopback port published")?
            .to_string();
        let healthy = http::wait_ok(&addr, "/healthz", Duration::from_secs(10));
        if crate::interrupt::happened() {
            bail!("interrupted during the smoke test");
        }
        if !healthy {
            let logs = cmd!(sh, "docker logs {name}")
                .quiet()
                .read_stderr()
                .unwrap_or_default();
            bail!(
                "{image} did not answer /healthz on {addr} within 10 s (with a remote engine, the port is \
                 published on the engine's host, out of our reach); its log:\n{logs}"
            );
        }
        let (status, body) = http::get(&addr, "/hello/x").context("GET /hello/x")?;
        if status != 200 || body != "Hello, x!\n" {
            bail!("GET /hello/x answered {status} {body:?}, expected 200 \"Hello, x!\\n\"");
        }
        cmd!(sh, "docker stop -t 5 {name}")
            .quiet()
            .ignore_stdout()
            .run()
            .context("stopping the container")?;
        let format = "{{.State.ExitCode}}";
        let code = cmd!(sh, "docker inspect --format {format} {name}")
            .quiet()
            .read()?;
        if code.trim() != "0" {
            bail!("{image} exited with {code} after SIGTERM, expected 0");
        }
        println!("smoke: {image} answered /healthz and /hello/x on {addr}; SIGTERM → exit 0");
        Ok(())
    })
}
