//! `cargo xtask setup`: installs what is missing (apt, through sudo when not root; /etc/apt left as
//! it was found), then makes sure an engine answers. A second run only checks.

use anyhow::Result;

use crate::{
    flags,
    infra::{apt, ctx::Ctx, docker::Engine, tools},
};

impl flags::Setup {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let missing: Vec<tools::Tool> = tools::ALL
            .iter()
            .copied()
            .filter(|t| !t.present())
            .collect();
        if missing.is_empty() {
            ctx.announce(format!("all tools present: {}", tools::names(&tools::ALL)));
        } else if ctx.no_setup {
            anyhow::bail!("--no-setup: not installing {}", tools::names(&missing));
        } else {
            apt::install(ctx, &tools::debian(&missing))?;
        }
        let engine = Engine::ensure(ctx)?;
        println!(
            "setup: tools present; the engine answers (API {}.{})",
            engine.api.0, engine.api.1
        );
        Ok(())
    }
}
