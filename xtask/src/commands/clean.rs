//! `cargo xtask clean [--all]`: removes what the xtask made, by its record, and nothing else (the
//! rule is in `pipeline::record`): dist/, the GOPATH/glide workspace, go-app/vendor/,
//! target/xtask/; our temporary containers (by the label only the xtask sets at `docker create`,
//! with this checkout's random id); on the engine the CLI points at, the images on this
//! checkout's record (our tags, then the image when no other name is left, never with `-f`), and
//! what a stopped build left (nameless images with a build id the record noted). The record of
//! other engines stays. `--all` also the local base images. Counts what went, says what stayed
//! and why.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use crate::{
    cmd, flags,
    infra::{
        ctx::{human_size, Ctx},
        docker::{self, Engine, Present, Store},
        fsx, tools,
    },
    pipeline::{base, glide, record},
    project,
};

impl flags::Clean {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let paths = &ctx.paths;
        let _lock = ctx.lock()?;
        let mut record = record::Record::load(ctx, paths)?;
        let mut dirs = vec![paths.dist()];
        dirs.extend(glide::made_paths(paths));
        // What a killed run left beside them.
        let leftovers: Vec<_> = dirs.iter().flat_map(|d| fsx::leftovers_beside(d)).collect();
        dirs.extend(leftovers);
        let engine = tools::DOCKER
            .present()
            .then(|| Engine::find(ctx).ok())
            .flatten();
        let Some(engine) = engine else {
            let removed_dirs = remove_dirs(ctx, &dirs)?;
            ctx.announce("no Docker engine answers: images and containers not checked (the record of what was built stays in target/xtask)");
            println!("clean: {removed_dirs} directories removed");
            return Ok(());
        };
        let before = docker::disk_usage(ctx, &["Images"]);
        let temp = docker::label_filter(project::LABEL_TEMP, &record.checkout);
        let containers: Vec<String> = ctx
            .read(cmd!("docker ps -a -q --no-trunc --filter {temp}"))?
            .lines()
            .map(str::to_string)
            .collect();
        if !containers.is_empty() {
            let ids = &containers;
            ctx.run(cmd!("docker rm -f {ids...}").quiet())?;
        }
        // Ours: the record's images and those a damaged record still names; then the nameless
        // images of the builds on record.
        let mut ours: BTreeMap<String, BTreeSet<String>> = record.images.clone();
        let damaged = record::damaged(paths);
        for file in &damaged {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for id in record::ids_in(&text) {
                ours.entry(id).or_default();
            }
        }
        // What went is what the engine no longer lists: with an image, an engine may remove the
        // intermediate images it was built on (Podman does).
        let listed_before: BTreeSet<String> = docker::images(ctx, &[])?.into_iter().collect();
        let mut tally = Tally::default();
        let interrupted = tally.remove(ctx, engine.store, &ours);
        // What stayed stays on record; the rest of target/xtask goes.
        record.images.retain(|id, _| tally.kept.contains(id));
        if interrupted.is_err() {
            record.save(ctx, paths)?;
            return interrupted;
        }
        record.close_builds();
        tally.stayed.extend(record.sweep(ctx, &tally.ancestors)?);
        if self.all {
            for id in base::ours(ctx)? {
                match docker::remove_image(ctx, &id) {
                    Ok(()) => {}
                    Err(e) => tally
                        .stayed
                        .push(format!("base image {id}: {}", docker::refusal(&e))),
                }
            }
        }
        let listed_after: BTreeSet<String> = docker::images(ctx, &[])?.into_iter().collect();
        let removed = listed_before.difference(&listed_after).count();
        dirs.push(paths.xtask_dir());
        let removed_dirs = remove_dirs(ctx, &dirs)?;
        if !record.images.is_empty() || !record.builds.is_empty() || !record.elsewhere.is_empty() {
            record.save(ctx, paths)?;
        }
        if !record.elsewhere.is_empty() {
            let engines: Vec<&str> = record.elsewhere.keys().map(String::as_str).collect();
            ctx.announce(format!(
                "the record of images built on other engines stays: {} (clean there: \
                 DOCKER_HOST=… or DOCKER_CONTEXT=… cargo xtask clean)",
                engines.join(", ")
            ));
        }
        let reclaimed = before.saturating_sub(docker::disk_usage(ctx, &["Images"]));
        println!(
            "clean: {removed_dirs} directories, {} containers, {} images removed; {} reclaimed",
            containers.len(),
            removed,
            human_size(reclaimed)
        );
        for line in &tally.stayed {
            println!("  stayed: {line}");
        }
        Ok(())
    }
}

fn remove_dirs(ctx: &Ctx, dirs: &[camino::Utf8PathBuf]) -> Result<usize> {
    let mut removed = 0;
    for dir in dirs.iter().filter(|d| d.exists()) {
        ctx.change(format!("rm -rf {dir}"), || fsx::remove_dir(dir))?;
        removed += 1;
    }
    Ok(removed)
}

/// Which images of ours stay, and why.
#[derive(Default)]
struct Tally {
    kept: BTreeSet<String>,
    stayed: Vec<String>,
    /// What the removed images were built on: `Record::sweep` takes what is left of it.
    ancestors: Vec<String>,
}

impl Tally {
    /// Removes `ours` (image ID → our tags): our tags first, then the image when no name is left,
    /// never with `-f`. Stops at a signal (the error), with `kept` saying what is still there.
    fn remove(
        &mut self,
        ctx: &Ctx,
        store: Store,
        ours: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<()> {
        let ids: Vec<&str> = ours.keys().map(String::as_str).collect();
        let present = docker::names(ctx, &ids)?;
        self.kept = present.keys().cloned().collect();
        for (id, Present { names, parent }) in &present {
            ctx.check_signal("clean")?;
            let tags = &ours[id];
            let (mine, theirs): (Vec<&String>, Vec<&String>) = names.iter().partition(|n| {
                tags.iter()
                    .any(|t| store.normalise(t) == store.normalise(n))
            });
            if !theirs.is_empty() {
                // Our tags go; the image stays theirs.
                for tag in mine {
                    if let Err(e) = docker::remove_image(ctx, tag) {
                        self.stayed.push(format!("{tag}: {}", docker::refusal(&e)));
                    }
                }
                let names: Vec<&str> = theirs.iter().map(|s| s.as_str()).collect();
                self.stayed.push(format!(
                    "{id}: also named {}, which is not ours",
                    names.join(" ")
                ));
                continue;
            }
            // All but one of our tags by name (an image with several names is refused by ID),
            // then the image by ID, with what it was built on and nothing else uses.
            for tag in mine.iter().skip(1) {
                if let Err(e) = docker::remove_image(ctx, tag) {
                    self.stayed.push(format!("{tag}: {}", docker::refusal(&e)));
                }
            }
            self.ancestors
                .extend(docker::ancestors(ctx, id, parent.clone())?);
            if let Err(e) = docker::remove_image(ctx, id) {
                self.stayed.push(format!("{id}: {}", docker::refusal(&e)));
            }
        }
        self.kept = docker::names(ctx, &ids)?.keys().cloned().collect();
        Ok(())
    }
}
