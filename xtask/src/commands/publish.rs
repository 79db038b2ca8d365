//! `cargo xtask publish --to REGISTRY/REPO[:TAG]`: one cross-compiled binary per platform (Go's
//! own cross-compilation: no emulation, no `RUN` for a foreign platform), one image per platform
//! assembled as `--strategy direct` does, an OCI image index over them, pushed with skopeo; an SBOM
//! and a provenance statement per image, written to dist/ and attached in the registry; optionally
//! a cosign signature of the index. The registry's digests are checked against ours and written to
//! dist/digests.txt.

use anyhow::{bail, Result};

use crate::{
    flags,
    infra::{ctx::Ctx, docker::Engine, tools},
    pipeline::{
        checkout::Checkout,
        distdir,
        publish::{self, Target},
    },
};

/// Default platforms: what servers run.
const DEFAULT_PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

impl flags::Publish {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        if self.to.has_digest() {
            bail!(
                "--to {}: name a repository and a tag; the digest is what publishing makes",
                self.to
            );
        }
        let (repository, tag) = self.to.repository_and_tag();
        let registry = self.to.registry();
        if let Some(key) = &self.verify_signature {
            tools::require(ctx, &[tools::SKOPEO, tools::COSIGN])?;
            let digest = publish::remote_digest(ctx, self.to.as_str(), &registry)?;
            let subject = format!("{repository}@{digest}");
            publish::verify_signature(ctx, &subject, &registry, key)?;
            println!("signature verified: {subject} is signed by {key}");
            return Ok(());
        }
        let mut needed = vec![tools::SKOPEO, tools::ORAS];
        needed.extend(self.sign.as_ref().map(|_| tools::COSIGN));
        tools::require(ctx, &needed)?;
        let mut checkout = Checkout::open(ctx, self.app_version.as_ref().map(|v| v.0.as_str()))?;
        checkout.one_image("publish")?;
        let engine = Engine::ensure(ctx)?;
        let go = checkout.go(ctx)?;
        let tag = tag.map_or_else(|| checkout.version.clone(), str::to_string);
        let platforms = match self.platform {
            Some(p) if !p.0.is_empty() => p.0,
            _ => DEFAULT_PLATFORMS
                .map(|p| p.parse().expect("a known platform"))
                .to_vec(),
        };
        let builder = checkout.builder(ctx, &engine, None)?;
        let meta = checkout.meta(ctx, &go.version, &builder.base.image);
        distdir::build_on_host(
            ctx,
            &ctx.paths,
            &checkout.app,
            &go,
            &platforms,
            &checkout.version,
        )?;
        // From dist/ (under --dry-run: the binaries a previous `dist --platform …` left, if any).
        let Some(built) = publish::assemble(ctx, &platforms, &meta, &builder)? else {
            return Ok(());
        };
        let target = Target {
            registry: &registry,
            repository,
            tag: &tag,
        };
        publish::release(ctx, &target, &built, &meta.created(), self.sign.as_deref())
    }
}
