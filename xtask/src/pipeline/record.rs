//! Ownership by record, never by label. Labels are inherited by derived images and containers and
//! anyone can set them, so they prove nothing. The rule:
//!
//! - An image is ours only when its ID (as this engine calls it) is on this checkout's record for
//!   this engine. Only such an image is ever removed, and only when no name is left on it (no tag
//!   of the user's), without `-f` (the engine refuses one a container uses).
//! - Intent before action: before a step that can leave an image behind, the record says so and is
//!   written. `direct` knows its image's ID before the load, and notes the ID. A Dockerfile build
//!   does not know its ID: it notes a random build id, which the build sets as the label
//!   `LABEL_BUILD`, and when it started; when it ends (even by failing or a signal), when it
//!   ended. A dangling image (no name, no child) is ours when it carries a build id this record
//!   noted, or (the legacy builder labels only a build's result) when it carries our project
//!   label and was made while a build of ours ran: what a stopped or killed build left, or the
//!   intermediate images a build leaves (Docker's containerd store and Podman keep them when the
//!   result goes). They go with the build's result, and with `clean`. An image that carries
//!   another build's id (another checkout's) is never ours by its time. A build killed with
//!   SIGKILL never says it ended: while it runs, a heartbeat file is kept fresh (and `docker
//!   build` dies with the xtask), so the next run ends its window at its last beat and a slack
//!   (`HEARTBEAT_SLACK_MS`): an image the user makes after that is theirs.
//! - Builds make untagged images; a tag moves onto one only once it is wanted (smoke-tested when
//!   asked), with `docker tag`, which leaves the image the tag named before an image on every
//!   store. That image goes when it is ours and has no name left.
//! - Another checkout's image of the same tag is not on this record: it stays, on the other
//!   checkout's record, and its `clean` removes it.
//!
//! A record that cannot be read is moved aside (`record.json.damaged-N`), never forgotten: `clean`
//! still takes the image IDs it can find in it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use jzon::{object, JsonValue};

use crate::{
    domain::Digest,
    infra::{
        ctx::Ctx,
        docker::{self, Present},
        fsx,
    },
    project::{self, Paths},
};

/// Image ID → the tags we gave it, on one engine.
pub type Images = BTreeMap<String, BTreeSet<String>>;

/// What `Record::sweep` did: the images it removed (the engine no longer names them), and the
/// engine's refusals.
#[derive(Debug, Default)]
pub struct Swept {
    pub removed: Vec<String>,
    pub refused: Vec<String>,
}

/// One per checkout, with what was built on each engine apart: `direct` gives the same image ID
/// on every engine of a store, and what happens to an image on one must not touch the record of
/// another.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Random, made once per checkout: the value of `LABEL_TEMP` on our temporary containers.
    pub checkout: String,
    /// The engine this run speaks to (`docker::engine_key`).
    pub engine: String,
    /// What was built on it.
    pub images: Images,
    /// The Dockerfile builds whose images may still be in the engine, by build id.
    pub builds: BTreeMap<String, Build>,
    /// What other engines hold, by their key: kept as it is.
    pub elsewhere: BTreeMap<String, JsonValue>,
    /// The checkout it is the record of: where it is written, where builds beat.
    paths: Paths,
}

/// When a Dockerfile build ran, in Unix milliseconds: `ended` is None while it runs (or when it
/// was killed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Build {
    pub started: u64,
    pub ended: Option<u64>,
}

impl Build {
    /// Whether an image made at `created` (Unix milliseconds, by the engine's clock) was made
    /// while the build ran. No slack: an image the user made a moment before is theirs.
    fn made(&self, created: u64) -> bool {
        created >= self.started && self.ended.is_none_or(|end| created <= end)
    }
}

/// How often a running build's heartbeat beats.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long after its last beat a killed build may still make images: the beat's period, and the
/// moment the engine takes to stop a build whose client is gone.
pub const HEARTBEAT_SLACK_MS: u64 = 5_000;

fn now() -> u64 {
    millis(std::time::SystemTime::now())
}

fn millis(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What became of the image a tag named before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Superseded {
    /// Ours, nameless: removed (or the engine had dropped it already).
    Removed,
    /// Ours, but the engine keeps it (a container uses it, or an image is built on it): on record.
    Stays(String),
    /// Ours, and still named (these names): left alone.
    Named(Vec<String>),
    /// Not on this checkout's record: left alone.
    NotOurs,
}

impl Record {
    /// The checkout's record; the first time, a new one with a new random id, written at once
    /// (temporary containers carry the id before any image is recorded). A record that cannot be
    /// read is moved aside, and said so.
    pub fn load(ctx: &Ctx) -> Result<Record> {
        let paths = &ctx.paths;
        let path = paths.record();
        let engine = docker::engine_key(ctx);
        let fresh = |checkout: Option<String>| Record {
            checkout: checkout.unwrap_or_else(|| fsx::random_hex(8)),
            engine: engine.clone(),
            paths: paths.clone(),
            ..Record::default()
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let record = fresh(None);
                record.save(ctx)?;
                return Ok(record);
            }
            Err(e) => return Err(e).with_context(|| format!("reading {path}")),
        };
        // Bytes that are not UTF-8 are a damaged record like any other.
        let parsed = std::str::from_utf8(&bytes)
            .context("not UTF-8")
            .and_then(|text| Record::parse(text, engine.clone()));
        match parsed {
            Ok(mut record) => {
                record.paths = paths.clone();
                if record.end_killed_builds(now()) {
                    record.save(ctx)?;
                }
                Ok(record)
            }
            Err(e) => {
                let aside = damaged_path(paths);
                ctx.note(format!("mv {path} {aside}"), || {
                    std::fs::rename(&path, &aside).with_context(|| format!("moving {path} aside"))
                })?;
                ctx.warn(format!(
                    "the record {path} could not be read ({e:#}): moved to {aside}; a new one is \
                     started, and `cargo xtask clean` still removes the images the old one names"
                ));
                let record = fresh(None);
                record.save(ctx)?;
                Ok(record)
            }
        }
    }

    /// The record in `text`, for `engine`. Older records hold `images` alone (this engine's), or
    /// per engine the images alone.
    fn parse(text: &str, engine: String) -> Result<Record> {
        let value = jzon::parse(text)?;
        if !value.is_object() {
            anyhow::bail!("not a JSON object");
        }
        let checkout = value["checkout"]
            .as_str()
            .filter(|c| !c.is_empty())
            .context("no checkout id")?
            .to_string();
        let mut record = Record {
            checkout,
            images: images(&value["images"]),
            engine,
            ..Record::default()
        };
        for (key, built) in value["engines"].entries() {
            if key == record.engine {
                let (imgs, builds) = engine_entry(built);
                record.images.extend(imgs);
                record.builds = builds;
            } else {
                record.elsewhere.insert(key.to_string(), built.clone());
            }
        }
        Ok(record)
    }

    fn to_json(&self) -> String {
        let mut engines: BTreeMap<&str, JsonValue> = self
            .elsewhere
            .iter()
            .map(|(key, v)| (key.as_str(), v.clone()))
            .collect();
        if !self.images.is_empty() || !self.builds.is_empty() {
            let images: BTreeMap<&str, Vec<&str>> = self
                .images
                .iter()
                .map(|(id, tags)| (id.as_str(), tags.iter().map(String::as_str).collect()))
                .collect();
            let builds: BTreeMap<&str, JsonValue> = self
                .builds
                .iter()
                .map(|(id, b)| {
                    (
                        id.as_str(),
                        object! { "started": b.started, "ended": b.ended },
                    )
                })
                .collect();
            engines.insert(&self.engine, object! { "images": images, "builds": builds });
        }
        object! {
            "checkout": self.checkout.as_str(),
            "engines": engines,
        }
        .pretty(2)
            + "\n"
    }

    pub fn save(&self, ctx: &Ctx) -> Result<()> {
        let path = self.paths.record();
        let text = self.to_json();
        ctx.note(format!("record what was built in {path}"), || {
            fsx::write_atomic(&path, text.as_bytes()).with_context(|| format!("writing {path}"))
        })
        .map(drop)
    }

    /// Whether the image is ours: on this checkout's record for this engine.
    pub fn owns(&self, id: &str) -> bool {
        self.images.contains_key(id)
    }

    /// An image this run made, or is about to make (`direct` notes it before the load): on
    /// record, untagged, and the record written. None (`--dry-run`): the record written.
    pub fn note_image(&mut self, ctx: &Ctx, id: Option<&str>) -> Result<()> {
        if let Some(id) = id {
            self.images.entry(id.to_string()).or_default();
        }
        self.save(ctx)
    }

    /// Intent: a Dockerfile build is about to start; its images will carry `LABEL_BUILD` with the
    /// id returned. Its heartbeat beats until dropped (None under `--dry-run`).
    pub fn intend_build(&mut self, ctx: &Ctx) -> Result<(String, Option<fsx::Heartbeat>)> {
        let build = format!("{}-{}", self.checkout, fsx::random_hex(6));
        let path = self.paths.build_heartbeat(&build);
        let heartbeat = ctx.note(format!("keep {path} fresh while the build runs"), || {
            fsx::Heartbeat::start(&path, HEARTBEAT)
        })?;
        let started = now();
        self.builds.insert(
            build.clone(),
            Build {
                started,
                ended: None,
            },
        );
        self.save(ctx)?;
        Ok((build, heartbeat))
    }

    /// Builds that never said they ended and whose heartbeat stopped (killed) end at their last
    /// beat and the slack, or, with no beat, at their start and the slack. A build whose beat is
    /// fresh runs still. Whether any ended.
    fn end_killed_builds(&mut self, now: u64) -> bool {
        let mut ended = false;
        for (id, build) in self.builds.iter_mut().filter(|(_, b)| b.ended.is_none()) {
            let heartbeat = self.paths.build_heartbeat(id);
            let last = fsx::Heartbeat::last(&heartbeat).map_or(build.started, millis);
            if now.saturating_sub(last) > HEARTBEAT_SLACK_MS {
                build.ended = Some(last.max(build.started) + HEARTBEAT_SLACK_MS);
                let _ = std::fs::remove_file(&heartbeat);
                ended = true;
            }
        }
        ended
    }

    /// The build `build` is over, however it ended (written after a signal too).
    pub fn build_ended(&mut self, ctx: &Ctx, build: &str) -> Result<()> {
        if let Some(b) = self.builds.get_mut(build) {
            b.ended = Some(now());
        }
        self.save(ctx)
    }

    /// Ours that may be left dangling go, round by round, so that a chain of intermediate images
    /// goes from its end: the images of the builds on record and the ancestors `also` of images
    /// of ours that went. The legacy builder keeps intermediate images, which Docker's containerd
    /// store and Podman keep when the result goes; while a result of ours is built on them they
    /// are not dangling, and stay as the next build's cache. Builds with no image left are
    /// forgotten. The engine's refusals for what stays.
    pub fn sweep(&mut self, ctx: &Ctx, also: &[String]) -> Result<Swept> {
        let mut candidates: BTreeSet<String> = also.iter().cloned().collect();
        if !self.builds.is_empty() {
            // Made while a build of ours ran, with our project label (the legacy builder's
            // intermediate images carry that, not the build id).
            // An image with a build id is its build's: ours only by the id (below).
            let project = docker::label_filter(project::LABEL_PROJECT, project::TOOL);
            let labelled = docker::dangling(ctx, &[project])?;
            let built = docker::dangling(ctx, &[docker::has_label(project::LABEL_BUILD)])?;
            let refs: Vec<&str> = labelled
                .iter()
                .filter(|id| !built.contains(id))
                .map(String::as_str)
                .collect();
            for (id, created) in docker::created(ctx, &refs)? {
                if self.builds.values().any(|b| b.made(created)) {
                    candidates.insert(id);
                }
            }
        }
        let builds: Vec<(String, Build)> = self.builds.clone().into_iter().collect();
        for (build, when) in builds {
            let ids = docker::images(ctx, &[docker::label_filter(project::LABEL_BUILD, &build)])?;
            if ids.is_empty() && when.ended.is_some() {
                self.builds.remove(&build);
            }
            candidates.extend(ids);
        }
        let mut swept = Swept::default();
        while !candidates.is_empty() {
            let dangling: Vec<String> = docker::dangling(ctx, &[])?
                .into_iter()
                .filter(|id| candidates.contains(id))
                .collect();
            let refs: Vec<&str> = dangling.iter().map(String::as_str).collect();
            swept.refused = docker::remove_images(ctx, &refs);
            let left = docker::names(ctx, &refs)?;
            let gone: Vec<&String> = dangling
                .iter()
                .filter(|id| !left.contains_key(*id))
                .collect();
            if gone.is_empty() {
                break;
            }
            for id in gone {
                self.images.remove(id);
                candidates.remove(id);
                swept.removed.push(id.clone());
            }
        }
        Ok(swept)
    }

    /// Moves `tag` onto `id` (an image of ours, made by this run), which `previous` named before,
    /// and records it (`tagged`: the load moved it already); the previous image goes when it is
    /// ours and nameless. One question to the engine after the tag moved, about the other images
    /// on record, says that and how many of ours are left dangling.
    pub fn place(
        &mut self,
        ctx: &Ctx,
        tag: &str,
        id: &str,
        previous: Option<&str>,
        tagged: bool,
    ) -> Result<Placed> {
        if previous != Some(id) && !tagged {
            docker::tag(ctx, id, tag)?;
        }
        self.images
            .entry(id.to_string())
            .or_default()
            .insert(tag.to_string());
        let previous = previous.filter(|p| *p != id);
        if let Some(prev) = previous {
            if let Some(tags) = self.images.get_mut(prev) {
                tags.remove(tag);
            }
        } else {
            self.sweep(ctx, &[])?;
        }
        // The candidate has the tag now: the others are asked about.
        let ids: Vec<&str> = self
            .images
            .keys()
            .map(String::as_str)
            .filter(|i| *i != id)
            .collect();
        let mut present = docker::names(ctx, &ids)?;
        let superseded = previous.map(|prev| {
            let outcome = self.remove_superseded(ctx, prev, present.remove(prev));
            (prev.to_string(), outcome)
        });
        self.save(ctx)?;
        // The superseded image counts when it stays: it has no name (else it is `Named`).
        let stays = superseded
            .as_ref()
            .is_some_and(|(_, outcome)| matches!(outcome, Superseded::Stays(_)));
        let others = present.values().filter(|p| p.names.is_empty()).count();
        Ok(Placed {
            superseded,
            dangling: others + usize::from(stays),
        })
    }

    /// A candidate this run made that is not wanted (it failed its smoke test): removed when it
    /// is ours and nameless.
    pub fn discard(&mut self, ctx: &Ctx, id: &str) -> Superseded {
        let outcome = match docker::names(ctx, &[id]) {
            Ok(mut present) => self.remove_superseded(ctx, id, present.remove(id)),
            Err(e) => Superseded::Stays(format!("{e:#}")),
        };
        if let Err(e) = self.save(ctx) {
            ctx.warn(format!("{e:#}"));
        }
        outcome
    }

    /// Removes `id` when it is ours and no name is left on it (`present`: what the engine said of
    /// it; `None`: it has it no more), never with `-f`; then what it was built on that is ours and
    /// dangling. Never fails the build: what stays is said.
    fn remove_superseded(&mut self, ctx: &Ctx, id: &str, present: Option<Present>) -> Superseded {
        if !self.owns(id) {
            return Superseded::NotOurs;
        }
        let Some(present) = present else {
            self.images.remove(id); // the engine dropped it already
            return Superseded::Removed;
        };
        if !present.names.is_empty() {
            return Superseded::Named(present.names);
        }
        let ancestors = docker::ancestors(ctx, id, present.parent).unwrap_or_default();
        if let Err(e) = docker::remove_image(ctx, id) {
            return Superseded::Stays(docker::refusal(&e));
        }
        self.images.remove(id);
        if let Err(e) = self.sweep(ctx, &ancestors) {
            ctx.warn(format!("what {id} was built on stays: {e:#}"));
        }
        Superseded::Removed
    }
}

/// What `place` did: what became of the image the tag named before, and how many images on
/// record are left dangling besides it.
#[derive(Default)]
pub struct Placed {
    pub superseded: Option<(String, Superseded)>,
    pub dangling: usize,
}

/// Where a damaged record is moved: a name of its own, never over an earlier one.
fn damaged_path(paths: &Paths) -> Utf8PathBuf {
    let path = paths.record();
    (1..)
        .map(|n| Utf8PathBuf::from(format!("{path}.damaged-{n}")))
        .find(|p| !p.exists())
        .expect("a free name")
}

/// The damaged records moved aside in this checkout.
pub fn damaged(paths: &Paths) -> Vec<Utf8PathBuf> {
    let dir = paths.xtask_dir();
    let Ok(entries) = dir.read_dir_utf8() else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().starts_with("record.json.damaged-"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// The image IDs (`sha256:` and 64 hex digits) a damaged record still shows.
pub fn ids_in(text: &str) -> BTreeSet<String> {
    Digest::all_in(text)
        .into_iter()
        .map(Digest::into_string)
        .collect()
}

fn images(v: &JsonValue) -> Images {
    v.entries()
        .map(|(id, tags)| {
            let tags = tags.members().filter_map(|t| t.as_str());
            (id.to_string(), tags.map(str::to_string).collect())
        })
        .collect()
}

/// One engine's entry: `{"images": …, "builds": {…}}`, or (older) the images alone.
fn engine_entry(v: &JsonValue) -> (Images, BTreeMap<String, Build>) {
    if v.has_key("images") || v.has_key("builds") {
        let builds = v["builds"]
            .entries()
            .map(|(id, b)| {
                let build = Build {
                    started: b["started"].as_u64().unwrap_or(0),
                    ended: b["ended"].as_u64(),
                };
                (id.to_string(), build)
            })
            .collect();
        (images(&v["images"]), builds)
    } else {
        (images(v), BTreeMap::new())
    }
}

/// The label a Dockerfile build sets on its images: the build id its intent noted.
pub fn build_label(build: &str) -> String {
    format!("{}={build}", project::LABEL_BUILD)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "unix:///var/run/docker.sock";

    #[test]
    fn a_killed_build_ends_at_its_last_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            root: camino::Utf8Path::from_path(dir.path()).unwrap().to_owned(),
        };
        let now = 1_000_000_000;
        let at = |ms: u64| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        let mut record = Record {
            paths: paths.clone(),
            ..Record::default()
        };
        let mut beat = |id: &str, started: u64, last: Option<u64>| {
            record.builds.insert(
                id.into(),
                Build {
                    started,
                    ended: None,
                },
            );
            if let Some(last) = last {
                let path = paths.build_heartbeat(id);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let file = std::fs::File::create(&path).unwrap();
                file.set_modified(at(last)).unwrap();
            }
        };
        // Killed a minute ago; beating now; killed before its first beat; just started.
        beat("killed", now - 600_000, Some(now - 60_000));
        beat("running", now - 600_000, Some(now - 1_000));
        beat("no-beat", now - 600_000, None);
        beat("starting", now - 1_000, None);
        assert!(record.end_killed_builds(now));
        let ended = |id: &str| record.builds[id].ended;
        assert_eq!(ended("killed"), Some(now - 60_000 + HEARTBEAT_SLACK_MS));
        assert_eq!(ended("running"), None);
        assert_eq!(ended("no-beat"), Some(now - 600_000 + HEARTBEAT_SLACK_MS));
        assert_eq!(ended("starting"), None);
        assert!(!paths.build_heartbeat("killed").exists());
        assert!(paths.build_heartbeat("running").exists());
        // An image the user made 30 s after the kill is not the killed build's.
        assert!(!record.builds["killed"].made(now - 30_000));
        assert!(record.builds["killed"].made(now - 62_000));
        assert!(!record.end_killed_builds(now), "nothing more to end");
    }

    #[test]
    fn a_heartbeat_beats_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = camino::Utf8Path::from_path(dir.path())
            .unwrap()
            .join("b/x.alive");
        let beat = fsx::Heartbeat::start(&path, std::time::Duration::from_millis(10)).unwrap();
        let first = fsx::Heartbeat::last(&path).unwrap();
        while fsx::Heartbeat::last(&path).unwrap() == first {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(beat);
        assert!(fsx::Heartbeat::last(&path).is_none());
    }

    #[test]
    fn engines_are_kept_apart_and_old_records_read() {
        let old = r#"{"checkout": "c1", "images": {"sha256:a": ["t:1"]}}"#;
        let mut here = Record::parse(old, DEFAULT.into()).unwrap();
        assert_eq!(here.checkout, "c1");
        assert_eq!(here.images["sha256:a"], BTreeSet::from(["t:1".to_string()]));
        let build = Build {
            started: 10,
            ended: None,
        };
        here.builds.insert("c1-b".into(), build);
        let text = here.to_json();
        // Another engine sees none of it, and keeps it as it is.
        let mut there = Record::parse(&text, "ssh://build-box".into()).unwrap();
        assert!(there.images.is_empty() && there.builds.is_empty());
        there
            .images
            .insert("sha256:a".into(), BTreeSet::from(["t:2".into()]));
        here = Record::parse(&there.to_json(), DEFAULT.into()).unwrap();
        assert_eq!(here.images["sha256:a"], BTreeSet::from(["t:1".to_string()]));
        assert_eq!(here.builds, BTreeMap::from([("c1-b".to_string(), build)]));
        assert_eq!(
            images(&here.elsewhere["ssh://build-box"]["images"])["sha256:a"],
            BTreeSet::from(["t:2".to_string()])
        );
        // An engine with nothing left is not written.
        here.images.clear();
        here.builds.clear();
        assert!(!here.to_json().contains("docker.sock"));
    }

    #[test]
    fn an_image_is_a_builds_when_made_while_it_ran() {
        let ended = Build {
            started: 100,
            ended: Some(200),
        };
        assert!(ended.made(150) && ended.made(100) && ended.made(200));
        assert!(!ended.made(99) && !ended.made(201));
        // Killed: it never said it ended.
        let killed = Build {
            started: 100,
            ended: None,
        };
        assert!(killed.made(10_000) && !killed.made(50));
    }

    #[test]
    fn an_older_per_engine_record_is_read() {
        let text = r#"{"checkout": "c1", "engines": {"unix:///var/run/docker.sock": {"sha256:a": ["t:1"]}}}"#;
        let record = Record::parse(text, DEFAULT.into()).unwrap();
        assert_eq!(
            record.images["sha256:a"],
            BTreeSet::from(["t:1".to_string()])
        );
    }

    #[test]
    fn a_record_that_is_not_ours_to_read_is_an_error() {
        for text in ["", "{", "[]", r#"{"engines": {}}"#] {
            assert!(Record::parse(text, DEFAULT.into()).is_err(), "{text:?}");
        }
    }

    #[test]
    fn ids_are_found_in_what_is_left_of_a_record() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let text =
            format!(r#"{{"checkout": "c1", "engines": {{"x": {{"images": {{"{a}": [], "{b}"#);
        assert_eq!(ids_in(&text), BTreeSet::from([a, b]));
        assert!(ids_in("sha256:abc").is_empty());
    }
}
