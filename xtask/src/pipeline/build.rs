//! The production image, four ways, then its tag moved:
//! - multistage (default): docker/Dockerfile in one build. The legacy builder leaves the builder
//!   stage as an image: built first under `NAME-builder:TAG`, so that it is no dangling `<none>`
//!   image and its layers stay as the next build's cache.
//! - handoff: ex1, `docker cp` to dist/, ex2 from dist/ (the fallback when the engine cannot do
//!   multi-stage builds, and the path `--compress` takes).
//! - single: ex1 as the production image: the fat image, for comparison.
//! - direct: dist/ on the host, the image written by the xtask (`oci`) and loaded (`load`): no
//!   Dockerfile build, the same image ID everywhere.
//!
//! Every build makes an untagged candidate, on record; `place` moves the tag to it once it is
//! wanted (after `--smoke`), and the image the tag named before goes when nothing else refers to
//! it. One exception: on Docker's containerd store, `direct`'s load may move the tag itself
//! (`name_at_load` says when).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{
    domain::{Builder, ImageRef, Platform, Strategy},
    infra::{
        ctx::{human_size, secs, Ctx},
        docker::{self, Engine, Store},
        tools::{self, Go},
    },
    pipeline::{
        app::{self, App},
        base,
        checkout::{self, Checkout},
        distdir,
        dockerfile::{self, BuildContext, Plan},
        gobuild, handoff, load,
        meta::Meta,
        oci::{Content, Image},
        record::Superseded,
        smoke,
    },
    project,
};

/// What the user asked `image` for.
pub struct Request<'a> {
    pub strategy: Strategy,
    pub tag: &'a ImageRef,
    pub builder: Option<Builder>,
    pub builder_image: Option<&'a str>,
    pub runtime_image: Option<&'a str>,
    pub no_cache: bool,
    pub compress: bool,
    /// The tag may move as `direct`'s image loads: nothing is to pass first (no smoke test, no
    /// health check).
    pub tag_at_load: bool,
}

/// What a build made: the candidate, untagged, and what the summary says of it.
pub struct Built {
    pub engine: Engine,
    /// As the engine calls it (None under `--dry-run`: nothing was built).
    pub id: Option<String>,
    /// Direct's image, bytes and digests.
    pub image: Option<Image>,
    /// What the tag named before the build.
    pub previous: Option<String>,
    /// The load moved the tag to the candidate already.
    pub tagged: bool,
    pub strategy: Strategy,
    pub builder: Option<Builder>,
    pub builder_image: String,
    pub builder_size: u64,
    pub elapsed: Duration,
}

/// Checks what `request` asks before any work: the strategy it takes (announced when it differs
/// from the one asked).
pub fn strategy(ctx: &Ctx, request: &Request) -> Result<Strategy> {
    if request.tag.has_digest() {
        bail!(
            "--tag {}: a tag cannot carry a digest (the digest is what the build makes)",
            request.tag
        );
    }
    let mut strategy = request.strategy;
    if strategy == Strategy::Direct && request.runtime_image.is_some_and(|r| r != "scratch") {
        bail!("--strategy direct writes a scratch-based image: --runtime-image is for the Dockerfile strategies");
    }
    if request.compress {
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
    Ok(strategy)
}

/// Builds the candidate. For direct with host Go, `go build` starts first and the engine is asked
/// once Go links: Go's compile keeps both cores of a small machine busy, its link about one.
/// `request.strategy` is what `strategy` said; `engine`, when the caller knows it already (`dev`:
/// the same engine build after build).
pub fn build(
    ctx: &Ctx,
    checkout: &mut Checkout,
    request: &Request,
    engine: Option<&Engine>,
) -> Result<Built> {
    let mut strategy = request.strategy;
    let mut started = Instant::now();
    let mut host_build = None;
    if strategy == Strategy::Direct {
        match Go::find(ctx) {
            Ok(go) => {
                checkout.vendor(ctx, Ok(go.clone()))?;
                started = Instant::now();
                let build = distdir::HostBuild::start(
                    ctx,
                    &ctx.paths,
                    &checkout.app,
                    &go,
                    &checkout.version,
                )?;
                build.until_linking();
                host_build = Some((build, go));
            }
            Err(no_go) if handoff::can_build_without_go() => {
                ctx.announce(format!(
                    "{no_go:#}: the binary comes from the builder image"
                ));
                // The builder image takes vendor/ as the host build would.
                checkout.vendor(ctx, Err(no_go))?;
            }
            Err(no_go) => return Err(no_go),
        }
    }
    let engine = match engine {
        Some(engine) => engine.clone(),
        None => Engine::ensure(ctx)?,
    };
    if strategy == Strategy::Multistage && !engine.multistage() {
        ctx.announce(format!(
            "the engine's API {}.{} predates multi-stage builds (1.31): using the dist handoff",
            engine.api.0, engine.api.1
        ));
        strategy = Strategy::Handoff;
    }
    if strategy != Strategy::Direct {
        checkout.vendor(ctx, Go::find(ctx))?;
    }
    // One question to the engine: the builder base, what the tag names now.
    let mut names = vec![request.tag.as_str()];
    match request.builder_image {
        Some(requested) => names.push(requested),
        None => names.extend(base::candidates()),
    }
    let present = docker::ImageList::of(ctx, &engine, &names)?;
    let previous = present.id_of(request.tag.as_str());
    let builder_base = checkout.builder_among(ctx, request.builder_image, &present)?;
    let mut built = Built {
        engine,
        id: None,
        image: None,
        previous,
        tagged: false,
        strategy,
        builder: None,
        builder_image: builder_base.base.image.clone(),
        builder_size: builder_base.files.size,
        elapsed: Duration::ZERO,
    };
    if strategy == Strategy::Direct {
        let name = name_at_load(ctx, request, &built, checkout, &present);
        let image = direct(
            ctx,
            checkout,
            &mut built,
            request.tag.as_str(),
            name,
            host_build,
            &builder_base,
        )?;
        built.id = image
            .as_ref()
            .map(|i| i.engine_id(built.engine.store).to_string());
        built.image = image;
    } else {
        started = Instant::now();
        let (builder, buildkit) = dockerfile::choose_builder(ctx, &built.engine, request.builder)?;
        let meta = checkout.meta(ctx, &builder_base.files.go_version, &built.builder_image);
        let runtime = base::runtime_base(ctx, request.runtime_image)?;
        let plan = Plan::new(builder, buildkit, request.no_cache, &meta, &runtime);
        built.id = dockerfile_build(ctx, checkout, &plan, strategy, request)?;
        built.builder = Some(builder);
    }
    built.elapsed = started.elapsed();
    Ok(built)
}

/// The name `direct`'s archive gives its image, if any. On Docker's containerd store, a load under
/// the tag's name spares the tag request and the removal of the image the tag named (Docker 26 to
/// 28 drop it; 29 keeps it dangling, for `place` to remove). Only when nothing is to pass first,
/// and over nothing or an image of ours built on nothing the engine keeps and that no container
/// uses: those Dockers would drop a user's image under our tag without a trace, leave the steps a
/// legacy build kept, and drop from the listings the image a user's container runs.
fn name_at_load(
    ctx: &Ctx,
    request: &Request,
    built: &Built,
    checkout: &Checkout,
    present: &docker::ImageList,
) -> Option<ImageRef> {
    let replaceable = |p: &str| {
        checkout.record.owns(p) && !present.has_parent(p) && !docker::in_use(ctx, p).unwrap_or(true)
    };
    let named = request.tag_at_load
        && built.engine.store == Store::Containerd
        && built.previous.as_deref().is_none_or(replaceable);
    named.then(|| request.tag.clone())
}

/// `dist/` on the host (`host_build`, started already, the engine asked meanwhile) or, without
/// host Go, from the builder image; then the image assembled and loaded, untagged or under
/// `name`, unless the tag names it already. None under `--dry-run`.
fn direct(
    ctx: &Ctx,
    checkout: &mut Checkout,
    built: &mut Built,
    tag: &str,
    name: Option<ImageRef>,
    host_build: Option<(distdir::HostBuild, Go)>,
    builder: &checkout::Builder,
) -> Result<Option<Image>> {
    let paths = &ctx.paths;
    let go_version = match &host_build {
        Some((_, go)) => go.version.clone(),
        None => builder.files.go_version.clone(),
    };
    let meta = checkout.meta(ctx, &go_version, &built.builder_image);
    // With host Go, the engine's side of the load starts while Go links.
    let load = match host_build {
        Some(_) => Some(load::Load::start(ctx, name.clone())?),
        None => None,
    };
    let staged = match host_build {
        Some((build, go)) => {
            Some(build.wait(ctx, paths, &checkout.app, &go, &[], &checkout.version)?)
        }
        None => {
            handoff::dist_in_builder(
                ctx,
                &checkout.app,
                &built.engine,
                &mut checkout.record,
                &builder.files,
                &built.builder_image,
                &checkout.version,
            )?;
            None
        }
    };
    ctx.step("image (direct: assembled, loaded)", || {
        let dir = staged
            .as_ref()
            .map_or_else(|| paths.dist(), |s| s.path().to_path_buf());
        let ca = &builder.files.ca_bundle;
        let Some(image) = ctx.change(
            "assemble the image from dist/'s binaries, the app's files and the CA bundle",
            || {
                let ca_bundle = std::fs::read(ca).with_context(|| format!("reading {ca}"))?;
                assemble(
                    &checkout.app,
                    &paths.go_app(),
                    &dir,
                    &ca_bundle,
                    &meta,
                    Platform::host(),
                )
            },
        )?
        else {
            // --dry-run: nothing was built to read; what dist/ would become is said still.
            if let Some(staged) = staged {
                staged.publish(ctx, paths)?;
            }
            return Ok(None);
        };
        let id = image.engine_id(built.engine.store).to_string();
        let loading = if built.previous.as_deref() == Some(id.as_str()) {
            ctx.announce(format!("{tag} is {id} already: load skipped"));
            None
        } else {
            checkout.record.note_image(ctx, Some(&id))?;
            built.tagged = name.is_some();
            let load = match load {
                Some(load) => load,
                None => load::Load::start(ctx, name)?,
            };
            Some(load.send(&image)?)
        };
        // While the engine loads: dist/ and the OCI layout.
        let written = staged
            .map_or(Ok(()), |staged| staged.publish(ctx, paths))
            .and_then(|()| load::write_layout(ctx, &paths.oci_layout(), &[&image], tag).map(drop));
        if let Some(loading) = loading {
            if let Err(e) = loading.wait().with_context(|| format!("loading {id}")) {
                // Stopped or failed: what the engine made of it goes (and stays on record if
                // it arrives later).
                checkout.record.discard(ctx, &id);
                return Err(e);
            }
        }
        written?;
        Ok(Some(image))
    })
}

/// The image of `app`: its binaries from `dir` (`NAME`, or for `platform` `NAME-linux-arm64` when
/// `dir` holds that), its extra files from `go_app`, the CA bundle.
pub fn assemble(
    app: &App,
    go_app: &camino::Utf8Path,
    dir: &camino::Utf8Path,
    ca_bundle: &[u8],
    meta: &Meta,
    platform: Platform,
) -> Result<Image> {
    let binaries: Vec<(String, camino::Utf8PathBuf)> = app
        .shipped_binaries()
        .map(|b| {
            let own = dir.join(gobuild::platform_binary(b, platform));
            let path = if own.is_file() { own } else { dir.join(b) };
            (b.to_string(), path)
        })
        .collect();
    for (_, path) in &binaries {
        match std::fs::metadata(path) {
            Ok(m) if m.len() == 0 => bail!("{path} is empty"),
            Ok(_) => {}
            Err(e) => return Err(e).with_context(|| format!("reading {path}")),
        }
    }
    let files = app::data_files(go_app, app)?;
    let content = Content::of_files(&binaries, ca_bundle, &files);
    Image::assemble(&content, meta, platform)
}

/// Builds the production image with one of the Dockerfile strategies: its ID, untagged.
fn dockerfile_build(
    ctx: &Ctx,
    checkout: &mut Checkout,
    plan: &Plan,
    strategy: Strategy,
    request: &Request,
) -> Result<Option<String>> {
    let paths = &ctx.paths;
    let record = &mut checkout.record;
    let builder_tag = request.tag.builder_tag();
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
                        BuildContext::App,
                    )
                })?;
            }
            ctx.step("production image (multi-stage)", || {
                plan.build(ctx, record, &file, None, BuildContext::App)
            })
        }
        Strategy::Handoff => {
            handoff::to_dist(
                ctx,
                paths,
                &checkout.app,
                plan,
                record,
                &builder_tag,
                request.compress,
            )?;
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

/// The smoke test of the candidate: on failure, the tag stays where it was, the candidate goes
/// (when ours and nameless), and the error says both.
pub fn smoke(ctx: &Ctx, checkout: &mut Checkout, built: &Built, tag: &str) -> Result<()> {
    let Some(id) = built.id.as_deref() else {
        return Ok(()); // --dry-run
    };
    let Err(e) = smoke::run(ctx, &checkout.record.checkout, &checkout.app, id, tag) else {
        return Ok(());
    };
    let previous = built.previous.as_deref();
    let kept = match previous {
        Some(prev) if prev != id => format!("{tag} still names {prev}"),
        Some(_) => format!("{tag} names it already (an earlier build)"),
        None => format!("{tag} was not set"),
    };
    let fate = match previous == Some(id) {
        true => String::new(),
        false => match checkout.record.discard(ctx, id) {
            Superseded::Removed => "; the candidate was removed".into(),
            Superseded::Stays(why) => format!("; the candidate stays ({why})"),
            Superseded::Named(names) => {
                format!("; the candidate stays, named {}", names.join(" "))
            }
            Superseded::NotOurs => String::new(),
        },
    };
    Err(e.context(format!(
        "the new image {id} failed its smoke test: {kept}{fate}"
    )))
}

/// Moves `tag` to the candidate (the image the tag named before goes when it is ours and
/// nameless), prints the summary, and says when that one stays.
pub fn place(ctx: &Ctx, checkout: &mut Checkout, built: &Built, tag: &str) -> Result<()> {
    place_reporting(ctx, checkout, built, tag, true)
}

/// `place`, the summary printed when `report` (`dev` says one line of its own).
pub fn place_reporting(
    ctx: &Ctx,
    checkout: &mut Checkout,
    built: &Built,
    tag: &str,
    report: bool,
) -> Result<()> {
    let record = &mut checkout.record;
    let Some(id) = built.id.as_deref() else {
        return Ok(()); // --dry-run: nothing to tag
    };
    let previous = built.previous.as_deref();
    let placed = record.place(ctx, tag, id, previous, built.tagged)?;
    if report {
        ctx.after_real_run(|| {
            let size = match &built.image {
                Some(image) => image.size,
                None => docker::inspect(ctx, tag, "{{.Size}}")
                    .with_context(|| format!("inspecting {tag} after the build"))?
                    .parse()
                    .unwrap_or(0),
            };
            summary(ctx, built, id, tag, size, placed.dangling);
            Ok(())
        })?;
    }
    if let Some((prev, outcome)) = placed.superseded {
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

fn summary(ctx: &Ctx, built: &Built, id: &str, tag: &str, size: u64, dangling: usize) {
    let builder = built.builder.map_or("-".to_string(), |b| b.to_string());
    println!();
    println!(
        "{:<32} {:<11} {:<9} {:>10} {:>11}   builder base",
        "image", "strategy", "builder", "size", "build time"
    );
    println!(
        "{tag:<32} {:<11} {builder:<9} {:>10} {:>11}   {} {}",
        built.strategy.to_string(),
        human_size(size),
        secs(built.elapsed),
        built.builder_image,
        human_size(built.builder_size)
    );
    // The ID the engine knows it by (what `docker run` takes), then the digests that hold on
    // every engine.
    if built.engine.store == Store::Containerd {
        // That store's numbers are not the classic store's: say which this one is.
        let what = match built.image {
            Some(_) => "the files' bytes; this store also counts the compressed content",
            None => "the compressed content, as this store counts it; the files take more",
        };
        println!("size: {what}");
    }
    println!("image ID {id}");
    println!(
        "engine {} ({})",
        docker::engine_key(ctx),
        built.engine.store
    );
    if let Some(image) = &built.image {
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
    println!("dangling images of ours left: {dangling}");
}
