//! `cargo xtask dev [--port N] [--strategy direct|multistage]`: the image built, run and served
//! on 127.0.0.1:N, rebuilt and swapped on every saved change (`pipeline::dev`).

use anyhow::{bail, Result};

use crate::{
    domain::Strategy,
    flags,
    infra::ctx::Ctx,
    pipeline::{
        build::{self, Request},
        checkout::Checkout,
        dev,
    },
};

/// The port `dev` serves on unless told.
const DEFAULT_PORT: u16 = 8080;

impl flags::Dev {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let strategy = self.strategy.unwrap_or(Strategy::Direct);
        if !matches!(strategy, Strategy::Direct | Strategy::Multistage) {
            bail!("dev builds with --strategy direct (default) or multistage, not {strategy}");
        }
        let mut checkout = Checkout::open(ctx, None)?;
        checkout.one_image("dev")?;
        if !checkout.app.serves_http() {
            bail!(
                "dev serves HTTP; the image {} has no probes (it serves none): pick one that does \
                 with --app NAME",
                checkout.app.name
            );
        }
        let tag = self.tag.unwrap_or_else(|| checkout.app.default_tag());
        let mut request = Request {
            strategy,
            tag: &tag,
            builder: None,
            builder_image: None,
            runtime_image: None,
            no_cache: false,
            compress: false,
            tag_at_load: false, // each build's container is checked first
        };
        request.strategy = build::strategy(ctx, &request)?;
        dev::run(
            ctx,
            &mut checkout,
            &request,
            self.port.unwrap_or(DEFAULT_PORT),
        )
    }
}
