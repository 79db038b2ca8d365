//! `cargo xtask dist`: glide, then static Linux binaries and their checksums in `dist/`, swapped in
//! whole only when everything built. Without Go on the host, the binary is built in the builder
//! image and copied out.

use anyhow::Result;

use crate::{
    flags,
    infra::{ctx::Ctx, docker::Engine, tools::Go},
    pipeline::{base, distdir, glide, gobuild, handoff, record::Record},
};

impl flags::Dist {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let paths = &ctx.paths;
        let _lock = ctx.lock()?;
        let go = Go::find(ctx);
        glide::vendor(ctx, paths, || {
            go.as_ref().cloned().map_err(|e| anyhow::anyhow!("{e:#}"))
        })?;
        let version = gobuild::version(
            ctx,
            &paths.root,
            self.app_version.as_ref().map(|v| v.0.as_str()),
        );
        let platforms = self.platform.map(|p| p.0).unwrap_or_default();
        match go {
            Ok(go) => distdir::build_on_host(ctx, paths, &go, &platforms, &version)?,
            Err(no_go) if handoff::can_build_without_go() && platforms.is_empty() => {
                let engine = Engine::ensure(ctx).map_err(|e| {
                    anyhow::anyhow!("{no_go:#}\n(the container fallback cannot run either: {e:#})")
                })?;
                ctx.announce(
                    "no Go on this host: building in the builder image and copying the binary out",
                );
                let mut record = Record::load(ctx, paths)?;
                let base_image = base::builder_base(ctx, &engine, None)?;
                let files = base::base_files(ctx, paths, &record.checkout, &base_image)?;
                handoff::dist_in_builder(
                    ctx,
                    paths,
                    &engine,
                    &mut record,
                    &files,
                    &base_image.image,
                    &version,
                )?;
            }
            Err(no_go) => return Err(no_go),
        }
        ctx.after_real_run(|| distdir::print(paths))
    }
}
