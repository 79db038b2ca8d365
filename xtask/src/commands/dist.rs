//! `cargo xtask dist`: glide, then static Linux binaries and their checksums in `dist/`, swapped in
//! whole only when everything built. Without Go on the host, the binary is built in the builder
//! image and copied out.

use anyhow::Result;

use crate::{
    flags,
    infra::{ctx::Ctx, docker::Engine, tools::Go},
    pipeline::{checkout::Checkout, distdir, handoff},
};

impl flags::Dist {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let paths = &ctx.paths;
        let mut checkout = Checkout::open(ctx, self.app_version.as_ref().map(|v| v.0.as_str()))?;
        let go = Go::find(ctx);
        checkout.vendor(
            ctx,
            go.as_ref().cloned().map_err(|e| anyhow::anyhow!("{e:#}")),
        )?;
        let platforms = self.platform.map(|p| p.0).unwrap_or_default();
        let version = checkout.version.clone();
        match go {
            Ok(go) => distdir::build_on_host(ctx, paths, &checkout.app, &go, &platforms, &version)?,
            Err(no_go) if handoff::can_build_without_go() && platforms.is_empty() => {
                let engine = Engine::ensure(ctx).map_err(|e| {
                    anyhow::anyhow!("{no_go:#}\n(the container fallback cannot run either: {e:#})")
                })?;
                ctx.announce(
                    "no Go on this host: building in the builder image and copying the binary out",
                );
                let builder = checkout.builder(ctx, &engine, None)?;
                handoff::dist_in_builder(
                    ctx,
                    &checkout.app,
                    &engine,
                    &mut checkout.record,
                    &builder.files,
                    &builder.base.image,
                    &version,
                )?;
            }
            Err(no_go) => return Err(no_go),
        }
        ctx.after_real_run(|| distdir::print(paths))
    }
}
