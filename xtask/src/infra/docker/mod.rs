//! The docker CLI and the engine's API: which engine (the one the CLI itself would use:
//! DOCKER_HOST, DOCKER_CONTEXT, the current context, a rootless socket) and what it can build
//! with, here; the image queries the steps share (`images`); temporary containers that go however
//! a step ends (`containers`).

mod containers;
mod images;

pub use containers::*;
pub use images::*;

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{
    cmd,
    infra::{
        apt,
        ctx::Ctx,
        engine_api::{Api, ApiEnd, ApiError, Request},
        process::{Kind, ProcessError},
        tools,
    },
};

/// The engine as the xtask sees it.
#[derive(Debug, Clone)]
pub struct Engine {
    /// The engine's API version, e.g. (1, 41).
    pub api: (u32, u32),
    /// Where it keeps images: what it calls an image's ID, what it can build with.
    pub store: Store,
}

/// The image stores the xtask knows, as the engine states it (`docker version`'s components,
/// `docker info`'s driver status): never guessed from a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Docker's graphdriver store (Docker 20.10 to 28 by default): an image's ID is its config's
    /// digest.
    Classic,
    /// Docker's containerd image store (Docker Desktop 4.34+, Engine 29+): an image's ID is its
    /// manifest's digest.
    Containerd,
    /// Podman's Docker API: IDs are config digests; names are normalised to `docker.io/library/`
    /// or `localhost/`; no BuildKit, and no health checks without systemd.
    Podman,
}

impl Store {
    /// Whether the engine calls an image by its manifest's digest (else its config's).
    pub fn ids_by_manifest(self) -> bool {
        self == Store::Containerd
    }

    /// Whether the engine serves BuildKit builds.
    pub fn serves_buildkit(self) -> bool {
        self != Store::Podman
    }

    /// An image name as this engine's listings would show it, in the one form every comparison
    /// uses: `REPOSITORY:TAG` without Docker Hub's `docker.io/library/` (and, on Podman, without
    /// `localhost/`, its name for images from no registry).
    pub fn normalise(self, name: &str) -> String {
        // A name the engine lists that our grammar refuses is compared as it is.
        let familiar = name
            .parse::<crate::domain::ImageRef>()
            .map_or_else(|_| name.to_string(), |r| r.familiar());
        match familiar.strip_prefix("localhost/") {
            Some(rest) if self == Store::Podman => rest.to_string(),
            _ => familiar,
        }
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Store::Classic => "Docker, classic image store",
            Store::Containerd => "Docker, containerd image store",
            Store::Podman => "Podman",
        })
    }
}

/// How long the engine has to answer `docker version` (or the first query that stands for it).
const ANSWER: Duration = Duration::from_secs(4);
/// How long a listing of images may take.
const LIST_ANSWER: Duration = Duration::from_secs(60);
/// How long the engine may take to load an image once its archive is sent.
const LOAD_ANSWER: Duration = Duration::from_secs(600);

impl Engine {
    /// Multi-stage builds need API 1.31 (Docker 17.05).
    pub fn multistage(&self) -> bool {
        self.api >= (1, 31)
    }

    /// The engine, or a clear error that says why there is none and what to do.
    pub fn find(ctx: &Ctx) -> Result<Engine> {
        tools::require(ctx, &[tools::DOCKER])?;
        // Through the API when it answers there; the CLI says why no engine answers, but for a
        // stuck one (asked once: not twice for 4 s).
        if let Some(api) = api(ctx) {
            let ask = |path: &str, shown: &str| query_json(ctx, &api, path, shown, ANSWER);
            let asked = ask("/version", "docker version")
                .and_then(|server| Ok((server, ask("/info", "docker info")?)))
                .and_then(|(server, info)| Engine::of(&server, &info["DriverStatus"]));
            match asked {
                Ok(engine) => return Ok(engine),
                Err(e) => match e.downcast_ref::<ApiError>().map(|a| &a.end) {
                    Some(ApiEnd::NoAnswer(_)) => return Err(diagnose(ctx, e)),
                    Some(ApiEnd::Stopped(_)) => return Err(e),
                    _ => {}
                },
            }
        }
        let format = "{{json .Server}}";
        let server = ctx
            .read(cmd!("docker version --format {format}").within(ANSWER))
            .map_err(|e| diagnose(ctx, e))?;
        let format = "{{json .DriverStatus}}";
        let status = ctx
            .read(cmd!("docker info --format {format}").within(ANSWER))
            .map_err(|e| diagnose(ctx, e))?;
        let parse = |text: &str| jzon::parse(text).unwrap_or(jzon::JsonValue::Null);
        Engine::of(&parse(&server), &parse(&status))
    }

    /// The engine `docker version`'s server part and `docker info`'s driver status describe.
    fn of(server: &jzon::JsonValue, driver_status: &jzon::JsonValue) -> Result<Engine> {
        let api = server["ApiVersion"].as_str().unwrap_or("");
        let api = api
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .with_context(|| format!("unexpected engine API version `{api}`"))?;
        let podman = server["Components"]
            .members()
            .any(|c| c["Name"].as_str().is_some_and(|n| n.starts_with("Podman")));
        let snapshotter = driver_status.members().any(|pair| {
            pair[1]
                .as_str()
                .is_some_and(|v| v.contains("io.containerd.snapshotter"))
        });
        let store = match (podman, snapshotter) {
            (true, _) => Store::Podman,
            (false, true) => Store::Containerd,
            (false, false) => Store::Classic,
        };
        Ok(Engine { api, store })
    }

    /// The engine; when none answers and the CLI would use the local default socket, and we may
    /// (root, not `--no-setup`), starts the local `dockerd` in the background and waits for it.
    /// Never when the user pointed the CLI elsewhere.
    pub fn ensure(ctx: &Ctx) -> Result<Engine> {
        let down = match Engine::find(ctx) {
            Ok(engine) => return Ok(engine),
            Err(e) => e,
        };
        let pointed_elsewhere = ctx.var("DOCKER_HOST").is_some()
            || ctx.var("DOCKER_CONTEXT").is_some()
            || current_context(ctx).is_some_and(|c| c != "default");
        let refused = down
            .downcast_ref::<EngineDown>()
            .is_some_and(|d| d.kind == Down::Refused);
        if ctx.no_setup || pointed_elsewhere || refused || !apt::may_install_unasked() {
            return Err(down);
        }
        tools::require(ctx, &[tools::DOCKERD])?;
        ctx.step("setup: start dockerd", || {
            let log = camino::Utf8Path::new("/var/log/go-docker-prod-dockerd.log");
            ctx.announce("no Docker engine answers on the default socket: starting dockerd in the background");
            ctx.start_daemon(cmd!("dockerd"), log)?;
            for _ in 0..120 {
                ctx.check_signal("waiting for dockerd")?;
                if Engine::find(ctx).is_ok() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            bail!("dockerd did not answer within 30 s: see {log}")
        })?;
        Engine::find(ctx)
    }
}

/// Where the CLI sends requests: DOCKER_HOST, else the current context's endpoint.
pub fn endpoint(ctx: &Ctx) -> String {
    ctx.remember("the engine's endpoint", || {
        if let Some(host) = ctx.var("DOCKER_HOST") {
            return host;
        }
        let format = "{{.Endpoints.docker.Host}}";
        ctx.try_read(cmd!("docker context inspect --format {format}"))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
    })
}

/// Whether the engine at `endpoint` publishes ports on this host's loopback: the system socket,
/// a rootless one (rootlesskit forwards its ports), or TCP on loopback. Anything else (ssh://, a
/// remote address, a socket elsewhere: another machine, VM or network namespace) does not.
pub fn publishes_here(endpoint: &str) -> bool {
    let local_socket = endpoint
        .strip_prefix("unix://")
        .is_some_and(|p| p.starts_with("/var/run/") || p.starts_with("/run/"));
    let loopback = ["tcp://127.0.0.1:", "tcp://localhost:", "tcp://[::1]:"]
        .iter()
        .any(|p| endpoint.starts_with(p));
    local_socket || loopback
}

/// Which engine the CLI speaks to, as the key of what the record holds per engine, resolved as
/// the CLI resolves it: DOCKER_HOST, else the context (DOCKER_CONTEXT, else the CLI
/// configuration's current one); the default context is the default socket.
pub fn engine_key(ctx: &Ctx) -> String {
    ctx.remember("the engine's key", || resolve_engine_key(ctx))
}

fn resolve_engine_key(ctx: &Ctx) -> String {
    const DEFAULT: &str = "unix:///var/run/docker.sock";
    let set = |name: &str| ctx.var(name).filter(|v| !v.is_empty());
    if let Some(host) = set("DOCKER_HOST") {
        return host;
    }
    let config_dir = set("DOCKER_CONFIG")
        .map(camino::Utf8PathBuf::from)
        .or_else(|| set("HOME").map(|home| camino::Utf8PathBuf::from(home).join(".docker")));
    let configured = || {
        let text = std::fs::read_to_string(config_dir?.join("config.json")).ok()?;
        jzon::parse(&text).ok()?["currentContext"]
            .as_str()
            .map(str::to_string)
    };
    match set("DOCKER_CONTEXT").or_else(configured) {
        Some(context) if context != "default" => format!("context:{context}"),
        _ => DEFAULT.to_string(),
    }
}

/// The engine's API socket, when the CLI reaches the engine through one (`engine_api`).
fn api(ctx: &Ctx) -> Option<Api> {
    Api::at(&engine_key(ctx))
}

/// A query of the engine's API, shown as the `docker` command it stands for.
fn query(path: &str, shown: &str) -> Request {
    Request {
        method: "GET",
        path: path.to_string(),
        body: None,
        shown: shown.to_string(),
        kind: Kind::Query,
    }
}

/// A query's answer, as JSON, within `timeout`.
fn query_json(
    ctx: &Ctx,
    api: &Api,
    path: &str,
    shown: &str,
    timeout: Duration,
) -> Result<jzon::JsonValue> {
    let body = ctx.request(api, query(path, shown), timeout)?;
    jzon::parse(&String::from_utf8_lossy(&body)).context("the engine's answer is not JSON")
}

fn current_context(ctx: &Ctx) -> Option<String> {
    ctx.try_read(cmd!("docker context show"))
}

/// Turns "the engine did not answer" into which case it is, and the fix.
fn diagnose(ctx: &Ctx, e: anyhow::Error) -> anyhow::Error {
    let why = ProcessError::of(&e).map_or_else(|| format!("{e:#}"), ProcessError::stderr_text);
    let at = endpoint(ctx);
    let kind = Down::classify(&at, &why);
    let message = match kind {
        Down::Refused => format!(
            "the Docker engine at {at} refused this user (permission denied): you are not in the \
             `docker` group. Run `sudo usermod -aG docker $USER`, then log in again (or `newgrp docker`). \
             ({why})"
        ),
        Down::NotDocker => format!(
            "the engine at {at} answers, but its `docker version` lacks the server's API version \
             (podman's docker shim?). This tool needs Docker's engine API: run Docker Engine, or point \
             DOCKER_HOST at one. ({why})"
        ),
        Down::RootlessNotStarted => format!(
            "cannot reach the rootless Docker engine at {at}: it is not started. Run \
             `systemctl --user start docker` (or `dockerd-rootless.sh`). ({why})"
        ),
        Down::Unreachable => format!(
            "cannot reach the Docker engine at {at}: {why}\n\
             Start it (`sudo systemctl start docker`; as root `cargo xtask setup` starts a local dockerd), \
             or point DOCKER_HOST or DOCKER_CONTEXT at a running engine."
        ),
    };
    anyhow::Error::new(EngineDown { kind, message })
}

/// `Engine::find`'s error: why no engine answered (`kind`, for callers to match on) and what the
/// user does about it.
#[derive(Debug)]
pub struct EngineDown {
    pub kind: Down,
    message: String,
}

impl std::fmt::Display for EngineDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EngineDown {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    /// The socket refused this user.
    Refused,
    /// Something answered that is not Docker's engine API.
    NotDocker,
    /// A rootless engine's socket, not there.
    RootlessNotStarted,
    Unreachable,
}

impl Down {
    /// From where the CLI went (`at`) and what it said.
    fn classify(at: &str, said: &str) -> Down {
        let rootless = at.contains("/run/user/") || at.contains("/.docker/run/");
        if said.contains("permission denied") {
            Down::Refused
        } else if said.contains("template") || said.contains("can't evaluate field") {
            Down::NotDocker
        } else if rootless && (said.contains("no such file") || said.contains("connect:")) {
            Down::RootlessNotStarted
        } else {
            Down::Unreachable
        }
    }
}

/// How BuildKit builds reach the engine from this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildKit {
    /// Through the buildx plugin (clients from 23 on), else the client's built-in BuildKit.
    pub buildx: bool,
    /// The current buildx builder keeps images in its own container (`docker-container` driver):
    /// `--load` brings the image into the engine.
    pub load: bool,
}

impl BuildKit {
    /// BuildKit from this client, if it has it.
    pub fn detect(ctx: &Ctx) -> Option<BuildKit> {
        // Clients before 23 have BuildKit built in; later ones through the buildx plugin.
        let client = ctx.try_read(cmd!("docker --version")).unwrap_or_default();
        let major: u32 = client
            .strip_prefix("Docker version ")
            .and_then(|v| v.split('.').next()?.parse().ok())
            .unwrap_or(0);
        if major > 0 && major < 23 {
            return Some(BuildKit {
                buildx: false,
                load: false,
            });
        }
        if !tools::BUILDX.present() && ctx.try_read(cmd!("docker buildx version")).is_none() {
            return None;
        }
        let driver = ctx.try_read(cmd!("docker buildx inspect")).and_then(|out| {
            out.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("Driver:")
                    .map(|d| d.trim().to_string())
            })
        });
        Some(BuildKit::through_buildx(driver.as_deref()))
    }

    /// The buildx rule: only the engine's own builder (`docker` driver) puts images in the engine;
    /// any other driver needs `--load`.
    fn through_buildx(driver: Option<&str>) -> BuildKit {
        BuildKit {
            buildx: true,
            load: driver.is_some_and(|d| d != "docker"),
        }
    }
}

/// Docker's own words for why it refused a removal (a container uses the image, an image is
/// built on it).
pub fn refusal(e: &anyhow::Error) -> String {
    if let Some(refusal) = e.downcast_ref::<ApiError>().and_then(ApiError::refusal) {
        return refusal.to_string();
    }
    let text = ProcessError::of(e).map_or_else(|| format!("{e:#}"), |p| p.stderr_text());
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_start_matches("Error response from daemon: "))
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let parse = |text: &str| jzon::parse(text).unwrap();
        let classic = parse(r#"[["Backing Filesystem","extfs"],["Supports d_type","true"]]"#);
        let docker = parse(
            r#"{"ApiVersion":"1.41","Components":[{"Name":"Engine"},{"Name":"containerd"}]}"#,
        );
        let e = Engine::of(&docker, &classic).unwrap();
        assert_eq!((e.api, e.store), ((1, 41), Store::Classic));
        assert!(e.multistage());
        assert!(Engine::of(&parse(r#"{"Components":[]}"#), &classic).is_err());
        let containerd = parse(r#"[["driver-type","io.containerd.snapshotter.v1"]]"#);
        assert_eq!(
            Engine::of(&docker, &containerd).unwrap().store,
            Store::Containerd
        );
        let podman = parse(
            r#"{"ApiVersion":"1.41","Components":[{"Name":"Podman Engine"},{"Name":"Conmon"}]}"#,
        );
        assert_eq!(Engine::of(&podman, &classic).unwrap().store, Store::Podman);
    }

    /// A buildx builder other than the engine's own keeps images to itself: `--load` brings them.
    #[test]
    fn buildx_load_rule() {
        assert!(!BuildKit::through_buildx(Some("docker")).load);
        assert!(BuildKit::through_buildx(Some("docker-container")).load);
        assert!(BuildKit::through_buildx(Some("kubernetes")).load);
        assert!(BuildKit::through_buildx(Some("remote")).load);
        assert!(!BuildKit::through_buildx(None).load);
    }

    #[test]
    fn where_published_ports_are() {
        assert!(publishes_here("unix:///var/run/docker.sock"));
        assert!(publishes_here("unix:///run/user/1000/docker.sock"));
        assert!(publishes_here("tcp://127.0.0.1:2375"));
        assert!(!publishes_here("ssh://me@build-host"));
        assert!(!publishes_here("tcp://10.0.0.5:2376"));
        assert!(!publishes_here("unix:///var/tmp/xr-1/docker.sock"));
    }
}
