//! `cargo xtask image`: the production image, four ways (`pipeline::build`), smoke-tested when
//! asked, then tagged; the image the tag named before goes when nothing else refers to it. One
//! image per entry of app.json's `images`, each built, checked and tagged in turn.

use anyhow::Result;

use crate::{
    domain::{ImageRef, Strategy},
    flags,
    infra::ctx::Ctx,
    pipeline::{
        app,
        build::{self, Request},
        checkout::Checkout,
    },
};

impl flags::Image {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let mut checkout = Checkout::open(ctx, self.app_version.as_ref().map(|v| v.0.as_str()))?;
        if self.tag.is_some() {
            // --tag names one image: with several, the error names them.
            app::one(&checkout.images, "--tag")?;
        }
        let tags: Vec<ImageRef> = checkout
            .images
            .iter()
            .map(|app| self.tag.clone().unwrap_or_else(|| app.default_tag()))
            .collect();
        // Before any work, for every image: a request that cannot be built is an error now (the
        // same for each, but for the tag, which only --tag can get wrong).
        let strategy = build::strategy(ctx, &self.request(&tags[0], None))?;
        for (app, tag) in checkout.images.clone().into_iter().zip(&tags) {
            checkout.app = app;
            let request = self.request(tag, Some(strategy));
            let built = build::build(ctx, &mut checkout, &request, None)?;
            if self.smoke {
                // The tag moves only once the candidate passed: until then it names what it named.
                build::smoke(ctx, &mut checkout, &built, tag.as_str())?;
            }
            build::place(ctx, &mut checkout, &built, tag.as_str())?;
        }
        Ok(())
    }

    /// What to build for `tag`, by `strategy` (None: as asked).
    fn request<'a>(&'a self, tag: &'a ImageRef, strategy: Option<Strategy>) -> Request<'a> {
        Request {
            strategy: strategy.unwrap_or(self.strategy.unwrap_or_default()),
            tag,
            builder: self.builder,
            builder_image: self.builder_image.as_ref().map(|i| i.as_str()),
            runtime_image: self.runtime_image.as_ref().map(|i| i.as_str()),
            no_cache: self.no_cache,
            compress: self.compress,
            // The tag moves once the candidate passed its smoke test, if asked for.
            tag_at_load: !self.smoke,
        }
    }
}
