//! `cargo xtask verify [IMAGE]`: reads the image's labels (revision, version, Go, builder base),
//! rebuilds that revision with `--strategy direct` in a temporary git worktree under target/, and
//! exits 0 only when the rebuild's image ID equals the image's. Otherwise it says what differs:
//! config fields, the layer, files in the layer.

use std::io::Read;

use anyhow::{bail, Context, Result};

use crate::{
    domain::Platform,
    flags,
    infra::{
        ctx::Ctx,
        docker::{self, Engine},
        fsx, git,
        tools::Go,
    },
    pipeline::{
        app::App, build, checkout::Checkout, compare, deps, distdir, meta::Meta, oci::Image,
    },
    project::{self, Paths},
};

impl flags::Verify {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let image = match self.image {
            Some(image) => image.into_string(),
            None => App::load(&ctx.paths.root, ctx.app.as_deref())?
                .default_tag()
                .into_string(),
        };
        let engine = Engine::ensure(ctx)?;
        let id = docker::image_id(ctx, &image)
            .with_context(|| format!("the engine has no image {image}"))?;
        let label = |key: &str| {
            docker::label(ctx, &image, key)
                .filter(|v| !v.is_empty())
                .with_context(|| {
                    format!("{image} has no {key} label: it was not built by this project's xtask")
                })
        };
        let revision = label(project::OCI_REVISION)?;
        if revision == "unknown" {
            bail!("{image} was built outside a git checkout (revision unknown): there is nothing to rebuild it from");
        }
        let version = label(project::OCI_VERSION)?;
        // Which of the revision's images it is (app.json's `images`), by the name it was given.
        let title = label(project::OCI_TITLE)?;
        let go_label = label(project::LABEL_GO)?;
        // Image data is never an option: the label must be an image reference.
        let builder_base = label(project::LABEL_BUILDER_BASE)?;
        if let Err(e) = builder_base.parse::<crate::domain::ImageRef>() {
            bail!(
                "{image}'s {} label is not an image reference ({e}): it was not built by this \
                 project's xtask, or was changed since",
                project::LABEL_BUILDER_BASE
            );
        }
        let arch = docker::inspect(ctx, &image, "{{.Architecture}}").unwrap_or_default();
        let host = Platform::host();
        if arch != host.arch {
            bail!("{image} is for {arch}; verify rebuilds for this host's platform ({host})");
        }
        let go = Go::find(ctx)?;
        if go.version != go_label {
            bail!(
                "{image} was built with {go_label}; this host's Go is {}: put {go_label} first on PATH \
                 (Go's output differs between releases)",
                go.version
            );
        }
        let checkout = Checkout::open(ctx, Some(&version))?;
        let origin = Origin {
            revision: &revision,
            version: &version,
            title: &title,
            builder_base: &builder_base,
        };
        let rebuilt = rebuild(ctx, &checkout, &engine, &go, &origin)?;
        let Some(rebuilt) = rebuilt else {
            return Ok(()); // --dry-run
        };
        // Like with like: the engine's ID is our config's digest or our manifest's, by store.
        let expected = rebuilt.engine_id(engine.store);
        if expected == id {
            println!(
                "verified: {image} ({id}) is revision {revision}, rebuilt bit for bit (config {}, \
                 OCI manifest {})",
                rebuilt.id, rebuilt.manifest_digest
            );
            return Ok(());
        }
        let differences = differences(ctx, &image, &rebuilt)?;
        bail!(
            "{image} ({id}) is NOT what revision {revision} builds (rebuilt: {expected}):\n  {}",
            differences.join("\n  ")
        )
    }
}

/// What the image's labels say it was built from.
struct Origin<'a> {
    revision: &'a str,
    version: &'a str,
    /// The image's name: which of the revision's images it is.
    title: &'a str,
    builder_base: &'a str,
}

/// `origin`'s image, rebuilt with `direct` in a temporary worktree (None under `--dry-run`).
fn rebuild(
    ctx: &Ctx,
    checkout: &Checkout,
    engine: &Engine,
    go: &Go,
    origin: &Origin,
) -> Result<Option<Image>> {
    let paths = &ctx.paths;
    let Origin {
        revision,
        version,
        title: _,
        builder_base,
    } = *origin;
    let dir = paths.worktrees().join(fsx::random_hex(4));
    ctx.step(&format!("check out {revision} into {dir}"), || {
        git::add_worktree(ctx, &paths.root, &dir, revision)
            .with_context(|| format!("is {revision} in this repository? (`git fetch` it first)"))
    })?;
    let worktree = Worktree {
        ctx,
        repo: paths.root.clone(),
        dir: dir.clone(),
    };
    ctx.step(&format!("rebuild {revision} (direct)"), || {
        let wt = Paths::at(worktree.dir.clone())?;
        // The revision's own contract: its app.json and code, as they were then.
        let app = App::load(&wt.root, Some(origin.title))?;
        deps::vendor(ctx, &wt, &app, || Ok(go.clone()))?;
        distdir::build_on_host(ctx, &wt, &app, go, &[], version)?;
        let builder = checkout.builder(ctx, engine, Some(builder_base))?;
        let meta = Meta::of_checkout(ctx, &wt.root, &app, version, &go.version, builder_base);
        ctx.change("assemble the image", || {
            let ca_bundle =
                std::fs::read(&builder.files.ca_bundle).context("reading the CA bundle")?;
            build::assemble(
                &app,
                &wt.go_app(),
                &wt.dist(),
                &ca_bundle,
                &meta,
                Platform::host(),
            )
        })
    })
}

/// The temporary worktree, removed however verify ends.
struct Worktree<'a> {
    ctx: &'a Ctx,
    repo: camino::Utf8PathBuf,
    dir: camino::Utf8PathBuf,
}

impl Drop for Worktree<'_> {
    fn drop(&mut self) {
        if let Err(e) = git::remove_worktree(self.ctx, &self.repo, &self.dir) {
            self.ctx
                .warn(format!("could not remove the worktree {}: {e:#}", self.dir));
        }
    }
}

/// What differs between the engine's image and the rebuild, from `docker save`.
fn differences(ctx: &Ctx, image: &str, rebuilt: &Image) -> Result<Vec<String>> {
    let saved = fsx::Temp::file_in(&ctx.paths.xtask_dir(), ".save-")?;
    let out = saved.path();
    docker::save(ctx, image, out)?;
    let mut files = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(out)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        files.insert(name, bytes);
    }
    let json = |bytes: Option<&Vec<u8>>, what: &str| {
        let bytes = bytes.with_context(|| format!("docker save wrote no {what}"))?;
        jzon::parse(&String::from_utf8_lossy(bytes)).with_context(|| format!("reading {what}"))
    };
    let manifest = json(files.get("manifest.json"), "manifest.json")?;
    let config_name = manifest[0]["Config"].as_str().unwrap_or_default();
    let config = json(files.get(config_name), "image config")?;
    let ours = json(Some(&rebuilt.config), "rebuilt config")?;
    let mut lines = compare::config_differences(&config, &ours);
    let layers: Vec<_> = manifest[0]["Layers"].members().collect();
    match layers.as_slice() {
        [one] => {
            let theirs = files
                .get(one.as_str().unwrap_or_default())
                .context("no layer in docker save")?;
            lines.extend(compare::layer_differences(theirs, &rebuilt.layer)?);
        }
        more => lines.push(format!(
            "layers: the image has {}, the rebuild 1",
            more.len()
        )),
    }
    if lines.is_empty() {
        lines.push("the configs differ in encoding only".into());
    }
    Ok(lines)
}
