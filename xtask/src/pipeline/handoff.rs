//! The dist handoff: build ex1 (the fat builder image), copy its /out (binary, CA bundle,
//! passwd/group) out with `docker create` + `docker cp` (no bind mount: it works when the engine
//! is on another host), make that `dist/`, and build ex2 (the runtime image) from `dist/` alone.

use anyhow::{Context, Result};

use crate::{
    cmd,
    infra::{
        ctx::Ctx,
        docker::{self, Engine, TempContainer},
        tools,
    },
    pipeline::{
        app::App,
        base::BaseFiles,
        distdir,
        dockerfile::{self, BuildContext, Plan},
        meta::Meta,
        record::Record,
    },
    project::{self, Paths},
};

/// The builder image (ex1), tagged `builder_tag`: its ID (None under `--dry-run`).
pub fn build_builder(
    ctx: &Ctx,
    paths: &Paths,
    plan: &Plan,
    record: &mut Record,
    builder_tag: &str,
) -> Result<Option<String>> {
    let file = Plan::dockerfile(paths, dockerfile::EX1);
    plan.build_tagged(ctx, record, &file, None, builder_tag, BuildContext::App)
}

/// Builds ex1 and makes its /out the new `dist/` (with SHA256SUMS), UPX-compressed when asked.
/// When `dist/` already holds this very builder image's output, the copy (and UPX) is skipped.
pub fn to_dist(
    ctx: &Ctx,
    paths: &Paths,
    app: &App,
    plan: &Plan,
    record: &mut Record,
    builder_tag: &str,
    compress: bool,
) -> Result<()> {
    let id = ctx.step("builder image (ex1)", || {
        build_builder(ctx, paths, plan, record, builder_tag)
    })?;
    let dist = paths.dist();
    // What the builder image holds, by its layers (its ID changes with every build's label).
    let layers = id
        .and_then(|id| docker::inspect(ctx, &id, "{{json .RootFS.Layers}}"))
        .unwrap_or_default();
    let origin = format!("{layers} compress={compress}\n");
    let current = std::fs::read_to_string(dist.join(distdir::ORIGIN)).unwrap_or_default();
    if !layers.is_empty() && origin == current && dist.join(app.entrypoint()).is_file() {
        ctx.announce("dist/ already holds this builder image's output: copy skipped");
        return Ok(());
    }
    ctx.step("copy the binary out to dist/", || {
        let purpose = format!("{}-handoff", app.name);
        let container =
            TempContainer::create(ctx, &record.checkout, builder_tag, &purpose, &[], &[])?;
        let tmp = distdir::scratch(paths)?;
        let to = tmp.path().to_path_buf();
        docker::copy_out(ctx, &container.name, "/out/.", &to)?;
        for binary in app.binaries().filter(|_| compress).map(|b| to.join(b)) {
            // UPX rewrites the file in place: writable for the moment, read-only again after.
            let mode = |m: u32| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(m))
                    .with_context(|| format!("chmod {m:o} {binary}"))
            };
            ctx.change(format!("chmod 755 {binary}"), || mode(0o755))?;
            ctx.run(cmd!("upx -q --best --lzma {binary}").quiet())
                .with_context(|| format!("compressing {binary} with UPX"))?;
            ctx.change(format!("chmod 555 {binary}"), || mode(0o555))?;
        }
        ctx.change("record where dist/ came from", || {
            std::fs::write(to.join(distdir::ORIGIN), &origin).context("writing dist/.handoff")
        })?;
        distdir::publish(ctx, paths, tmp)
    })
}

/// ex2 from `dist/` alone, untagged: its ID (None under `--dry-run`).
pub fn build_runtime(
    ctx: &Ctx,
    paths: &Paths,
    plan: &Plan,
    record: &mut Record,
) -> Result<Option<String>> {
    let file = Plan::dockerfile(paths, dockerfile::EX2);
    plan.build(ctx, record, &file, None, BuildContext::Runtime)
}

/// `dist/main` on a host without Go: built in the builder image made over the base `files` came
/// from (`builder_image`), copied out; that builder image is recorded in `record`.
pub fn dist_in_builder(
    ctx: &Ctx,
    app: &App,
    engine: &Engine,
    record: &mut Record,
    files: &BaseFiles,
    builder_image: &str,
    version: &str,
) -> Result<()> {
    let paths = &ctx.paths;
    let (builder, buildkit) = dockerfile::choose_builder(ctx, engine, None)?;
    let meta = Meta::of_checkout(
        ctx,
        &paths.root,
        app,
        version,
        &files.go_version,
        builder_image,
    );
    let plan = Plan::new(
        builder,
        buildkit,
        false,
        &meta,
        project::DEFAULT_RUNTIME_IMAGE,
    );
    let builder_tag = app.default_tag().builder_tag();
    to_dist(ctx, paths, app, &plan, record, &builder_tag, false)
}

/// Whether `dist/` can be made on this host without Go (the container fallback).
pub fn can_build_without_go() -> bool {
    tools::DOCKER.present()
}
