//! The docker CLI: which engine (the one the CLI itself would use: DOCKER_HOST, DOCKER_CONTEXT,
//! the current context, a rootless socket), what it can build with, the image queries the steps
//! share, and temporary containers that go however a step ends.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::{
    cmd,
    domain::Digest,
    infra::{
        apt,
        ctx::Ctx,
        engine_api::{escape, Api, ApiEnd, ApiError, Pending, Request, Upload},
        fsx,
        process::{Kind, ProcessError, Running},
        tools,
    },
    project,
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
        let familiar = crate::domain::ImageRef(name.to_string()).familiar();
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

/// Names `id` `tag` (the tag leaves the image it named).
pub fn tag(ctx: &Ctx, id: &str, tag: &str) -> Result<()> {
    let done = match api(ctx) {
        Some(api) => {
            let reference = crate::domain::ImageRef(tag.to_string());
            let (repo, version) = reference.repository_and_tag();
            let request = Request {
                method: "POST",
                path: format!(
                    "/images/{id}/tag?repo={}&tag={}",
                    escape(repo),
                    escape(version.unwrap_or("latest"))
                ),
                body: None,
                shown: format!("docker tag {id} {tag}"),
                kind: Kind::Change,
            };
            ctx.request(&api, request, LIST_ANSWER).map(drop)
        }
        None => ctx.run(cmd!("docker tag {id} {tag}").quiet()).map(drop),
    };
    done.with_context(|| format!("tagging {id} as {tag}"))
}

/// `docker load -q` of an archive sent while it is made (`LoadInput`); the image loads untagged,
/// or under the `name` the archive gives it. Through the engine's API where it has a local socket
/// (a CLI process costs about 15 ms here, and runs beside Go's link), else the CLI, fed through a
/// pipe. `Loading::wait` says how it went.
pub fn load(ctx: &Ctx, name: Option<&str>) -> Result<(LoadInput, Loading)> {
    let archive = match name {
        Some(name) => format!("(the archive of the image, once built, named {name})"),
        None => "(the archive of the image, once built)".to_string(),
    };
    if let Some(api) = api(ctx) {
        let request = Request {
            method: "POST",
            path: "/images/load?quiet=1".into(),
            body: None,
            shown: format!("docker load -q < {archive}"),
            kind: Kind::Fed,
        };
        return Ok(match ctx.upload(&api, request)? {
            Some((upload, pending)) => (LoadInput::Api(upload), Loading::Api(pending)),
            None => (LoadInput::Nowhere, Loading::Nothing),
        });
    }
    let (reader, input) = os_pipe::pipe().context("making a pipe to docker load")?;
    let running = ctx.start(cmd!("docker load -q").stdin(reader, &archive).fed())?;
    Ok((LoadInput::Pipe(input), Loading::Cli(Box::new(running))))
}

/// Where `load`'s archive goes. Dropped unfinished, the archive ends cut short: nothing loads.
pub enum LoadInput {
    Pipe(os_pipe::PipeWriter),
    Api(Upload),
    /// `--dry-run`.
    Nowhere,
}

impl LoadInput {
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        match self {
            LoadInput::Pipe(pipe) => pipe.write_all(bytes),
            LoadInput::Api(upload) => upload.send(bytes),
            LoadInput::Nowhere => Ok(()),
        }
    }

    /// The archive's end: the engine loads it.
    pub fn finish(self) -> std::io::Result<()> {
        match self {
            LoadInput::Api(upload) => upload.finish(),
            LoadInput::Pipe(_) | LoadInput::Nowhere => Ok(()),
        }
    }
}

/// A `load` under way.
pub enum Loading {
    Cli(Box<Running>),
    Api(Pending),
    /// `--dry-run`.
    Nothing,
}

impl Loading {
    pub fn wait(self) -> Result<()> {
        match self {
            Loading::Cli(running) => running.wait().map(drop),
            Loading::Api(pending) => {
                let shown = pending.shown().to_string();
                let body = pending.answer(LOAD_ANSWER)?;
                match stream_error(&body) {
                    Some(message) => Err(ApiError {
                        shown,
                        end: ApiEnd::Refused {
                            status: 200,
                            message,
                        },
                    }
                    .into()),
                    None => Ok(()),
                }
            }
            Loading::Nothing => Ok(()),
        }
    }
}

/// The failure an engine's stream of JSON messages reports (`{"error": …}`): one that came
/// after its answer began, with status 200.
fn stream_error(body: &[u8]) -> Option<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|line| jzon::parse(line).ok())
        .find_map(|message| message["error"].as_str().map(str::to_string))
}

/// What the engine says of each of `refs` it has (`docker image inspect`'s JSON); a missing one
/// is left out.
fn inspect_json(ctx: &Ctx, refs: &[&str]) -> Result<Vec<jzon::JsonValue>> {
    let parse = |text: &str| jzon::parse(text).context("the engine's answer is not JSON");
    let Some(api) = api(ctx) else {
        let out = inspect_each(ctx, "{{json .}}", refs)?;
        return out.lines().map(parse).collect();
    };
    let mut found = Vec::new();
    for reference in refs {
        let path = format!("/images/{reference}/json");
        let shown = format!("docker image inspect {reference}");
        match ctx.request(&api, query(&path, &shown), LIST_ANSWER) {
            Ok(body) => found.push(parse(&String::from_utf8_lossy(&body))?),
            Err(e)
                if e.downcast_ref::<ApiError>()
                    .is_some_and(ApiError::not_found) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
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

/// The image's ID, when the engine has it.
pub fn image_id(ctx: &Ctx, reference: &str) -> Option<String> {
    inspect(ctx, reference, "{{.Id}}")
}

/// `docker image inspect --format FORMAT REF`, when the engine has the image.
pub fn inspect(ctx: &Ctx, reference: &str, format: &str) -> Option<String> {
    ctx.try_read(cmd!("docker image inspect --format {format} {reference}"))
}

/// Some images by name, as one `docker image inspect` finds them (a listing of every image is
/// slow on the containerd store, which sizes each): ID and each name, in the store's normal form.
#[derive(Default)]
pub struct ImageList {
    store: Option<Store>,
    images: Vec<(String, String)>,
    /// The IDs of those built on an image the engine keeps (the legacy builder's steps).
    parented: BTreeSet<String>,
}

impl ImageList {
    /// The images `names` name (those the engine has).
    pub fn of(ctx: &Ctx, engine: &Engine, names: &[&str]) -> Result<ImageList> {
        let found = inspect_json(ctx, names).context("asking the engine about images")?;
        let store = engine.store;
        let mut images = Vec::new();
        let mut parented = BTreeSet::new();
        for image in &found {
            let id = image["Id"].as_str().unwrap_or_default();
            let tags = image["RepoTags"].members().filter_map(|t| t.as_str());
            images.extend(tags.map(|name| (id.to_string(), store.normalise(name))));
            if !image["Parent"].as_str().unwrap_or_default().is_empty() {
                parented.insert(id.to_string());
            }
        }
        Ok(ImageList {
            store: Some(store),
            images,
            parented,
        })
    }

    /// Whether the image `id` was built on an image the engine keeps.
    pub fn has_parent(&self, id: &str) -> bool {
        self.parented.contains(id)
    }

    /// The image `tag` names.
    pub fn id_of(&self, tag: &str) -> Option<String> {
        let tag = self
            .store
            .map_or_else(|| tag.to_string(), |s| s.normalise(tag));
        self.images
            .iter()
            .find(|(_, r)| *r == tag)
            .map(|(i, _)| i.clone())
    }
}

/// An image's label, when it has it.
pub fn label(ctx: &Ctx, reference: &str, key: &str) -> Option<String> {
    let format = format!("{{{{index .Config.Labels \"{key}\"}}}}");
    inspect(ctx, reference, &format).filter(|v| v != "<no value>")
}

/// Tries `docker pull`; false when it cannot (`--offline`, or the registry did not answer in
/// this run already).
pub fn try_pull(ctx: &Ctx, reference: &str) -> bool {
    let registry = crate::domain::registry_of(reference);
    if ctx.offline || ctx.is_unreachable(&registry) {
        return false;
    }
    match ctx.run(cmd!("docker pull -q {reference}").quiet()) {
        Ok(_) => true,
        Err(e) => {
            // Not "not found": the registry itself did not answer; do not ask it again this run.
            let why = ProcessError::of(&e).map_or_else(|| format!("{e:#}"), |p| p.stderr_text());
            if !why.contains("not found") && !why.contains("manifest unknown") {
                ctx.mark_unreachable(&registry);
            }
            false
        }
    }
}

/// Removes an image or a tag of ours without `-f`: an image a container uses, or one with another
/// tag, stays. Errors say why.
pub fn remove_image(ctx: &Ctx, reference: &str) -> Result<()> {
    match api(ctx) {
        Some(api) => {
            let request = Request {
                method: "DELETE",
                path: format!("/images/{reference}"),
                body: None,
                shown: format!("docker image rm {reference}"),
                kind: Kind::Cleanup,
            };
            ctx.request(&api, request, LIST_ANSWER).map(drop)
        }
        None => ctx.cleanup(cmd!("docker image rm {reference}")),
    }
}

/// Removes images of ours in one `docker image rm` (without `-f`), which lets the engine order a
/// chain of intermediate images itself (Podman keeps a build's intermediate images); what the
/// engine refuses (an image a container uses, or with a child) stays: the refusals, in Docker's
/// words.
pub fn remove_images(ctx: &Ctx, ids: &[&str]) -> Vec<String> {
    if ids.is_empty() {
        return Vec::new();
    }
    match ctx.cleanup(cmd!("docker image rm {ids...}")) {
        Ok(()) => Vec::new(),
        Err(e) => refusal(&e).lines().map(str::to_string).collect(),
    }
}

/// The image's ancestors that our Dockerfiles made (they carry the project label, which every
/// stage sets in its first step: the chain stops at the base), nearest first, each made no later
/// than its child (Podman names as parent any image with the same top layer, an image derived
/// later from ours too). The legacy builder keeps intermediate images as parents, and Docker's
/// containerd store keeps them when the result goes. `parent`, when known (`names` says it): no
/// query for an image without one; else one inspect of every image.
pub fn ancestors(ctx: &Ctx, id: &str, parent: Option<Option<String>>) -> Result<Vec<String>> {
    let parent = match parent {
        Some(known) => known,
        None => inspect(ctx, id, "{{.Parent}}").and_then(|p| with_prefix(&p)),
    };
    let Some(first) = parent else {
        return Ok(Vec::new());
    };
    let all = images(ctx, &[])?;
    let format = format!(
        "{{{{.Id}}}}|{{{{index .Config.Labels \"{}\"}}}}|{{{{.Created}}}}|{{{{.Parent}}}}",
        project::LABEL_PROJECT
    );
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = inspect_each(ctx, &format, &all)?;
    // Image → (parent, made at), for the images our Dockerfiles made.
    let mut ours: BTreeMap<String, (Option<String>, std::time::SystemTime)> = BTreeMap::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split('|').collect();
        let [image, label, created, parent] = fields[..] else {
            continue;
        };
        let (Some(image), Ok(created)) =
            (with_prefix(image), humantime::parse_rfc3339_weak(created))
        else {
            continue;
        };
        if label == project::TOOL {
            ours.insert(image, (with_prefix(parent), created));
        }
    }
    let Some(&(_, made)) = ours.get(&with_prefix(id).unwrap_or_default()) else {
        return Ok(Vec::new());
    };
    let mut chain = Vec::new();
    let (mut next, mut child_made) = (Some(first), made);
    while let Some(image) = next.take() {
        let Some((parent, made)) = ours.get(&image) else {
            break;
        };
        if *made > child_made || chain.contains(&image) {
            break;
        }
        (next, child_made) = (parent.clone(), *made);
        chain.push(image);
    }
    Ok(chain)
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

/// An image ID as `sha256:…`, from what the engine prints of a parent (Podman: bare hex; none: empty).
fn with_prefix(id: &str) -> Option<String> {
    Digest::parse(id).map(Digest::into_string)
}

/// What the engine says of an image it has.
#[derive(Debug, Default, Clone)]
pub struct Present {
    /// `REPOSITORY:TAG`, as the engine prints them.
    pub names: Vec<String>,
    /// Its parent (`Some(None)`: none), when the engine was asked.
    pub parent: Option<Option<String>>,
}

/// `docker image inspect --format FORMAT REFS…`: what it printed of the images the engine has.
/// A missing image makes it exit 1, saying so for each: an answer, not a failure.
fn inspect_each(ctx: &Ctx, format: &str, refs: &[&str]) -> Result<String> {
    let asked = cmd!("docker image inspect --format {format} {refs...}").within(LIST_ANSWER);
    match ctx.read(asked) {
        Ok(out) => Ok(out),
        Err(e) => match ProcessError::of(&e) {
            Some(failed) if failed.code() == Some(1) && missing_only(&failed.stderr_text()) => {
                Ok(failed.stdout_text())
            }
            _ => Err(e),
        },
    }
}

/// Whether every line of an inspect's error output says an image is missing (Docker: `No such
/// image`, `No such object`; Podman: `image not known`).
fn missing_only(stderr: &str) -> bool {
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines.all(|l| {
        let l = l.to_ascii_lowercase();
        ["no such image", "no such object", "image not known"]
            .iter()
            .any(|m| l.contains(m))
    })
}

/// How many images one `docker image inspect` asks about.
const BATCH: usize = 1000;

/// The names (`REPOSITORY:TAG`) of each of `ids` the engine has: an ID missing from the answer
/// is not in the engine. A few IDs are asked with one inspect (a listing of every image is slow on
/// the containerd store, which sizes each); many (a large record) with one listing, however many
/// there are.
pub fn names(ctx: &Ctx, ids: &[&str]) -> Result<BTreeMap<String, Present>> {
    const FEW: usize = 64;
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut found: BTreeMap<String, Present> = BTreeMap::new();
    if ids.len() <= FEW {
        for image in inspect_json(ctx, ids).context("asking the engine about images")? {
            let id = image["Id"].as_str().unwrap_or_default();
            if ids.contains(&id) {
                let present = Present {
                    names: image["RepoTags"]
                        .members()
                        .filter_map(|t| Some(t.as_str()?.to_string()))
                        .collect(),
                    parent: Some(with_prefix(image["Parent"].as_str().unwrap_or_default())),
                };
                found.insert(id.to_string(), present);
            }
        }
        return Ok(found);
    }
    let format = "{{.ID}} {{.Repository}}:{{.Tag}}";
    let out = ctx
        .read(cmd!("docker image ls --all --no-trunc --format {format}").within(LIST_ANSWER))
        .context("listing images")?;
    let wanted: BTreeSet<&str> = ids.iter().copied().collect();
    for (id, name) in out.lines().filter_map(|l| l.split_once(' ')) {
        if wanted.contains(id) {
            let present = found.entry(id.to_string()).or_default();
            if name != "<none>:<none>" {
                present.names.push(name.to_string());
            }
        }
    }
    Ok(found)
}

/// When each of `ids` the engine has was made, in Unix milliseconds (batched).
pub fn created(ctx: &Ctx, ids: &[&str]) -> Result<Vec<(String, u64)>> {
    let format = "{{.Id}} {{.Created}}";
    let mut found = Vec::new();
    for batch in ids.chunks(BATCH) {
        ctx.check_signal("asking the engine about images")?;
        let out = inspect_each(ctx, format, batch)?;
        for line in out.lines() {
            let Some((id, created)) = line.split_once(' ') else {
                continue;
            };
            if let Ok(time) = humantime::parse_rfc3339_weak(created.trim()) {
                let millis = time
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                found.push((id.to_string(), millis));
            }
        }
    }
    Ok(found)
}

/// IDs of the images that match every `filter` (`label=…`, `dangling=true`), intermediate ones too.
pub fn images(ctx: &Ctx, filters: &[String]) -> Result<Vec<String>> {
    ids(ctx, &["--all"], filters)
}

/// IDs of the dangling images (no name; on Podman also no child) that match every `filter`.
pub fn dangling(ctx: &Ctx, filters: &[String]) -> Result<Vec<String>> {
    ids(ctx, &["--filter", "dangling=true"], filters)
}

/// `docker image ls --quiet --no-trunc FLAGS --filter …`: the IDs, sorted, once each.
fn ids(ctx: &Ctx, flags: &[&str], filters: &[String]) -> Result<Vec<String>> {
    let args = filter_args(filters);
    let out = ctx
        .read(cmd!("docker image ls --quiet --no-trunc {flags...} {args...}").within(LIST_ANSWER))
        .context("listing images")?;
    // Only what is an ID: a `docker` that prints anything else is not believed.
    let mut ids: Vec<String> = out.lines().filter_map(image_id_of).collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

fn filter_args(filters: &[String]) -> Vec<&str> {
    filters
        .iter()
        .flat_map(|f| ["--filter", f.as_str()])
        .collect()
}

/// `label=KEY=VALUE`, as filters take it.
pub fn label_filter(key: &str, value: &str) -> String {
    format!("label={key}={value}")
}

/// The filter for a label `key`, whatever its value.
pub fn has_label(key: &str) -> String {
    format!("label={key}")
}

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

/// `sha256:HEX` (or Podman's bare `HEX`) as every listing says it: `sha256:HEX`; None for what is
/// no image ID.
fn image_id_of(line: &str) -> Option<String> {
    Digest::parse(line).map(Digest::into_string)
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
            kind: Kind::Change,
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
        // The guard first: a `docker create` stopped by Ctrl-C may still have made the container.
        let container = TempContainer { ctx, name };
        let name = &container.name;
        ctx.run(
            cmd!("docker {verb} --name {name} --label {label} {extra...} {image} {command...}")
                .quiet(),
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

/// What `docker system df` says these kinds ("Images", "Build Cache", …) take, in bytes; 0 when
/// unknown.
pub fn disk_usage(ctx: &Ctx, kinds: &[&str]) -> u64 {
    let format = "{{.Type}}\t{{.Size}}";
    let out = ctx
        .try_read(cmd!("docker system df --format {format}"))
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
    use super::*;

    #[test]
    fn only_ids_are_believed() {
        let hex = "ab".repeat(32);
        assert_eq!(image_id_of(&hex), Some(format!("sha256:{hex}")));
        assert_eq!(
            image_id_of(&format!("sha256:{hex}\n")),
            Some(format!("sha256:{hex}"))
        );
        for nonsense in ["", "hello", "sha256:", &"AB".repeat(32), &"ab".repeat(33)] {
            assert_eq!(image_id_of(nonsense), None, "{nonsense}");
        }
    }

    #[test]
    fn a_load_that_fails_after_its_answer_began_says_so() {
        let loaded = b"{\"stream\":\"Loaded image ID: sha256:ab\\n\"}\r\n";
        assert_eq!(stream_error(loaded), None);
        let failed = b"{\"stream\":\"x\"}\n{\"errorDetail\":{\"message\":\"no layer\"},\"error\":\"no layer\"}\n";
        assert_eq!(stream_error(failed).as_deref(), Some("no layer"));
    }

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

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1.5GB"), 1_500_000_000);
        assert_eq!(parse_size("4.73MB"), 4_730_000);
        assert_eq!(parse_size("0B"), 0);
        assert_eq!(parse_size("12kB"), 12_000);
    }

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

    #[test]
    fn names_are_compared_as_the_engine_means_them() {
        for store in [Store::Classic, Store::Containerd, Store::Podman] {
            assert_eq!(store.normalise("docker.io/library/app"), "app:latest");
            assert_eq!(store.normalise("app:v1"), "app:v1");
        }
        // Only Podman means an unqualified name when it says `localhost/`.
        assert_eq!(Store::Podman.normalise("localhost/app:v1"), "app:v1");
        assert_eq!(
            Store::Classic.normalise("localhost/app:v1"),
            "localhost/app:v1"
        );
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
