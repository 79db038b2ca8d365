//! `cargo xtask image`: the production image, three ways.
//! - multistage (default): docker/Dockerfile in one build. The legacy builder leaves the builder
//!   stage as an image: found by its stage label and tagged `NAME-builder:TAG`, it is no dangling
//!   `<none>` image and its layers stay as the next build's cache. BuildKit keeps the builder stage
//!   in its build cache, not as an image.
//! - handoff: ex1, `docker cp` to dist/, ex2 from dist/ (the fallback when the engine cannot do
//!   multi-stage builds, and the path `--compress` takes).
//! - single: ex1 as the production image: the fat image, for comparison.
//!
//! After each build our superseded (dangling) images are removed and a summary is printed.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use xshell::cmd;

use crate::{
    ctx::{human_size, secs, Ctx},
    docker,
    dockerbuild::{self, Plan},
    flags::{self, Builder, Strategy},
    glide, gobuild, handoff, setup, smoke, tools,
};

pub fn run(ctx: &Ctx, opts: &flags::Image) -> Result<()> {
    let _lock = ctx.lock()?;
    tools::require(ctx, &[tools::DOCKER])?;
    tools::offer(ctx, tools::BUILDX);
    let engine = setup::ensure_engine(ctx)?;
    let mut strategy = opts.strategy;
    if strategy == Strategy::Multistage && !engine.multistage() {
        ctx.announce(format!(
            "the engine's API {}.{} predates multi-stage builds (1.31): using the dist handoff",
            engine.api.0, engine.api.1
        ));
        strategy = Strategy::Handoff;
    }
    if opts.compress && strategy != Strategy::Handoff {
        ctx.announce("--compress runs UPX on the host's dist/main: using the dist handoff");
        strategy = Strategy::Handoff;
    }
    if opts.compress {
        tools::require(ctx, &[tools::UPX])?;
    }
    glide::vendor(ctx)?;
    let version = gobuild::version(ctx, opts.app_version.as_deref());
    let plan = Plan::new(ctx, &engine, opts, &version)?;
    let started = Instant::now();
    build(ctx, &plan, strategy, opts.compress)?;
    let elapsed = started.elapsed();
    let pruned = docker::prune_dangling(ctx)?;
    if !ctx.global.dry_run {
        summary(ctx, &plan, strategy, elapsed, pruned)?;
    }
    if opts.smoke {
        smoke::run(ctx, &plan.tag)?;
    }
    Ok(())
}

/// Builds `plan.tag` with `strategy`.
pub fn build(ctx: &Ctx, plan: &Plan, strategy: Strategy, compress: bool) -> Result<()> {
    let go_app = ctx.paths.go_app();
    match strategy {
        Strategy::Multistage => {
            ctx.step("production image (multi-stage)", || {
                plan.build(ctx, dockerbuild::MULTISTAGE, &plan.tag, &go_app)
            })?;
            if plan.builder == Builder::Legacy {
                keep_builder_stage(ctx, plan)?;
            }
            Ok(())
        }
        Strategy::Handoff => {
            handoff::to_dist(ctx, plan, compress)?;
            ctx.step("runtime image (ex2, from dist/)", || {
                handoff::build_runtime(ctx, plan)
            })
        }
        Strategy::Single => ctx.step("single-stage image (ex1)", || {
            handoff::build_builder(ctx, plan).and_then(|()| {
                let (builder_tag, tag) = (plan.builder_tag(), &plan.tag);
                let sh = &ctx.sh;
                ctx.run(cmd!(sh, "docker tag {builder_tag} {tag}"))
            })
        }),
    }
}

/// The legacy builder leaves the builder stage as an untagged image. Tagging the newest one keeps
/// its layers as the next build's cache; the older ones are superseded and pruned afterwards.
fn keep_builder_stage(ctx: &Ctx, plan: &Plan) -> Result<()> {
    let stage = format!(
        "label={}={}",
        crate::project::LABEL_STAGE,
        dockerbuild::BUILDER_STAGE
    );
    let candidates = docker::ours(ctx, "image", &["dangling=true", &stage])?;
    if candidates.is_empty() {
        return Ok(()); // nothing rebuilt: the tagged builder stage is current
    }
    let sh = &ctx.sh;
    let format = "{{.Created}} {{.Id}}";
    let created = cmd!(sh, "docker image inspect --format {format} {candidates...}")
        .quiet()
        .read()
        .context("inspecting the builder stage images")?;
    let newest = created
        .lines()
        .filter_map(|line| line.split_once(' '))
        .max_by_key(|(created, _)| sortable(created))
        .map(|(_, id)| id.to_string());
    if let Some(id) = newest {
        let tag = plan.builder_tag();
        ctx.run(cmd!(sh, "docker tag {id} {tag}"))?;
    }
    Ok(())
}

/// RFC 3339 with its fraction padded to nanoseconds, so that strings sort as times do
/// ("…:19.5Z" would sort after "…:19.50001Z").
fn sortable(created: &str) -> String {
    let (head, fraction) = created
        .trim_end_matches('Z')
        .split_once('.')
        .unwrap_or((created.trim_end_matches('Z'), ""));
    format!("{head}.{fraction:0<9}")
}

fn summary(
    ctx: &Ctx,
    plan: &Plan,
    strategy: Strategy,
    elapsed: Duration,
    pruned: usize,
) -> Result<()> {
    // BuildKit's multi-stage build keeps its builder stage in the build cache, not as an image.
    let builder_tagged = strategy != Strategy::Multistage || plan.builder == Builder::Legacy;
    let builder = if builder_tagged {
        plan.builder_tag()
    } else {
        plan.builder_image.clone()
    };
    let sh = &ctx.sh;
    let (tag, format) = (&plan.tag, "{{.Size}}");
    let sizes = cmd!(sh, "docker image inspect --format {format} {tag} {builder}")
        .quiet()
        .read()
        .with_context(|| format!("inspecting {tag} after the build"))?;
    let mut sizes = sizes.lines().map(|l| l.parse::<u64>().unwrap_or(0));
    let (size, builder_size) = (sizes.next().unwrap_or(0), sizes.next().unwrap_or(0));
    let builder_ref = if builder_tagged {
        builder
    } else {
        format!("{builder} (base)")
    };
    println!();
    println!(
        "{:<32} {:<11} {:<9} {:>10} {:>11}   builder image",
        "image", "strategy", "builder", "size", "build time"
    );
    println!(
        "{:<32} {:<11} {:<9} {:>10} {:>11}   {builder_ref} {}",
        plan.tag,
        strategy.to_string(),
        plan.builder.to_string(),
        human_size(size),
        secs(elapsed),
        human_size(builder_size)
    );
    // `prune_dangling` removed every one it found, or failed.
    println!("dangling images of ours: 0 (removed {pruned} superseded)");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn creation_times_sort_as_times() {
        let mut times = [
            "2026-11-28T13:45:19.50001Z",
            "2026-11-28T13:45:19.5Z",
            "2026-11-28T13:45:19Z",
        ];
        times.sort_by_key(|t| super::sortable(t));
        assert_eq!(
            times,
            [
                "2026-11-28T13:45:19Z",
                "2026-11-28T13:45:19.5Z",
                "2026-11-28T13:45:19.50001Z"
            ]
        );
    }
}
