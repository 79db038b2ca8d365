//! `cargo xtask clean [--all]`: removes what the other commands made, and nothing else: dist/,
//! the GOPATH/glide workspace, go-app/vendor, our containers and images (by our ownership labels,
//! which carry this checkout's id), dangling intermediates of ours (also what an interrupted build
//! left); `--all` also the base images.

use anyhow::Result;
use xshell::cmd;

use crate::{base_images, ctx::human_size, ctx::Ctx, docker, fsx, glide, tools};

pub fn run(ctx: &Ctx, all: bool) -> Result<()> {
    let _lock = ctx.lock()?;
    let mut dirs = vec![ctx.paths.dist(), ctx.paths.target().join("xtask-tmp")];
    dirs.extend(glide::clean_paths(ctx));
    let mut removed_dirs = 0;
    for dir in dirs.iter().filter(|d| d.exists()) {
        if ctx.global.dry_run {
            println!("[dry-run] rm -rf {dir}");
        } else {
            ctx.announce(format!("removing {dir}"));
            fsx::remove_dir(dir)?;
        }
        removed_dirs += 1;
    }
    if !tools::DOCKER.present() || docker::engine_error(std::time::Duration::from_secs(4)).is_some()
    {
        ctx.announce("no Docker engine answers: images and containers not checked");
        println!("clean: {removed_dirs} directories removed");
        return Ok(());
    }
    let before = docker::disk_usage(ctx, &["Images"]);
    let sh = &ctx.sh;
    let containers = docker::ours(ctx, "container", &[])?;
    if !containers.is_empty() {
        let ids = &containers;
        ctx.run(cmd!(sh, "docker rm -f {ids...}").ignore_stdout())?;
    }
    let mut images = docker::ours(ctx, "image", &[])?;
    images.extend(docker::our_dangling(ctx)?); // what an interrupted build left
    if all {
        images.extend(base_images::ours(ctx)?);
    }
    images.sort();
    images.dedup();
    let mut removed_images = 0;
    for id in &images {
        // One at a time: an image a foreign container still uses stays, with a warning.
        match ctx.run(
            cmd!(sh, "docker image rm -f {id}")
                .ignore_stdout()
                .ignore_stderr(),
        ) {
            Ok(()) => removed_images += 1,
            Err(_) if docker::image_id(ctx, id).is_none() => removed_images += 1, // went with a child
            Err(e) => eprintln!("warning: image {id} stays: {e:#}"),
        }
    }
    let reclaimed = before.saturating_sub(docker::disk_usage(ctx, &["Images"]));
    println!(
        "clean: {removed_dirs} directories, {} containers, {removed_images} images removed; {} reclaimed",
        containers.len(),
        human_size(reclaimed)
    );
    Ok(())
}
