//! `cargo xtask image`: the production image, four ways.
//! - multistage (default): docker/Dockerfile in one build. The legacy builder leaves the builder
//!   stage as an image: found by its stage label and tagged `NAME-builder:TAG`, so that it is no
//!   dangling `<none>` image and its layers stay as the next build's cache.
//! - handoff: ex1, `docker cp` to dist/, ex2 from dist/ (the fallback when the engine cannot do
//!   multi-stage builds, and the path `--compress` takes).
//! - single: ex1 as the production image: the fat image, for comparison.
//! - direct: dist/ on the host, the image written by the xtask and loaded: no Dockerfile build,
//!   the same image ID everywhere.
//!
//! Every image built is recorded; the one its tag replaced goes when nothing else refers to it.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use xshell::cmd;

use crate::{
    flags::{self, Builder, Platform, Strategy},
    infra::{
        ctx::{human_size, secs, Ctx},
        docker::{self, Engine},
        tools::{self, Go},
    },
    pipeline::{
        base::{self, BaseFiles},
        direct::{self, Content, Image},
        distdir,
        dockerfile::{self, Plan},
        glide, gobuild, handoff,
        meta::Meta,
        record::{Record, Superseded},
        smoke,
    },
    project,
};

impl flags::Image {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let paths = &ctx.paths;
        let tag = self.tag();
        if tag.has_digest() {
            bail!("--tag {tag}: a tag cannot carry a digest (the digest is what the build makes)");
        }
        let mut strategy = self.strategy.unwrap_or_default();
        if strategy == Strategy::Direct
            && self
                .runtime_image
                .as_ref()
                .is_some_and(|r| r.as_str() != "scratch")
        {
            bail!("--strategy direct writes a scratch-based image: --runtime-image is for the Dockerfile strategies");
        }
        if self.compress {
            if strategy != Strategy::Handoff {
                ctx.announce("--compress runs UPX on the host's dist/main: using the dist handoff");
                strategy = Strategy::Handoff;
            }
            if !tools::UPX.present() {
                bail!(
                    "--compress needs `upx` on the host: {}",
                    tools::UPX.install_hint()
                );
            }
        }
        let _lock = ctx.lock()?;
        let mut record = Record::load(ctx, paths)?;
        let version = gobuild::version(
            ctx,
            &paths.root,
            self.app_version.as_ref().map(|v| v.0.as_str()),
        );
        let mut started = Instant::now();
        let work = match strategy {
            Strategy::Direct => {
                // With host Go, `go build` runs while the engine and the builder base are asked,
                // once it links: Go's compile keeps both cores of a small machine busy, its link
                // about one.
                let host_build = match Go::find(ctx) {
                    Ok(go) => {
                        glide::vendor(ctx, paths, || Ok(go.clone()))?;
                        started = Instant::now();
                        let build = distdir::HostBuild::start(ctx, paths, &go, &version)?;
                        build.until_linking();
                        Some((build, go))
                    }
                    Err(no_go) if handoff::can_build_without_go() => {
                        ctx.announce(format!(
                            "{no_go:#}: the binary comes from the builder image"
                        ));
                        // The builder image takes vendor/ as the host build would.
                        glide::vendor(ctx, paths, || Err(anyhow::anyhow!("{no_go:#}")))?;
                        None
                    }
                    Err(no_go) => return Err(no_go),
                };
                // The engine's images (the builder base, what the tag names, which IDs the
                // engine has): the one query during Go's build, which checks the engine too
                // (direct needs no `docker version`).
                let present = docker::ImageList::first(ctx)?;
                let binary = match host_build {
                    Some((build, go)) => Binary::Host(build, go),
                    None => Binary::Builder(Engine::ensure(ctx)?),
                };
                Work::Direct(binary, present)
            }
            _ => {
                let engine = Engine::ensure(ctx)?;
                if strategy == Strategy::Multistage && !engine.multistage() {
                    ctx.announce(format!(
                        "the engine's API {}.{} predates multi-stage builds (1.31): using the dist handoff",
                        engine.api.0, engine.api.1
                    ));
                    strategy = Strategy::Handoff;
                }
                glide::vendor(ctx, paths, || Go::find(ctx))?;
                Work::Dockerfile(engine)
            }
        };
        let requested = self.builder_image.as_ref().map(|i| i.as_str());
        let base_image = match &work {
            Work::Direct(_, present) => base::builder_base_among(ctx, requested, present)?,
            Work::Dockerfile(_) => base::builder_base(ctx, requested)?,
        };
        let files = base::base_files(ctx, paths, &record.checkout, &base_image)?;
        let builder_image = base_image.image;
        let mut built = match work {
            Work::Direct(binary, present) => {
                let image = direct(
                    ctx,
                    &mut record,
                    binary,
                    present,
                    &files,
                    &builder_image,
                    &version,
                    tag.as_str(),
                )?;
                let (image, facts) = image.unzip();
                Built {
                    builder: None,
                    image,
                    facts,
                }
            }
            Work::Dockerfile(engine) => {
                started = Instant::now();
                let (builder, buildkit) = dockerfile::choose_builder(ctx, &engine, self.builder)?;
                let meta = Meta::of_checkout(
                    ctx,
                    &paths.root,
                    &version,
                    &files.go_version,
                    &builder_image,
                );
                let runtime =
                    base::runtime_base(ctx, self.runtime_image.as_ref().map(|i| i.as_str()))?;
                let plan = Plan::new(builder, buildkit, self.no_cache, &meta, &runtime);
                build(
                    ctx,
                    &plan,
                    &mut record,
                    strategy,
                    tag.as_str(),
                    self.compress,
                )?;
                Built {
                    builder: Some(builder),
                    image: None,
                    facts: None,
                }
            }
        };
        let elapsed = started.elapsed();
        ctx.after_real_run(|| {
            let facts = match built.facts.take() {
                Some(known) => known,
                None => Facts::ask(ctx, tag.as_str(), files.size)?,
            };
            summary(
                ctx,
                tag.as_str(),
                strategy,
                &built,
                &facts,
                &builder_image,
                elapsed,
            );
            Ok(())
        })?;
        if self.smoke {
            smoke::run(ctx, &record.checkout, tag.as_str())?;
        }
        Ok(())
    }
}

/// What builds the image: `direct` (with the engine's images, as listed while Go builds), or a
/// Dockerfile on the engine. (One a run: its size does not matter.)
#[allow(clippy::large_enum_variant)]
enum Work {
    Direct(Binary, docker::ImageList),
    Dockerfile(Engine),
}

/// Where `direct`'s binary comes from.
#[allow(clippy::large_enum_variant)]
enum Binary {
    /// `go build` on the host, running.
    Host(distdir::HostBuild, Go),
    /// The builder image, as the dist handoff builds it (no host Go).
    Builder(Engine),
}

struct Built {
    builder: Option<Builder>,
    /// `direct`'s image.
    image: Option<Image>,
    /// What the summary says, when the build knows it already.
    facts: Option<Facts>,
}

/// What the summary says of the images.
struct Facts {
    id: String,
    size: u64,
    builder_size: u64,
    /// The project's dangling images.
    dangling: usize,
}

impl Facts {
    /// As the engine states them after a build (two queries at once).
    fn ask(ctx: &Ctx, tag: &str, builder_size: u64) -> Result<Facts> {
        let sh = &ctx.sh;
        let format = "{{.Id}} {{.Size}}";
        let inspect = ctx.start_read(cmd!(sh, "docker image inspect --format {format} {tag}"))?;
        let dangling = docker::images_start(ctx, &docker::project_dangling_filters())?;
        let out = inspect
            .wait_text()
            .with_context(|| format!("inspecting {tag} after the build"))?;
        let (id, size) = out.split_once(' ').context("no image after the build")?;
        Ok(Facts {
            id: id.to_string(),
            size: size.parse().unwrap_or(0),
            builder_size,
            dangling: docker::images_wait(dangling)?.len(),
        })
    }
}

/// `dist/` on the host (its build started already, the engine asked meanwhile) or, without host
/// Go, from the builder image; then the image assembled and loaded. What the summary says comes
/// from what was asked during the build and what the build did: no query after it.
#[allow(clippy::too_many_arguments)]
fn direct(
    ctx: &Ctx,
    record: &mut Record,
    binary: Binary,
    present: docker::ImageList,
    files: &BaseFiles,
    builder_image: &str,
    version: &str,
    tag: &str,
) -> Result<Option<(Image, Facts)>> {
    let paths = &ctx.paths;
    let go_version = match &binary {
        Binary::Host(_, go) => go.version.clone(),
        Binary::Builder(_) => files.go_version.clone(),
    };
    let meta = Meta::of_checkout(ctx, &paths.root, version, &go_version, builder_image);
    let previous = present.id_of(&flags::ImageRef(tag.to_string()).familiar());
    // The host's binary is read where it was built: dist/ is swapped in while the engine loads,
    // whose work starts now, before Go is done.
    let mut loading = None;
    let staged = match binary {
        Binary::Host(build, go) => {
            let by_reference = direct::by_reference(ctx);
            loading = Some(direct::Loading::start(ctx, tag, meta.epoch, by_reference)?);
            Some(build.wait(ctx, paths, &go, &[], version)?)
        }
        Binary::Builder(engine) => {
            handoff::dist_in_builder(ctx, paths, &engine, record, files, builder_image, version)?;
            None
        }
    };
    ctx.step("image (direct: assembled, loaded)", || {
        let binary_path = staged
            .as_ref()
            .map_or_else(|| paths.dist(), |s| s.path().to_path_buf())
            .join(project::BINARY);
        let read = |p: &camino::Utf8Path| std::fs::read(p).with_context(|| format!("reading {p}"));
        let (binary, ca_bundle) = match ctx.change("read dist/main and the CA bundle", || {
            Ok((read(&binary_path)?, read(&files.ca_bundle)?))
        })? {
            Some(both) => both,
            None => {
                // --dry-run: nothing was built to read; what dist/ would become is said still.
                if let Some(staged) = staged {
                    staged.publish(ctx, paths)?;
                }
                return Ok(None);
            }
        };
        let content = Content {
            binary: &binary,
            ca_bundle: &ca_bundle,
        };
        let (mut made, mut dangling) = (None, None);
        let (_, superseded) = record.tagged_from(ctx, paths, tag, previous, |previous| {
            let has = |id: &str| present.has(id);
            let meanwhile = |image: &Image| {
                // While the engine loads: what the image the tag named is (whether it goes once
                // the tag has moved), and the project's dangling images, for the summary.
                previous.ask(ctx)?;
                dangling = Some(docker::images_start(
                    ctx,
                    &docker::project_dangling_filters(),
                )?);
                if let Some(staged) = staged {
                    staged.publish(ctx, paths)?;
                }
                Image::write_layout(ctx, &paths.oci_layout(), &[image], tag).map(drop)
            };
            let loaded = direct::assemble_and_load(
                ctx,
                &content,
                &meta,
                Platform::host(),
                tag,
                previous.id(),
                has,
                loading,
                meanwhile,
            )?;
            let id = loaded.image.id.clone();
            made = Some(loaded);
            Ok(id)
        })?;
        // The import's image went while the superseded one did.
        let loaded = made.context("no image was made")?;
        let carrier = loaded.carrier().map(str::to_string);
        let image = loaded.finish(ctx);
        // Listed while the engine loaded: before or after the tag moved, and before the
        // superseded image (and the import's) went.
        let mut dangling: BTreeSet<String> = match dangling {
            Some(listing) => docker::images_wait(listing)?.into_iter().collect(),
            None => BTreeSet::new(),
        };
        dangling.remove(&image.id);
        if let Some(carrier) = carrier {
            dangling.remove(&carrier);
        }
        if let Some((prev, outcome)) = superseded {
            if outcome == Superseded::Stays {
                dangling.insert(prev);
            } else {
                dangling.remove(&prev);
            }
        }
        let facts = Facts {
            id: image.id.clone(),
            size: image.size,
            builder_size: files.size,
            dangling: dangling.len(),
        };
        Ok(Some((image, facts)))
    })
}

/// Builds `tag` with one of the Dockerfile strategies.
fn build(
    ctx: &Ctx,
    plan: &Plan,
    record: &mut Record,
    strategy: Strategy,
    tag: &str,
    compress: bool,
) -> Result<()> {
    let paths = &ctx.paths;
    let builder_tag = flags::ImageRef(tag.to_string()).builder_tag();
    match strategy {
        Strategy::Multistage => {
            let file = Plan::dockerfile(paths, dockerfile::MULTISTAGE);
            ctx.step("production image (multi-stage)", || {
                record.tagged(ctx, paths, tag, |_| {
                    plan.build(ctx, paths, &file, tag, &paths.go_app())
                })
            })?;
            if plan.builder == Builder::Legacy {
                keep_builder_stage(ctx, record, &builder_tag)?;
            }
        }
        Strategy::Handoff => {
            handoff::to_dist(ctx, paths, plan, record, &builder_tag, compress)?;
            ctx.step("runtime image (ex2, from dist/)", || {
                handoff::build_runtime(ctx, paths, plan, record, tag)
            })?;
        }
        Strategy::Single => {
            ctx.step("single-stage image (ex1)", || {
                let id = handoff::build_builder(ctx, paths, plan, record, &builder_tag)?;
                let sh = &ctx.sh;
                record.tagged(ctx, paths, tag, |_| {
                    ctx.run_quiet(cmd!(sh, "docker tag {builder_tag} {tag}"))?;
                    Ok(id.clone())
                })
            })?;
        }
        Strategy::Direct => unreachable!("direct builds no Dockerfile"),
    }
    Ok(())
}

/// The legacy builder leaves the multi-stage builder stage as an untagged image. Tagging the
/// newest one keeps its layers as the next build's cache; the one it replaces goes.
fn keep_builder_stage(ctx: &Ctx, record: &mut Record, builder_tag: &str) -> Result<()> {
    let filters = [
        docker::project_filter(),
        docker::label_filter(project::LABEL_STAGE, project::STAGE_BUILDER),
        "dangling=true".to_string(),
    ];
    let candidates = docker::images(ctx, &filters)?;
    if candidates.is_empty() {
        return Ok(()); // nothing rebuilt: the tagged builder stage is current
    }
    let sh = &ctx.sh;
    let format = "{{.Created}} {{.Id}}";
    let created = ctx
        .read(cmd!(
            sh,
            "docker image inspect --format {format} {candidates...}"
        ))
        .context("inspecting the builder stage images")?;
    let newest = created
        .lines()
        .filter_map(|line| line.split_once(' '))
        .max_by_key(|(created, _)| sortable(created))
        .map(|(_, id)| id.to_string());
    if let Some(id) = newest {
        record.tagged(ctx, &ctx.paths, builder_tag, |_| {
            ctx.run_quiet(cmd!(sh, "docker tag {id} {builder_tag}"))?;
            Ok(id.clone())
        })?;
    }
    Ok(())
}

/// RFC 3339 with its fraction padded to nanoseconds, so that strings sort as times do.
fn sortable(created: &str) -> String {
    let trimmed = created.trim_end_matches('Z');
    let (head, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    format!("{head}.{fraction:0<9}")
}

fn summary(
    ctx: &Ctx,
    tag: &str,
    strategy: Strategy,
    built: &Built,
    facts: &Facts,
    builder_image: &str,
    elapsed: Duration,
) {
    let builder = built.builder.map_or("-".to_string(), |b| b.to_string());
    println!();
    println!(
        "{:<32} {:<11} {:<9} {:>10} {:>11}   builder base",
        "image", "strategy", "builder", "size", "build time"
    );
    println!(
        "{tag:<32} {:<11} {builder:<9} {:>10} {:>11}   {builder_image} {}",
        strategy.to_string(),
        human_size(facts.size),
        secs(elapsed),
        human_size(facts.builder_size)
    );
    println!("image ID {}", facts.id);
    if let Some(image) = &built.image {
        println!(
            "layer {}  OCI manifest {}  (layout: {})",
            image.layer_digest,
            image.manifest_digest,
            ctx.paths.oci_layout()
        );
    }
    println!("dangling images of the project left: {}", facts.dangling);
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
