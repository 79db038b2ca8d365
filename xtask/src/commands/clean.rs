//! `cargo xtask clean [--all]`: removes what the xtask made, by its record, and nothing else:
//! dist/, the GOPATH/glide workspace, go-app/vendor/, target/xtask/; our temporary containers (by
//! the label only the xtask sets at `docker create`); the images the record names for this engine
//! (the record of other engines stays; our tags are
//! removed, an image only when nothing else refers to it, never with `-f`); the leftovers of an
//! interrupted build (dangling, our project label, no title: it never reached its last step).
//! `--all` also the local base images. Says what stayed and why.

use anyhow::Result;
use xshell::cmd;

use crate::{
    flags,
    infra::{
        ctx::{human_size, Ctx},
        docker::{self, Engine},
        fsx, tools,
    },
    pipeline::{base, glide, record::Record},
    project,
};

impl flags::Clean {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let paths = &ctx.paths;
        let _lock = ctx.lock()?;
        let record = Record::load(ctx, paths)?;
        let engine = tools::DOCKER.present() && Engine::find(ctx).is_ok();
        // The record (in target/xtask) goes only when the engine could be cleaned by it.
        let mut dirs = vec![paths.dist()];
        dirs.extend(glide::made_paths(paths));
        if engine {
            dirs.push(paths.xtask_dir());
        }
        if !engine {
            let removed_dirs = remove_dirs(ctx, &dirs)?;
            ctx.announce("no Docker engine answers: images and containers not checked (the record of what was built stays in target/xtask)");
            println!("clean: {removed_dirs} directories removed");
            return Ok(());
        }
        let before = docker::disk_usage(ctx, &["Images"]);
        let sh = &ctx.sh;
        let temp = docker::label_filter(project::LABEL_TEMP, &record.checkout);
        let containers: Vec<String> = ctx
            .read(cmd!(sh, "docker ps -a -q --no-trunc --filter {temp}"))?
            .lines()
            .map(str::to_string)
            .collect();
        if !containers.is_empty() {
            let ids = &containers;
            ctx.run_quiet(cmd!(sh, "docker rm -f {ids...}"))?;
        }
        let mut tally = Tally::default();
        for (id, tags) in &record.images {
            // Our tags first: a tag the user added keeps the image.
            for tag in tags {
                if docker::image_id(ctx, tag).as_deref() == Some(id.as_str()) {
                    match docker::remove_image(ctx, tag) {
                        Ok(()) => {}
                        Err(e) => tally.stayed.push(format!("{tag}: {}", reason(&e))),
                    }
                }
            }
            if docker::image_id(ctx, id).is_none() {
                tally.removed += 1;
                continue;
            }
            let other_tags =
                docker::inspect(ctx, id, "{{join .RepoTags \" \"}}").unwrap_or_default();
            if !other_tags.is_empty() {
                tally
                    .stayed
                    .push(format!("{id}: also tagged {other_tags}, which is not ours"));
                continue;
            }
            tally.remove(ctx, "", id);
        }
        // What an interrupted build left: dangling, ours, without the title its last step sets.
        let leftovers = docker::images(ctx, &docker::project_dangling_filters())?;
        for id in leftovers {
            if docker::label(ctx, &id, project::OCI_TITLE).is_none() && !docker::in_use(ctx, &id) {
                tally.remove(ctx, "", &id);
            }
        }
        if self.all {
            for id in base::ours(ctx)? {
                tally.remove(ctx, "base image ", &id);
            }
        }
        let removed_dirs = remove_dirs(ctx, &dirs)?;
        if !record.elsewhere.is_empty() {
            // What other engines hold stays theirs to clean: the record of it is written again.
            let engines: Vec<&str> = record.elsewhere.keys().map(String::as_str).collect();
            Record {
                images: Default::default(),
                ..record.clone()
            }
            .save(ctx, paths)?;
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
            tally.removed,
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

/// How many images went, and what stayed with Docker's reason.
#[derive(Default)]
struct Tally {
    removed: usize,
    stayed: Vec<String>,
}

impl Tally {
    /// Removes `id` (`what` says what it is), without `-f`.
    fn remove(&mut self, ctx: &Ctx, what: &str, id: &str) {
        match docker::remove_image(ctx, id) {
            Ok(()) => self.removed += 1,
            Err(e) => self.stayed.push(format!("{what}{id}: {}", reason(&e))),
        }
    }
}

/// Docker's own words for why an image stays (a container uses it, an image is built on it).
fn reason(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.rsplit("Error response from daemon: ")
        .next()
        .unwrap_or(&text)
        .trim()
        .to_string()
}
