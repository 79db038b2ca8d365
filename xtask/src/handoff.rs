//! The dist handoff: build ex1 (the fat builder image), copy its /out (binary, CA bundle,
//! passwd/group) out with `docker create` + `docker cp` (no bind mount: it works when the engine
//! is on another host), then that becomes `dist/`, from which ex2 builds the runtime image.

use anyhow::{Context, Result};
use xshell::cmd;

use crate::{
    ctx::Ctx,
    dist,
    docker::TempContainer,
    dockerbuild::{self, Plan},
    fsx,
};

/// The builder image (ex1), tagged `plan.builder_tag()`.
pub fn build_builder(ctx: &Ctx, plan: &Plan) -> Result<()> {
    plan.build(
        ctx,
        dockerbuild::EX1,
        &plan.builder_tag(),
        &ctx.paths.go_app(),
    )
}

/// Builds ex1 and makes its /out the new `dist/` (with SHA256SUMS). The temporary container goes
/// whatever happens.
pub fn to_dist(ctx: &Ctx, plan: &Plan) -> Result<()> {
    ctx.step("builder image (ex1)", || build_builder(ctx, plan))?;
    ctx.step("copy the binary out to dist/", || {
        let container = TempContainer::create(ctx, &plan.builder_tag(), "handoff", &[])?;
        let tmp = fsx::TempDir::new(ctx.paths.scratch("handoff"))?;
        let sh = &ctx.sh;
        let from = format!("{}:/out/.", container.name);
        let to = &tmp.0;
        ctx.run(cmd!(sh, "docker cp {from} {to}"))
            .context("copying /out from the builder container")?;
        dist::publish(ctx, to)
    })
}

/// ex2 from `dist/` alone.
pub fn build_runtime(ctx: &Ctx, plan: &Plan) -> Result<()> {
    plan.build(ctx, dockerbuild::EX2, &plan.tag, &ctx.paths.dist())
}
