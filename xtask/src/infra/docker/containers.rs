//! Containers: temporary ones of ours, confined, that go however a step ends; which use an image.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use camino::Utf8Path;

use super::*;
use crate::{
    cmd,
    infra::{
        ctx::Ctx,
        engine_api::{escape, Request},
        fsx,
        process::Kind,
    },
    project,
};

/// Whether a container, running or not, was made from `id` or from an image built on it.
pub fn in_use(ctx: &Ctx, id: &str) -> Result<bool> {
    let filter = format!("ancestor={id}");
    let found = match api(ctx) {
        Some(api) => {
            let filters = jzon::object! { "ancestor": [id] }.dump();
            let path = format!("/containers/json?all=1&filters={}", escape(&filters));
            let shown = format!("docker ps -a -q --filter {filter}");
            !query_json(ctx, &api, &path, &shown, LIST_ANSWER)?.is_empty()
        }
        None => !ctx
            .read(cmd!("docker ps -a -q --filter {filter}").within(LIST_ANSWER))?
            .is_empty(),
    };
    Ok(found)
}

/// Removes the temporary containers of the checkout `checkout_id` (its lock held: none of its
/// xtasks runs now, so these are what a stopped one left): how many.
pub fn remove_temp_containers(ctx: &Ctx, checkout_id: &str) -> Result<usize> {
    let label = label_filter(project::LABEL_TEMP, checkout_id);
    let list = || -> Result<BTreeSet<String>> {
        let out = ctx.read(cmd!("docker ps -a -q --no-trunc --filter {label}"))?;
        Ok(out
            .lines()
            .filter(|l| is_hex_id(l))
            .map(str::to_string)
            .collect())
    };
    let left = list()?;
    if left.is_empty() {
        return Ok(0);
    }
    let ids = left.clone();
    ctx.run(cmd!("docker rm -f {ids...}").quiet())?;
    // What the engine no longer lists went.
    Ok(left.difference(&list()?).count())
}

/// A full container ID as the engine prints it: 64 lower-case hex digits.
fn is_hex_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// How a container of ours that runs the app or waits (`dev`'s, the smoke test's) is confined
/// and connected: read-only and without capabilities always; the rest as its use needs. Said
/// once, as `docker run` flags and as the engine API's create request.
#[derive(Default)]
pub struct Confined<'a> {
    pub user: Option<&'a str>,
    /// The container whose network this one joins.
    pub network_of: Option<&'a str>,
    /// Ports published on this host's loopback: (the port here, None: the engine picks; inside).
    pub publish: Vec<(Option<u16>, u16)>,
    pub env: Vec<String>,
    /// Without the image's periodic health check.
    pub no_healthcheck: bool,
}

impl Confined<'_> {
    /// As `docker create`/`run` flags.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["--read-only", "--cap-drop", "ALL"]
            .map(String::from)
            .into();
        if let Some(user) = self.user {
            args.extend(["--user".into(), user.into()]);
        }
        if let Some(other) = self.network_of {
            args.extend(["--network".into(), format!("container:{other}")]);
        }
        for (here, inside) in &self.publish {
            let here = here.map_or(String::new(), |p| p.to_string());
            args.extend(["-p".into(), format!("127.0.0.1:{here}:{inside}")]);
        }
        for env in &self.env {
            args.extend(["-e".into(), env.clone()]);
        }
        if self.no_healthcheck {
            args.push("--no-healthcheck".into());
        }
        args
    }

    /// The engine API's container configuration for the same.
    fn config(&self, image: &str, command: &[&str], label: (&str, &str)) -> jzon::JsonValue {
        let mut config = jzon::object! {
            "Image": image,
            "Env": self.env.clone(),
            "HostConfig": { "ReadonlyRootfs": true, "CapDrop": ["ALL"] },
        };
        config["Labels"][label.0] = label.1.into();
        if !command.is_empty() {
            config["Cmd"] = command.into();
        }
        if let Some(user) = self.user {
            config["User"] = user.into();
        }
        if let Some(other) = self.network_of {
            config["HostConfig"]["NetworkMode"] = format!("container:{other}").into();
        }
        for (here, inside) in &self.publish {
            let port = format!("{inside}/tcp");
            let here = here.map_or(String::new(), |p| p.to_string());
            config["ExposedPorts"][port.as_str()] = jzon::object! {};
            config["HostConfig"]["PortBindings"][port.as_str()] =
                jzon::array![{ "HostIp": "127.0.0.1", "HostPort": here.as_str() }];
        }
        if self.no_healthcheck {
            config["Healthcheck"] = jzon::object! { "Test": ["NONE"] };
        }
        config
    }
}

/// A temporary container, removed however the step ends (also after a signal). It carries
/// `LABEL_TEMP` with the checkout's id, so `clean` finds one a killed run left behind; its name
/// has a random part, so no leftover ever blocks the next run.
pub struct TempContainer<'a> {
    ctx: &'a Ctx,
    pub name: String,
}

impl<'a> TempContainer<'a> {
    pub fn create(
        ctx: &'a Ctx,
        checkout_id: &str,
        image: &str,
        purpose: &str,
        extra: &[&str],
        command: &[&str],
    ) -> Result<TempContainer<'a>> {
        TempContainer::make(ctx, "create", checkout_id, image, purpose, extra, command)
    }

    /// A container confined as `confined` says, started at once: through the engine's API
    /// where it has a local socket (create and start: no CLI process, about 15 ms less), else
    /// `docker run -d`.
    pub fn run(
        ctx: &'a Ctx,
        checkout_id: &str,
        image: &str,
        purpose: &str,
        confined: &Confined,
        command: &[&str],
    ) -> Result<TempContainer<'a>> {
        let args = confined.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let Some(api) = api(ctx) else {
            let extra = [&["-d"][..], &args].concat();
            return TempContainer::make(ctx, "run", checkout_id, image, purpose, &extra, command);
        };
        let container = TempContainer {
            ctx,
            name: TempContainer::new_name(purpose),
        };
        let name = &container.name;
        let config = confined.config(image, command, (project::LABEL_TEMP, checkout_id));
        let create = Request {
            method: "POST",
            path: format!("/containers/create?name={}", escape(name)),
            body: Some(config.dump()),
            shown: [
                &["docker", "create", "--name", name.as_str()][..],
                &args,
                &[image],
                command,
            ]
            .concat()
            .join(" "),
            // Cut short, the engine could make it after the guard's removal.
            kind: Kind::Whole,
        };
        let start = Request {
            method: "POST",
            path: format!("/containers/{}/start", escape(name)),
            body: None,
            shown: format!("docker start {name}"),
            kind: Kind::Change,
        };
        ctx.request(&api, create, LIST_ANSWER)
            .and_then(|_| ctx.request(&api, start, LIST_ANSWER))
            .with_context(|| format!("making a container from {image}"))?;
        Ok(container)
    }

    /// `purpose` names whose container it is and what for: `APP-smoke`, `go-docker-prod-base`.
    fn new_name(purpose: &str) -> String {
        format!("{purpose}-{}", fsx::random_hex(6))
    }

    fn make(
        ctx: &'a Ctx,
        verb: &str,
        checkout_id: &str,
        image: &str,
        purpose: &str,
        extra: &[&str],
        command: &[&str],
    ) -> Result<TempContainer<'a>> {
        let name = TempContainer::new_name(purpose);
        let label = format!("{}={checkout_id}", project::LABEL_TEMP);
        // The guard first, and the command let finish: cut short by Ctrl-C, the CLI would leave
        // the engine making a container after the guard's `docker rm`.
        let container = TempContainer { ctx, name };
        let name = &container.name;
        ctx.run(
            cmd!("docker {verb} --name {name} --label {label} {extra...} {image} {command...}")
                .quiet()
                .whole(),
        )
        .with_context(|| format!("making a container from {image}"))?;
        Ok(container)
    }
}

impl Drop for TempContainer<'_> {
    fn drop(&mut self) {
        let name = &self.name;
        if let Err(e) = self.ctx.cleanup(cmd!("docker rm -f {name}")) {
            // Not an error when it was never made (its `docker create` failed).
            let filter = format!("name=^{name}$");
            if self
                .ctx
                .try_read(cmd!("docker ps -a -q --filter {filter}"))
                .is_some()
            {
                self.ctx
                    .warn(format!("could not remove container {name}: {e:#}"));
            }
        }
    }
}

/// Starts the container `name` made.
pub fn start(ctx: &Ctx, name: &str) -> Result<()> {
    ctx.run(cmd!("docker start {name}").quiet())
        .map(drop)
        .context("starting the container")
}

/// Starts the container `name` made and waits for its end: what it wrote to its standard output.
pub fn start_attached(ctx: &Ctx, name: &str) -> Result<String> {
    ctx.run(cmd!("docker start --attach {name}").kept())
}

/// Copies `path` out of the container `name` (a directory's contents with `PATH/.`) to `to` on
/// this host; a link at `path` is followed.
pub fn copy_out(ctx: &Ctx, name: &str, path: &str, to: &Utf8Path) -> Result<()> {
    let from = format!("{name}:{path}");
    ctx.run(cmd!("docker cp --follow-link {from} {to}").quiet())
        .map(drop)
        .with_context(|| format!("copying {path} out of the container {name}"))
}

/// Where the engine published the container's `port` (`8080/tcp`): `docker port`'s lines.
pub fn port(ctx: &Ctx, name: &str, port: &str) -> Result<String> {
    ctx.read(cmd!("docker port {name} {port}"))
}

/// Stops the container with SIGTERM; the engine kills it after `within_s` seconds. A clean-up:
/// it runs after a signal too.
pub fn stop(ctx: &Ctx, name: &str, within_s: u64) -> Result<()> {
    let within = within_s.to_string();
    ctx.cleanup(cmd!("docker stop -t {within} {name}"))
        .map(drop)
}

/// `docker inspect --format FORMAT` of the container `name`.
pub fn container_state(ctx: &Ctx, name: &str, format: &str) -> Result<String> {
    ctx.read(cmd!("docker inspect --format {format} {name}"))
}

/// Runs `command` in the running container, within `timeout`: its output.
pub fn exec(ctx: &Ctx, name: &str, command: &[String], timeout: Duration) -> Result<String> {
    ctx.read(cmd!("docker exec {name} {command...}").within(timeout))
}

/// The container's log so far, both outputs as written, within `timeout`.
pub fn logs(ctx: &Ctx, name: &str, timeout: Duration) -> Result<String> {
    ctx.read(cmd!("docker logs {name}").both_outputs().within(timeout))
}

/// The container's log as it comes, into `writer`, until it ends or the run does.
pub fn follow_logs(
    ctx: &Ctx,
    name: &str,
    writer: os_pipe::PipeWriter,
) -> Result<crate::infra::process::Running> {
    ctx.start(cmd!("docker logs -f {name}").output_to(writer).as_cleanup())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags and the API's configuration say the same confinement.
    #[test]
    fn a_confined_container_is_said_alike_as_flags_and_as_api_config() {
        let confined = Confined {
            user: Some("65534:65534"),
            network_of: Some("holder"),
            publish: vec![(Some(1234), 8080), (None, 8081)],
            env: vec!["PORT=8080".into()],
            no_healthcheck: true,
        };
        assert_eq!(
            confined.args().join(" "),
            "--read-only --cap-drop ALL --user 65534:65534 --network container:holder \
             -p 127.0.0.1:1234:8080 -p 127.0.0.1::8081 -e PORT=8080 --no-healthcheck"
        );
        let config = confined.config("img", &["sleep", "1"], ("k", "v"));
        let host = &config["HostConfig"];
        assert_eq!(host["ReadonlyRootfs"], true);
        assert_eq!(host["CapDrop"][0], "ALL");
        assert_eq!(host["NetworkMode"], "container:holder");
        assert_eq!(host["PortBindings"]["8080/tcp"][0]["HostIp"], "127.0.0.1");
        assert_eq!(host["PortBindings"]["8080/tcp"][0]["HostPort"], "1234");
        assert_eq!(host["PortBindings"]["8081/tcp"][0]["HostPort"], "");
        assert!(config["ExposedPorts"].has_key("8081/tcp"));
        assert_eq!(config["User"], "65534:65534");
        assert_eq!(config["Env"][0], "PORT=8080");
        assert_eq!(config["Cmd"][1], "1");
        assert_eq!(config["Labels"]["k"], "v");
        assert_eq!(config["Healthcheck"]["Test"][0], "NONE");
        let plain = Confined::default().config("img", &[], ("k", "v"));
        assert!(plain["Cmd"].is_null() && plain["Healthcheck"].is_null());
        assert!(plain["HostConfig"]["NetworkMode"].is_null());
    }
}
