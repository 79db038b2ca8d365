//! `cargo xtask base-images`: makes the local builder base from Debian's mirror unless the engine
//! has it; prints its size and layer digest (the same from every run and every user).

use anyhow::Result;

use crate::{
    flags,
    infra::{
        ctx::{human_size, Ctx},
        docker::{self, Engine},
    },
    pipeline::base,
    project,
};

impl flags::BaseImages {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        Engine::ensure(ctx)?;
        let layer = base::ensure_local(ctx, self.mirror.as_deref())?;
        ctx.after_real_run(|| {
            let image = project::LOCAL_BUILDER_IMAGE;
            let size = docker::inspect(ctx, image, "{{.Size}}")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            println!(
                "{image}  {}  layer {}",
                human_size(size),
                layer.unwrap_or_default()
            );
            Ok(())
        })
    }
}
