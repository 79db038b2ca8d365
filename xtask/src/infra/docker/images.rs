//! Images: tag, load, inspect, list, remove, and what an image was built on.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};

use super::*;
use crate::{
    cmd,
    domain::Digest,
    infra::{
        ctx::Ctx,
        engine_api::{escape, ApiEnd, ApiError, Pending, Request, Upload},
        process::{Kind, ProcessError, Running},
    },
    project,
};

/// Names `id` `tag` (the tag leaves the image it named).
pub fn tag(ctx: &Ctx, id: &str, tag: &str) -> Result<()> {
    let done = match api(ctx) {
        Some(api) => {
            let reference: crate::domain::ImageRef = tag.parse().map_err(anyhow::Error::msg)?;
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

/// `sha256:HEX` (or Podman's bare `HEX`) as every listing says it: `sha256:HEX`; None for what is
/// no image ID.
fn image_id_of(line: &str) -> Option<String> {
    Digest::parse(line).map(Digest::into_string)
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

/// `docker save` of `image` into the file `out`.
pub fn save(ctx: &Ctx, image: &str, out: &camino::Utf8Path) -> Result<()> {
    ctx.read(cmd!("docker save -o {out} {image}")).map(drop)
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

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1.5GB"), 1_500_000_000);
        assert_eq!(parse_size("4.73MB"), 4_730_000);
        assert_eq!(parse_size("0B"), 0);
        assert_eq!(parse_size("12kB"), 12_000);
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
}
