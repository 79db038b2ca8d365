//! Ownership by record, not by inheritance: containers and derived images inherit our labels, so
//! labels alone prove nothing. What a build makes is written down here (image IDs from
//! `--iidfile` or `docker load`, the tags we set) with this checkout's random id; `clean` removes
//! what the record names, and a build removes the image its tag pointed to before, once that
//! is dangling, unused and ours.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use jzon::object;

use crate::{
    infra::{ctx::Ctx, docker, fsx},
    project::{self, Paths},
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Random, made once per checkout: the value of `LABEL_TEMP` on our temporary containers.
    pub checkout: String,
    /// Image ID → the tags we gave it.
    pub images: BTreeMap<String, BTreeSet<String>>,
}

impl Record {
    /// The checkout's record; the first time, a new one with a new random id, written at once
    /// (temporary containers carry the id before any image is recorded).
    pub fn load(ctx: &Ctx, paths: &Paths) -> Result<Record> {
        let path = paths.record();
        let Ok(text) = std::fs::read_to_string(&path) else {
            let record = Record {
                checkout: fsx::random_hex(8),
                images: BTreeMap::new(),
            };
            record.save(ctx, paths)?;
            return Ok(record);
        };
        let value = jzon::parse(&text).with_context(|| format!("reading {path}"))?;
        let checkout = value["checkout"].as_str().unwrap_or_default().to_string();
        let mut images = BTreeMap::new();
        for (id, tags) in value["images"].entries() {
            let tags = tags.members().filter_map(|t| t.as_str());
            images.insert(id.to_string(), tags.map(str::to_string).collect());
        }
        let checkout = if checkout.is_empty() {
            fsx::random_hex(8)
        } else {
            checkout
        };
        Ok(Record { checkout, images })
    }

    pub fn save(&self, ctx: &Ctx, paths: &Paths) -> Result<()> {
        let path = paths.record();
        let images = self.images.iter().map(|(id, tags)| {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            (id, tags)
        });
        let value = object! {
            "checkout": self.checkout.as_str(),
            "images": images.collect::<BTreeMap<_, _>>(),
        };
        let text = value.pretty(2) + "\n";
        ctx.change(format!("record what was built in {path}"), || {
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
        build: impl FnOnce(Option<&str>) -> Result<String>,
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
        build: impl FnOnce(Option<&str>) -> Result<String>,
    ) -> Result<(String, Option<(String, Superseded)>)> {
        let id = build(previous.as_deref())?;
        if id.is_empty() {
            return Ok((id, None)); // --dry-run
        }
        self.images
            .entry(id.clone())
            .or_default()
            .insert(tag.to_string());
        let superseded = previous.filter(|p| *p != id).map(|prev| {
            if let Some(tags) = self.images.get_mut(&prev) {
                tags.remove(tag);
            }
            let outcome = self.supersede(ctx, &prev);
            (prev, outcome)
        });
        self.save(ctx, paths)?;
        Ok((id, superseded))
    }

    /// Removes a superseded image when nothing refers to it any more and it is ours (whichever
    /// checkout built it). Never fails the build: a failed removal is a warning.
    fn supersede(&mut self, ctx: &Ctx, id: &str) -> Superseded {
        // One query: how many tags, and whose it is.
        let format = format!(
            "{{{{len .RepoTags}}}} {{{{index .Config.Labels \"{}\"}}}}",
            project::LABEL_PROJECT
        );
        let dangling_and_ours = format!("0 {}", project::APP);
        if docker::inspect(ctx, id, &format).as_deref() != Some(dangling_and_ours.as_str()) {
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

/// What became of the image a tag named before a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Superseded {
    Removed,
    /// Dangling and ours, but a container uses it (or it could not be removed).
    Stays,
    /// Tagged elsewhere, or not ours: left alone.
    Kept,
}
