//! The dist handoff: build ex1 (the fat builder image), copy its /out (binary, CA bundle,
//! passwd/group) out with `docker create` + `docker cp` (no bind mount: it works when the engine
//! is on another host), then that becomes `dist/`, from which ex2 builds the runtime image.

use anyhow::{Context, Result};
use xshell::cmd;

use crate::{
    ctx::Ctx,
    dist,
    docker::{self, TempContainer},
    dockerbuild::{self, Plan},
    fsx, project,
};

/// In `dist/`, after a handoff: the builder image it came from, and whether UPX ran.
const ORIGIN: &str = ".handoff";

/// The builder image (ex1), tagged `plan.builder_tag()`.
pub fn build_builder(ctx: &Ctx, plan: &Plan) -> Result<()> {
    plan.build(
        ctx,
        dockerbuild::EX1,
        &plan.builder_tag(),
        &ctx.paths.go_app(),
    )
}

/// Builds ex1 and makes its /out the new `dist/` (with SHA256SUMS), UPX-compressed when asked.
/// The temporary container goes whatever happens. When `dist/` already holds this very builder
/// image's output, the copy (and UPX) is skipped.
pub fn to_dist(ctx: &Ctx, plan: &Plan, compress: bool) -> Result<()> {
    ctx.step("builder image (ex1)", || build_builder(ctx, plan))?;
    let dist = ctx.paths.dist();
    let origin = docker::image_id(ctx, &plan.builder_tag())
        .map(|id| format!("{id} compress={compress}\n"))
        .unwrap_or_default();
    let current = std::fs::read_to_string(dist.join(ORIGIN)).unwrap_or_default();
    if !origin.is_empty() && origin == current && dist.join(project::BINARY).is_file() {
        ctx.announce("dist/ already holds this builder image's output: copy skipped");
        return Ok(());
    }
    ctx.step("copy the binary out to dist/", || {
        let container = TempContainer::create(ctx, &plan.builder_tag(), "handoff", &[])?;
        let tmp = fsx::TempDir::new(ctx.paths.scratch("handoff"))?;
        let sh = &ctx.sh;
        let from = format!("{}:/out/.", container.name);
        let to = &tmp.0;
        ctx.run(cmd!(sh, "docker cp {from} {to}"))
            .context("copying /out from the builder container")?;
        if compress {
            let binary = to.join(project::BINARY);
            ctx.run(cmd!(sh, "upx -q --best --lzma {binary}").ignore_stdout())
                .context("compressing the binary with UPX")?;
        }
        if !ctx.global.dry_run {
            std::fs::write(to.join(ORIGIN), &origin).context("recording where dist/ came from")?;
        }
        dist::publish(ctx, to)
    })
}

/// ex2 from `dist/` alone.
pub fn build_runtime(ctx: &Ctx, plan: &Plan) -> Result<()> {
    plan.build(ctx, dockerbuild::EX2, &plan.tag, &ctx.paths.dist())
}
