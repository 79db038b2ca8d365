//! `cargo xtask ci`, the test command: provisions what the tests need (tools, engine, local base
//! image), then Rust fmt and clippy, Go vet, gofmt and go test, and the Rust tests, whose
//! integration tests drive the real xtask against the real engine (the quick bench runs first).

use anyhow::{bail, Result};
use xshell::cmd;

use crate::{base_images, ctx::Ctx, glide, gobuild, setup, tools};

pub fn run(ctx: &Ctx) -> Result<()> {
    if ctx.global.no_setup {
        tools::require(ctx, &setup::ALL)?;
    } else {
        ctx.step("setup", || setup::run(ctx))?;
    }
    // The image tests build offline: make the local builder base now, once.
    ctx.step("local builder base image", || {
        base_images::ensure_local(ctx, None)
    })?;
    let sh = &ctx.sh;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ctx.step("cargo fmt --check", || {
        ctx.run(cmd!(sh, "{cargo} fmt --all -- --check"))
    })?;
    ctx.step("cargo clippy", || {
        ctx.run(cmd!(
            sh,
            "{cargo} clippy --workspace --all-targets --quiet -- -D warnings"
        ))
    })?;
    ctx.step("go vet, gofmt, go test", || {
        glide::vendor(ctx)?;
        let _dir = sh.push_dir(ctx.paths.stage());
        let env = gobuild::go_env(ctx);
        ctx.run_env(&env, cmd!(sh, "go vet ."))?;
        let sources: Vec<String> = std::fs::read_dir(ctx.paths.go_app())?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .filter(|n| n.ends_with(".go"))
            .map(|n| ctx.paths.go_app().join(n).to_string())
            .collect();
        let unformatted = cmd!(sh, "gofmt -l {sources...}").quiet().read()?;
        if !unformatted.is_empty() {
            bail!("not gofmt-clean (run `gofmt -w` on them):\n{unformatted}");
        }
        ctx.run_env(&env, cmd!(sh, "go test -count=1 ."))
    })?;
    // The bench runs too, so that it cannot rot; no timing is asserted.
    ctx.step("cargo xtask bench --quick", || {
        crate::bench::run(ctx, true, 1)
    })?;
    ctx.step("cargo test", || {
        ctx.run(cmd!(sh, "{cargo} test --workspace"))
    })
}
