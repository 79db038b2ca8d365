//! `cargo xtask image`: the production image, four ways (`pipeline::build`), smoke-tested when
//! asked, then tagged; the image the tag named before goes when nothing else refers to it. One
//! image per entry of app.json's `images`, each built, checked and tagged in turn.

use anyhow::Result;

use crate::{
    domain::ImageRef,
    flags,
    infra::ctx::Ctx,
    pipeline::{
        build::{self, Request},
        checkout::Checkout,
    },
};

impl flags::Image {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let mut checkout = Checkout::open(ctx, self.app_version.as_ref().map(|v| v.0.as_str()))?;
        if self.tag.is_some() && checkout.images.len() > 1 {
            // Names the images in the error: --tag names one.
            checkout.one_image("--tag")?;
        }
        let strategy = self.strategy.unwrap_or_default();
        for app in checkout.images.clone() {
            checkout.app = app;
            let tag = self
                .tag
                .clone()
                .unwrap_or_else(|| ImageRef(checkout.app.default_tag()));
            let mut request = Request {
                strategy,
                tag: tag.as_str(),
                builder: self.builder,
                builder_image: self.builder_image.as_ref().map(|i| i.as_str()),
                runtime_image: self.runtime_image.as_ref().map(|i| i.as_str()),
                no_cache: self.no_cache,
                compress: self.compress,
                // The tag moves once the candidate passed its smoke test, if asked for.
                tag_at_load: !self.smoke,
            };
            // Before any work: a request that cannot be built is an error now.
            request.strategy = build::strategy(ctx, &request)?;
            let built = build::build(ctx, &mut checkout, &request, None)?;
            if self.smoke {
                // The tag moves only once the candidate passed: until then it names what it named.
                build::smoke(ctx, &mut checkout, &built, tag.as_str())?;
            }
            build::place(ctx, &mut checkout, &built, tag.as_str())?;
        }
        Ok(())
    }
}
