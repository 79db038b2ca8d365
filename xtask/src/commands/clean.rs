//! `cargo xtask clean [--all]`: removes what the xtask made, by its record, and nothing else (the
//! rule is in `pipeline::record`): dist/, the GOPATH/glide workspace, go-app/vendor/,
//! target/xtask/; our temporary containers (by the label only the xtask sets at `docker create`,
//! with this checkout's random id); on the engine the CLI points at, the images on this
//! checkout's record (our tags, then the image when no other name is left, never with `-f`), and
//! what a stopped build left (nameless images with a build id the record noted). The record of
//! other engines stays. `--all` also the local base images. Counts what went, says what stayed
//! and why.

use anyhow::Result;

use crate::{
    flags,
    infra::{
        ctx::{human_size, Ctx},
        docker::{self, Engine},
        tools,
    },
    pipeline::{clean, record::Record},
};

impl flags::Clean {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let paths = &ctx.paths;
        let _lock = ctx.lock()?;
        let mut record = Record::load(ctx)?;
        let mut dirs = clean::dirs(paths);
        let engine = tools::DOCKER
            .present()
            .then(|| Engine::find(ctx).ok())
            .flatten();
        let Some(engine) = engine else {
            let removed_dirs = clean::remove_dirs(ctx, &dirs)?;
            ctx.announce("no Docker engine answers: images and containers not checked (the record of what was built stays in target/xtask)");
            println!("clean: {removed_dirs} directories removed");
            return Ok(());
        };
        let before = docker::disk_usage(ctx, &["Images"]);
        let cleaned = clean::images(ctx, engine.store, &mut record, self.all)?;
        // The rest of target/xtask goes; the record stays when it still names something.
        dirs.push(paths.xtask_dir());
        let removed_dirs = clean::remove_dirs(ctx, &dirs)?;
        if !record.images.is_empty() || !record.builds.is_empty() || !record.elsewhere.is_empty() {
            record.save(ctx)?;
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
            cleaned.containers,
            cleaned.images,
            human_size(reclaimed)
        );
        for line in &cleaned.stayed {
            println!("  stayed: {line}");
        }
        Ok(())
    }
}
