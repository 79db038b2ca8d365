//! Base images. Users who can pull get the official ones; where no registry answers (or with
//! `--offline`), the builder base is made locally from Debian's mirror with debootstrap and
//! `docker import`: Debian's Go, the same as the host's `golang-go`, so every path yields the
//! same binary. The runtime base defaults to `scratch`, which needs nothing.

use std::fs;

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::{ctx::Ctx, docker, fsx, project, tools};

/// What the builder base holds besides a minimal Debian.
const INCLUDE: &str = "golang-go,ca-certificates";
/// Trimmed from the root filesystem before import: caches, docs, manuals, translations.
const TRIM: [&str; 6] = [
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
];

/// The builder base image to use: `requested`, else the official default when the engine has it or
/// can pull it, else the local one (made now if missing), announced.
pub fn builder_base(ctx: &Ctx, requested: Option<&str>) -> Result<String> {
    if let Some(image) = requested {
        return available(ctx, image).then(|| image.to_string()).with_context(|| {
            format!("the builder image {image} is neither local nor pullable: build one with `cargo xtask base-images` and pass --builder-image {}", project::LOCAL_BUILDER_IMAGE)
        });
    }
    let official = project::DEFAULT_BUILDER_IMAGE;
    if available(ctx, official) {
        return Ok(official.to_string());
    }
    let why = if ctx.global.offline {
        "--offline"
    } else {
        "no registry answers"
    };
    ctx.announce(format!(
        "{why}: using the local builder base {} instead of {official}",
        project::LOCAL_BUILDER_IMAGE
    ));
    ensure_local(ctx, None)?;
    Ok(project::LOCAL_BUILDER_IMAGE.to_string())
}

/// The runtime base: `scratch` (needs nothing) or an image the engine has or can pull.
pub fn runtime_base(ctx: &Ctx, requested: Option<&str>) -> Result<String> {
    let image = requested.unwrap_or(project::DEFAULT_RUNTIME_IMAGE);
    if image == "scratch" || available(ctx, image) {
        Ok(image.to_string())
    } else {
        bail!("the runtime image {image} is neither local nor pullable (`--runtime-image scratch` needs nothing)")
    }
}

fn available(ctx: &Ctx, image: &str) -> bool {
    docker::image_id(ctx, image).is_some() || docker::try_pull(ctx, image)
}

/// `cargo xtask base-images`: makes the local builder base unless it is there already.
pub fn run(ctx: &Ctx, mirror: Option<&str>) -> Result<()> {
    crate::setup::ensure_engine(ctx)?;
    ensure_local(ctx, mirror)?;
    if let Some(size) = docker::image_size(ctx, project::LOCAL_BUILDER_IMAGE) {
        println!(
            "{}  {}",
            project::LOCAL_BUILDER_IMAGE,
            crate::ctx::human_size(size)
        );
    }
    Ok(())
}

/// Makes the local builder base if the engine lacks it.
pub fn ensure_local(ctx: &Ctx, mirror: Option<&str>) -> Result<()> {
    let image = project::LOCAL_BUILDER_IMAGE;
    if docker::image_id(ctx, image).is_some() {
        ctx.announce(format!(
            "{image} is there (`cargo xtask clean --all` removes it)"
        ));
        return Ok(());
    }
    tools::require(ctx, &[tools::DEBOOTSTRAP])?;
    let suite = host_suite();
    let mirror = mirror.unwrap_or(project::DEBIAN_MIRROR);
    ctx.step(
        &format!("base image {image} (debootstrap {suite} from {mirror})"),
        || {
            let rootfs = fsx::TempDir::new(ctx.paths.scratch("rootfs"))?;
            let dir = &rootfs.0;
            let sh = &ctx.sh;
            ctx.run(
                cmd!(
                    sh,
                    "debootstrap --variant=minbase --include={INCLUDE} {suite} {dir} {mirror}"
                )
                .ignore_stdout(),
            )
            .context("debootstrap needs root and Debian's mirror")?;
            if !ctx.global.dry_run {
                for path in TRIM {
                    fsx::remove_dir(&dir.join(path))?;
                }
                fs::create_dir_all(dir.join("go/src")).context("creating /go in the base image")?;
            }
            let changes = [
                "ENV GOPATH=/go".to_string(),
                "ENV PATH=/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                    .to_string(),
                format!("LABEL {}={}", project::LABEL_BASE, project::APP),
            ];
            let change_args: Vec<String> = changes
                .iter()
                .flat_map(|c| ["--change".to_string(), c.clone()])
                .collect();
            if ctx.global.dry_run {
                println!(
                    "[dry-run] tar -C {dir} -c . | docker import {} - {image}",
                    change_args.join(" ")
                );
                return Ok(());
            }
            eprintln!("$ tar -C {dir} -c . | docker import … - {image}");
            let mut import_args = vec!["import".to_string()];
            import_args.extend(change_args);
            import_args.extend(["-".to_string(), image.to_string()]);
            duct::cmd("tar", ["-C", dir.as_str(), "-c", "."])
                .pipe(duct::cmd("docker", import_args).stdout_null())
                .run()
                .with_context(|| format!("importing {image}"))?;
            Ok(())
        },
    )?;
    check_go_matches_host(ctx, image);
    Ok(())
}

/// The host's Debian suite (`VERSION_CODENAME`), so the image's Go is the host's; bookworm else.
fn host_suite() -> String {
    fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VERSION_CODENAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "bookworm".into())
}

/// Warns when the image's Go differs from the host's: the binaries would differ.
fn check_go_matches_host(ctx: &Ctx, image: &str) {
    if ctx.global.dry_run || !tools::GO.present() {
        return;
    }
    let sh = &ctx.sh;
    let host = cmd!(sh, "go version").quiet().read().unwrap_or_default();
    let inside = cmd!(sh, "docker run --rm {image} go version")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    let strip = |s: &str| s.split_whitespace().nth(2).unwrap_or("").to_string();
    if strip(&host) != strip(&inside) {
        ctx.announce(format!(
            "warning: {image} has {} but the host has {}: dist's binary and the image's will differ",
            strip(&inside),
            strip(&host)
        ));
    }
}

/// IDs of the base images we made.
pub fn ours(ctx: &Ctx) -> Result<Vec<String>> {
    let sh = &ctx.sh;
    let filter = format!("label={}={}", project::LABEL_BASE, project::APP);
    let out = cmd!(sh, "docker image ls --quiet --no-trunc --filter {filter}")
        .quiet()
        .read()?;
    Ok(out.lines().map(str::to_string).collect())
}
