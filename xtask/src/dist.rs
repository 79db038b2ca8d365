//! `cargo xtask dist`: glide, then static Linux binaries and their checksums in `dist/`, written
//! aside and moved into place only when everything built: a failure leaves `dist/` as it was.

use std::fs;

use anyhow::{Context, Result};
use camino::Utf8Path;
use xshell::cmd;

use crate::{ctx::Ctx, docker, dockerbuild, flags, fsx, glide, gobuild, handoff, project, tools};

pub fn run(ctx: &Ctx, opts: &flags::Dist) -> Result<()> {
    let _lock = ctx.lock()?;
    glide::vendor(ctx)?;
    let version = gobuild::version(ctx, opts.app_version.as_deref());
    match tools::require(ctx, &[tools::GO]) {
        Ok(()) => build_on_host(ctx, &opts.platforms, &version)?,
        // No Go here: build inside the ex1 builder image and hand the binary off.
        Err(no_go) if tools::DOCKER.present() && opts.platforms.is_empty() => {
            let engine = docker::engine(ctx).map_err(|e| {
                anyhow::anyhow!("{no_go:#}\n(the container fallback cannot run either: {e:#})")
            })?;
            ctx.announce(
                "no Go on this host: building in the ex1 builder image and copying the binary out",
            );
            let plan = dockerbuild::Plan::for_dist(ctx, &engine, &version)?;
            handoff::to_dist(ctx, &plan, false)?;
        }
        Err(no_go) => return Err(no_go),
    }
    if !ctx.global.dry_run {
        print_dist(ctx)?;
    }
    Ok(())
}

fn build_on_host(ctx: &Ctx, platforms: &[String], version: &str) -> Result<()> {
    ctx.step("go build", || {
        let tmp = fsx::TempDir::new(ctx.paths.scratch("dist"))?;
        gobuild::build(ctx, &tmp.0.join(project::BINARY), None, version)?;
        for platform in platforms {
            gobuild::build(
                ctx,
                &tmp.0.join(gobuild::platform_binary(platform)),
                Some(platform),
                version,
            )?;
        }
        publish(ctx, &tmp.0)
    })
}

/// Writes SHA256SUMS for every file in `dir` (dotfiles aside), then makes `dir` the new `dist/`.
pub fn publish(ctx: &Ctx, dir: &Utf8Path) -> Result<()> {
    let dist = ctx.paths.dist();
    if ctx.global.dry_run {
        println!("[dry-run] sha256sum > SHA256SUMS; replace {dist} with the new build");
        return Ok(());
    }
    let mut files: Vec<String> = dir
        .read_dir_utf8()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()) && !e.file_name().starts_with('.'))
        .map(|e| e.file_name().to_string())
        .collect();
    files.sort();
    let sh = &ctx.sh;
    let _dir = sh.push_dir(dir);
    let sums = cmd!(sh, "sha256sum {files...}")
        .quiet()
        .read()
        .context("computing checksums")?;
    fs::write(dir.join("SHA256SUMS"), sums + "\n").context("writing SHA256SUMS")?;
    fsx::replace_dir(dir, &dist)
}

fn print_dist(ctx: &Ctx) -> Result<()> {
    let dist = ctx.paths.dist();
    let sums = fs::read_to_string(dist.join("SHA256SUMS")).context("reading dist/SHA256SUMS")?;
    println!("dist/ ({dist}):");
    for line in sums.lines() {
        if let Some((hash, name)) = line.split_once("  ") {
            let size = fs::metadata(dist.join(name)).map(|m| m.len()).unwrap_or(0);
            println!(
                "  {name:<24} {:>9}  sha256 {hash}",
                crate::ctx::human_size(size)
            );
        }
    }
    Ok(())
}
