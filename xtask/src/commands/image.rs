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

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{
    domain::{Builder, Platform, Strategy},
    flags,
    infra::{
        ctx::{human_size, secs, Ctx},
        docker::{self, Engine, Store},
        tools::{self, Go},
    },
    pipeline::{
        base::{self, BaseFiles},
        distdir,
        dockerfile::{self, Plan},
        glide, gobuild, handoff, load,
        meta::Meta,
        oci::{Content, Image},
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
        // For direct with host Go, `go build` runs while the engine is asked, once it links: Go's
        // compile keeps both cores of a small machine busy, its link about one.
        let mut host_build = None;
        if strategy == Strategy::Direct {
            match Go::find(ctx) {
                Ok(go) => {
                    glide::vendor(ctx, paths, || Ok(go.clone()))?;
                    started = Instant::now();
                    let build = distdir::HostBuild::start(ctx, paths, &go, &version)?;
                    build.until_linking();
                    host_build = Some((build, go));
                }
                Err(no_go) if handoff::can_build_without_go() => {
                    ctx.announce(format!(
                        "{no_go:#}: the binary comes from the builder image"
                    ));
                    // The builder image takes vendor/ as the host build would.
                    glide::vendor(ctx, paths, || Err(anyhow::anyhow!("{no_go:#}")))?;
                }
                Err(no_go) => return Err(no_go),
            }
        }
        let engine = Engine::ensure(ctx)?;
        if strategy == Strategy::Multistage && !engine.multistage() {
            ctx.announce(format!(
                "the engine's API {}.{} predates multi-stage builds (1.31): using the dist handoff",
                engine.api.0, engine.api.1
            ));
            strategy = Strategy::Handoff;
        }
        if strategy != Strategy::Direct {
            glide::vendor(ctx, paths, || Go::find(ctx))?;
        }
        // One question to the engine: the builder base, what the tag names now.
        let requested = self.builder_image.as_ref().map(|i| i.as_str());
        let mut names = vec![tag.as_str()];
        names.extend(requested.map_or(base::candidates().to_vec(), |r| vec![r]));
        let present = docker::ImageList::of(ctx, &engine, &names)?;
        let previous = present.id_of(tag.as_str());
        let base_image = base::builder_base_among(ctx, requested, &present)?;
        let files = base::base_files(ctx, paths, &record.checkout, &base_image)?;
        let builder_image = base_image.image;
        let (candidate, builder) = if strategy == Strategy::Direct {
            let made = direct(
                ctx,
                &mut record,
                &engine,
                host_build,
                previous.as_deref(),
                &files,
                &builder_image,
                &version,
                tag.as_str(),
            )?;
            (made, None)
        } else {
            started = Instant::now();
            let (builder, buildkit) = dockerfile::choose_builder(ctx, &engine, self.builder)?;
            let meta = Meta::of_checkout(
                ctx,
                &paths.root,
                &version,
                &files.go_version,
                &builder_image,
            );
            let runtime = base::runtime_base(ctx, self.runtime_image.as_ref().map(|i| i.as_str()))?;
            let plan = Plan::new(builder, buildkit, self.no_cache, &meta, &runtime);
            let id = build(
                ctx,
                &plan,
                &mut record,
                strategy,
                tag.as_str(),
                self.compress,
            )?;
            (Candidate { id, image: None }, Some(builder))
        };
        let elapsed = started.elapsed();
        let id = candidate.id.as_str();
        if self.smoke && !id.is_empty() {
            // The tag moves only once the candidate passed: until then it names what it named.
            if let Err(e) = smoke::run(ctx, &record.checkout, id, tag.as_str()) {
                let kept = match previous.as_deref() {
                    Some(prev) if prev != id => format!("{tag} still names {prev}"),
                    Some(_) => format!("{tag} names it already (an earlier build)"),
                    None => format!("{tag} was not set"),
                };
                let fate = match previous.as_deref() == Some(id) {
                    true => String::new(),
                    false => match record.discard(ctx, paths, id) {
                        Superseded::Removed => "; the candidate was removed".into(),
                        Superseded::Stays(why) => format!("; the candidate stays ({why})"),
                        Superseded::Named(names) => {
                            format!("; the candidate stays, named {}", names.join(" "))
                        }
                        Superseded::NotOurs => String::new(),
                    },
                };
                return Err(e.context(format!(
                    "the new image {id} failed its smoke test: {kept}{fate}"
                )));
            }
        }
        let placed = record.place(ctx, paths, tag.as_str(), id, previous.as_deref())?;
        // Said while the superseded image goes.
        ctx.after_real_run(|| {
            let facts = Facts::ask(ctx, tag.as_str(), &candidate, files.size, placed.dangling)?;
            summary(
                ctx,
                &engine,
                tag.as_str(),
                strategy,
                builder,
                &candidate,
                &facts,
                &builder_image,
                elapsed,
            );
            Ok(())
        })?;
        if let Some((prev, outcome)) = record.settle(ctx, paths, placed)? {
            let why = match outcome {
                Superseded::Removed => None,
                Superseded::Stays(why) => Some(why),
                Superseded::Named(names) => Some(format!("still named {}", names.join(" "))),
                Superseded::NotOurs => Some(format!(
                    "this checkout's record does not name it (a checkout's `clean` removes what \
                     it built; else `docker image rm {prev}`)"
                )),
            };
            if let Some(why) = why {
                ctx.announce(format!(
                    "the image {tag} named before, {prev}, stays: {why}"
                ));
            }
        }
        Ok(())
    }
}

/// The image a build made, untagged: its ID as the engine calls it, and (direct) its bytes.
struct Candidate {
    id: String,
    image: Option<Image>,
}

/// What the summary says of the images.
struct Facts {
    size: u64,
    builder_size: u64,
    /// Nameless images on this checkout's record.
    dangling: usize,
}

impl Facts {
    /// As the engine states them after a build (direct knows its size; `place` counted what is
    /// dangling).
    fn ask(
        ctx: &Ctx,
        tag: &str,
        candidate: &Candidate,
        builder_size: u64,
        dangling: usize,
    ) -> Result<Facts> {
        let size = match &candidate.image {
            Some(image) => image.size,
            None => docker::inspect(ctx, tag, "{{.Size}}")
                .with_context(|| format!("inspecting {tag} after the build"))?
                .parse()
                .unwrap_or(0),
        };
        Ok(Facts {
            size,
            builder_size,
            dangling,
        })
    }
}

/// `dist/` on the host (`host_build`, started already, the engine asked meanwhile) or, without
/// host Go, from the builder image; then the image assembled and loaded, untagged, unless the
/// tag names it already (`previous`).
#[allow(clippy::too_many_arguments)]
fn direct(
    ctx: &Ctx,
    record: &mut Record,
    engine: &Engine,
    host_build: Option<(distdir::HostBuild, Go)>,
    previous: Option<&str>,
    files: &BaseFiles,
    builder_image: &str,
    version: &str,
    tag: &str,
) -> Result<Candidate> {
    let paths = &ctx.paths;
    let go_version = match &host_build {
        Some((_, go)) => go.version.clone(),
        None => files.go_version.clone(),
    };
    let meta = Meta::of_checkout(ctx, &paths.root, version, &go_version, builder_image);
    // With host Go, the engine's side of the load starts while Go links.
    let load = match host_build {
        Some(_) => Some(load::Load::start(ctx)?),
        None => None,
    };
    let staged = match host_build {
        Some((build, go)) => Some(build.wait(ctx, paths, &go, &[], version)?),
        None => {
            handoff::dist_in_builder(ctx, paths, engine, record, files, builder_image, version)?;
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
                return Ok(Candidate {
                    id: String::new(),
                    image: None,
                });
            }
        };
        if binary.is_empty() {
            bail!("{binary_path} is empty");
        }
        let content = Content {
            binary: &binary,
            ca_bundle: &ca_bundle,
        };
        let image = Image::assemble(&content, &meta, Platform::host())?;
        let id = image.engine_id(engine.store).to_string();
        let loading = if previous == Some(id.as_str()) {
            ctx.announce(format!("{tag} is {id} already: load skipped"));
            None
        } else {
            record.note_image(ctx, paths, &id)?;
            let load = match load {
                Some(load) => load,
                None => load::Load::start(ctx)?,
            };
            Some(load.send(&image)?)
        };
        // While the engine loads: dist/ and the OCI layout.
        let written = staged
            .map_or(Ok(()), |staged| staged.publish(ctx, paths))
            .and_then(|()| load::write_layout(ctx, &paths.oci_layout(), &[&image], tag));
        if let Some(loading) = loading {
            if let Err(e) = loading.wait().with_context(|| format!("loading {id}")) {
                // Stopped or failed: what the engine made of it goes (and stays on record if
                // it arrives later).
                record.discard(ctx, paths, &id);
                return Err(e);
            }
        }
        written?;
        Ok(Candidate {
            id,
            image: Some(image),
        })
    })
}

/// Builds the production image with one of the Dockerfile strategies: its ID, untagged.
fn build(
    ctx: &Ctx,
    plan: &Plan,
    record: &mut Record,
    strategy: Strategy,
    tag: &str,
    compress: bool,
) -> Result<String> {
    let paths = &ctx.paths;
    let builder_tag = crate::domain::ImageRef(tag.to_string()).builder_tag();
    match strategy {
        Strategy::Multistage => {
            let file = Plan::dockerfile(paths, dockerfile::MULTISTAGE);
            // The legacy builder would leave the builder stage as a nameless image: built first
            // under `NAME-builder:TAG`, its layers are the next build's cache.
            if plan.builder == Builder::Legacy {
                ctx.step("builder stage (multi-stage, legacy builder)", || {
                    plan.build_tagged(
                        ctx,
                        record,
                        &file,
                        Some(project::STAGE_BUILDER),
                        &builder_tag,
                        &paths.go_app(),
                    )
                })?;
            }
            ctx.step("production image (multi-stage)", || {
                plan.build(ctx, record, &file, None, &paths.go_app())
            })
        }
        Strategy::Handoff => {
            handoff::to_dist(ctx, paths, plan, record, &builder_tag, compress)?;
            ctx.step("runtime image (ex2, from dist/)", || {
                handoff::build_runtime(ctx, paths, plan, record)
            })
        }
        Strategy::Single => ctx.step("single-stage image (ex1)", || {
            handoff::build_builder(ctx, paths, plan, record, &builder_tag)
        }),
        Strategy::Direct => unreachable!("direct builds no Dockerfile"),
    }
}

#[allow(clippy::too_many_arguments)]
fn summary(
    ctx: &Ctx,
    engine: &Engine,
    tag: &str,
    strategy: Strategy,
    builder: Option<Builder>,
    candidate: &Candidate,
    facts: &Facts,
    builder_image: &str,
    elapsed: Duration,
) {
    let builder = builder.map_or("-".to_string(), |b| b.to_string());
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
    // The ID the engine knows it by (what `docker run` takes), then the digests that hold on
    // every engine.
    if engine.store == Store::Containerd {
        // That store's numbers are not the classic store's: say which this one is.
        let what = match candidate.image {
            Some(_) => "the files' bytes; this store also counts the compressed content",
            None => "the compressed content, as this store counts it; the files take more",
        };
        println!("size: {what}");
    }
    println!("image ID {}", candidate.id);
    println!("engine {} ({})", docker::engine_key(ctx), engine.store);
    if let Some(image) = &candidate.image {
        println!(
            "config {}  OCI manifest {}",
            image.id, image.manifest_digest
        );
        println!(
            "layer {}  (layout: {})",
            image.layer_digest,
            ctx.paths.oci_layout()
        );
    }
    println!("dangling images of ours left: {}", facts.dangling);
}
