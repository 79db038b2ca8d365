//! Ownership by record, not by inheritance: containers and derived images inherit our labels, so
//! labels alone prove nothing. What a build makes is written down here (image IDs from
//! `--iidfile` or `docker load`, the tags we set) with this checkout's random id; `clean` removes
//! what the record names, and a build removes the image its tag pointed to before, once that
//! is dangling, unused and ours.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
};

use anyhow::{Context, Result};
use jzon::object;

use crate::{
    infra::{
        ctx::{Ctx, Running},
        docker, fsx,
    },
    project::{self, Paths},
};

/// Image ID → the tags we gave it, on one engine.
pub type Images = BTreeMap<String, BTreeSet<String>>;

/// One per checkout, with what was built on each engine apart: `direct` gives the same image ID
/// on every engine, and what happens to an image on one must not touch the record of another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Random, made once per checkout: the value of `LABEL_TEMP` on our temporary containers.
    pub checkout: String,
    /// The engine this run speaks to (`docker::engine_key`).
    pub engine: String,
    /// What was built on it.
    pub images: Images,
    /// What was built on other engines, by their key: kept as it is.
    pub elsewhere: BTreeMap<String, Images>,
}

impl Record {
    /// The checkout's record; the first time, a new one with a new random id, written at once
    /// (temporary containers carry the id before any image is recorded).
    pub fn load(ctx: &Ctx, paths: &Paths) -> Result<Record> {
        let path = paths.record();
        let engine = docker::engine_key();
        let Ok(text) = std::fs::read_to_string(&path) else {
            let record = Record {
                checkout: fsx::random_hex(8),
                engine,
                ..Record::default()
            };
            record.save(ctx, paths)?;
            return Ok(record);
        };
        Record::parse(&text, engine).with_context(|| format!("reading {path}"))
    }

    /// The record in `text`, for `engine`. A record from before engines were told apart holds
    /// `images` alone: this engine's.
    fn parse(text: &str, engine: String) -> Result<Record> {
        let value = jzon::parse(text)?;
        let images = |v: &jzon::JsonValue| -> Images {
            v.entries()
                .map(|(id, tags)| {
                    let tags = tags.members().filter_map(|t| t.as_str());
                    (id.to_string(), tags.map(str::to_string).collect())
                })
                .collect()
        };
        let mut record = Record {
            checkout: value["checkout"]
                .as_str()
                .filter(|c| !c.is_empty())
                .map_or_else(|| fsx::random_hex(8), str::to_string),
            images: images(&value["images"]),
            engine,
            elsewhere: BTreeMap::new(),
        };
        for (key, built) in value["engines"].entries() {
            if key == record.engine {
                record.images.extend(images(built));
            } else {
                record.elsewhere.insert(key.to_string(), images(built));
            }
        }
        Ok(record)
    }

    fn to_json(&self) -> String {
        let json = |images: &Images| -> BTreeMap<String, Vec<String>> {
            images
                .iter()
                .map(|(id, tags)| (id.clone(), tags.iter().cloned().collect()))
                .collect()
        };
        let mut engines: BTreeMap<&str, BTreeMap<String, Vec<String>>> = self
            .elsewhere
            .iter()
            .map(|(key, images)| (key.as_str(), json(images)))
            .collect();
        engines.insert(&self.engine, json(&self.images));
        engines.retain(|_, images| !images.is_empty());
        object! {
            "checkout": self.checkout.as_str(),
            "engines": engines,
        }
        .pretty(2)
            + "\n"
    }

    pub fn save(&self, ctx: &Ctx, paths: &Paths) -> Result<()> {
        let path = paths.record();
        let text = self.to_json();
        ctx.note(format!("record what was built in {path}"), || {
            fsx::write_atomic(&path, text.as_bytes())
        })
        .map(drop)
    }

    /// Runs `build` (given the image `tag` names now), which makes an image and returns its ID, and
    /// records it under `tag`. The image
    /// the tag pointed to before is removed when it is now dangling, unused and ours.
    pub fn tagged(
        &mut self,
        ctx: &Ctx,
        paths: &Paths,
        tag: &str,
        build: impl FnOnce(&Previous) -> Result<String>,
    ) -> Result<String> {
        let previous = docker::image_id(ctx, tag);
        self.tagged_from(ctx, paths, tag, previous, build)
            .map(|(id, _)| id)
    }

    /// `tagged`, with the image `tag` named before the build asked already (`previous`); also
    /// what became of that image, when it was another.
    pub fn tagged_from(
        &mut self,
        ctx: &Ctx,
        paths: &Paths,
        tag: &str,
        previous: Option<String>,
        build: impl FnOnce(&Previous) -> Result<String>,
    ) -> Result<(String, Option<(String, Superseded)>)> {
        let previous = Previous {
            id: previous,
            tag: crate::flags::ImageRef(tag.to_string()).familiar(),
            asked: RefCell::new(None),
        };
        let id = build(&previous)?;
        if id.is_empty() {
            return Ok((id, None)); // --dry-run
        }
        self.images
            .entry(id.clone())
            .or_default()
            .insert(tag.to_string());
        let superseded = match previous.id.clone().filter(|p| *p != id) {
            Some(prev) => {
                if let Some(tags) = self.images.get_mut(&prev) {
                    tags.remove(tag);
                }
                let outcome = self.supersede(ctx, &previous);
                Some((prev, outcome))
            }
            None => None,
        };
        self.save(ctx, paths)?;
        Ok((id, superseded))
    }

    /// Removes a superseded image when nothing refers to it any more and it is ours (whichever
    /// checkout built it). Never fails the build: a failed removal is a warning.
    fn supersede(&mut self, ctx: &Ctx, previous: &Previous) -> Superseded {
        let Some(id) = previous.id.as_deref() else {
            return Superseded::Kept;
        };
        if !previous.answer(ctx).is_some_and(|a| previous.goes(&a)) {
            return Superseded::Kept;
        }
        // Without -f the engine refuses an image a container (even a stopped one) or a child
        // image uses: such an image stays, as it should.
        match docker::remove_image(ctx, id) {
            Ok(()) => {
                self.images.remove(id);
                Superseded::Removed
            }
            Err(e) if format!("{e:#}").contains("conflict") => Superseded::Stays,
            Err(e) => {
                ctx.warn(format!("the superseded image {id} stays: {e:#}"));
                Superseded::Stays
            }
        }
    }
}

/// The image a tag named before a build, and the engine's word on it: its tags and whose it is.
pub struct Previous {
    id: Option<String>,
    /// The tag, as the engine states it.
    tag: String,
    /// Asked while the build ran.
    asked: RefCell<Option<Running>>,
}

impl Previous {
    /// The image's ID.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Asks the engine about the image now, in the background: while the build's last step runs
    /// (a load that moves the tag), rather than after it. Either side of the tag's move, the
    /// answer tells the same.
    pub fn ask(&self, ctx: &Ctx) -> Result<()> {
        if let Some(id) = &self.id {
            *self.asked.borrow_mut() = Some(docker::inspect_start(ctx, id, &Self::format())?);
        }
        Ok(())
    }

    /// The project's label, then the tags.
    fn format() -> String {
        format!(
            "{{{{index .Config.Labels \"{}\"}}}}{{{{range .RepoTags}}}} {{{{.}}}}{{{{end}}}}",
            project::LABEL_PROJECT
        )
    }

    /// What the engine said, asked before or now.
    fn answer(&self, ctx: &Ctx) -> Option<String> {
        match self.asked.borrow_mut().take() {
            Some(asked) => asked.wait_text().ok(),
            None => docker::inspect(ctx, self.id.as_deref()?, &Self::format()),
        }
    }

    /// Whether the image is ours and, once the tag has moved, dangling.
    fn goes(&self, answer: &str) -> bool {
        let mut words = answer.split(' ');
        words.next() == Some(project::APP) && words.all(|t| t == self.tag)
    }
}

/// What became of the image a tag named before a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Superseded {
    Removed,
    /// Dangling and ours, but a container uses it (or it could not be removed).
    Stays,
    /// Tagged elsewhere, or not ours: left alone.
    Kept,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_previous_image_goes_when_ours_and_tagged_by_nothing_else() {
        let previous = Previous {
            id: Some("sha256:a".into()),
            tag: crate::flags::ImageRef("docker.io/library/app".into()).familiar(),
            asked: RefCell::new(None),
        };
        let ours = project::APP;
        // Asked before the tag moved, or after.
        assert!(previous.goes(&format!("{ours} app:latest")));
        assert!(previous.goes(ours));
        // Someone else's tag, or not ours.
        assert!(!previous.goes(&format!("{ours} app:latest mine:v1")));
        assert!(!previous.goes(&format!("{ours} mine:v1")));
        assert!(!previous.goes("app:latest"));
        assert!(!previous.goes("other app:latest"));
    }

    #[test]
    fn engines_are_kept_apart_and_old_records_read() {
        let old = r#"{"checkout": "c1", "images": {"sha256:a": ["t:1"]}}"#;
        let mut here = Record::parse(old, "unix:///var/run/docker.sock".into()).unwrap();
        assert_eq!(here.checkout, "c1");
        assert_eq!(here.images["sha256:a"], BTreeSet::from(["t:1".to_string()]));
        let text = here.to_json();
        // Another engine sees none of it, and keeps it as it is.
        let mut there = Record::parse(&text, "ssh://build-box".into()).unwrap();
        assert!(there.images.is_empty());
        there
            .images
            .insert("sha256:a".into(), BTreeSet::from(["t:2".into()]));
        here = Record::parse(&there.to_json(), "unix:///var/run/docker.sock".into()).unwrap();
        assert_eq!(here.images["sha256:a"], BTreeSet::from(["t:1".to_string()]));
        assert_eq!(
            here.elsewhere["ssh://build-box"]["sha256:a"],
            BTreeSet::from(["t:2".to_string()])
        );
        // An engine with nothing left is not written.
        here.images.clear();
        assert!(!here.to_json().contains("docker.sock"));
    }
}
