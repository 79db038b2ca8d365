//! The prelude every building command shares, in one value: the checkout locked (two xtasks never
//! build into one `dist/`), its record of what it built, the version builds stamp; then, asked
//! for, host Go with the dependencies vendored for it, the builder base with the files read from
//! it, and the labels (`Meta`) of what the checkout builds.

use anyhow::Result;

use crate::{
    infra::{
        ctx::Ctx,
        docker::{Engine, ImageList},
        tools::Go,
    },
    pipeline::{
        app::App,
        base::{self, Base, BaseFiles},
        deps, gobuild,
        meta::Meta,
        record::Record,
    },
};

pub struct Checkout {
    pub record: Record,
    /// The contract of each image the checkout makes (app.json, the rest detected): one, or one
    /// per entry of its `images` (only `--app`'s, when given).
    pub images: Vec<App>,
    /// The contract worked on: every image's binaries in one (`App::union`: what `dist` builds),
    /// until a command sets one image's.
    pub app: App,
    /// What `main.version` and the labels say.
    pub version: String,
    _lock: std::fs::File,
}

/// The builder base, and what was read from it.
pub struct Builder {
    pub base: Base,
    pub files: BaseFiles,
}

impl Checkout {
    /// Locks the checkout (waiting for another xtask), reads its record, and decides the version:
    /// `app_version`, else `git describe`, else `dev`.
    pub fn open(ctx: &Ctx, app_version: Option<&str>) -> Result<Checkout> {
        let lock = ctx.lock()?;
        let images = App::load_all(&ctx.paths.root, ctx.app.as_deref())?;
        let app = App::union(&images)?;
        let record = Record::load(ctx)?;
        let version = gobuild::version(ctx, &ctx.paths.root, app_version);
        Ok(Checkout {
            record,
            app,
            images,
            version,
            _lock: lock,
        })
    }

    /// Works on the one image `what` needs (`dev`, `publish`): an error, naming them, when the
    /// checkout makes several and `--app` chose none.
    pub fn one_image(&mut self, what: &str) -> Result<()> {
        self.app = crate::pipeline::app::one(&self.images, what)?.clone();
        Ok(())
    }

    /// Host Go, with `vendor/` made for it.
    pub fn go(&self, ctx: &Ctx) -> Result<Go> {
        let go = Go::find(ctx)?;
        self.vendor(ctx, Ok(go.clone()))?;
        Ok(go)
    }

    /// `vendor/`, made with `go` (or, without host Go, as the builder image will take it: the
    /// error says why there is none).
    pub fn vendor(&self, ctx: &Ctx, go: Result<Go>) -> Result<()> {
        deps::vendor(ctx, &ctx.paths, &self.app, || go)
    }

    /// The builder base (`requested`, else the default when the engine has it, else the local
    /// one) and its files.
    pub fn builder(&self, ctx: &Ctx, engine: &Engine, requested: Option<&str>) -> Result<Builder> {
        let base = base::builder_base(ctx, engine, requested)?;
        self.builder_of(ctx, base)
    }

    /// `builder`, among the images `present` lists (asked with others in one question).
    pub fn builder_among(
        &self,
        ctx: &Ctx,
        requested: Option<&str>,
        present: &ImageList,
    ) -> Result<Builder> {
        let base = base::builder_base_among(ctx, requested, present)?;
        self.builder_of(ctx, base)
    }

    fn builder_of(&self, ctx: &Ctx, base: Base) -> Result<Builder> {
        let files = base::base_files(ctx, &ctx.paths, &self.record.checkout, &base)?;
        Ok(Builder { base, files })
    }

    /// The labels of what this checkout builds with Go `go_version` on `builder_image`.
    pub fn meta(&self, ctx: &Ctx, go_version: &str, builder_image: &str) -> Meta {
        Meta::of_checkout(
            ctx,
            &ctx.paths.root,
            &self.app,
            &self.version,
            go_version,
            builder_image,
        )
    }
}
