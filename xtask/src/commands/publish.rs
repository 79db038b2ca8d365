//! `cargo xtask publish --to REGISTRY/REPO[:TAG]`: one cross-compiled binary per platform (Go's
//! own cross-compilation: no emulation, no `RUN` for a foreign platform), one image per platform
//! assembled as `--strategy direct` does, an OCI image index over them, pushed with skopeo; an SBOM
//! and a provenance statement per image, written to dist/ and attached in the registry; optionally
//! a cosign signature of the index. The registry's digests are checked against ours and written to
//! dist/digests.txt.

use anyhow::{bail, Context, Result};

use crate::{
    flags,
    infra::{
        ctx::Ctx,
        docker::Engine,
        fsx,
        tools::{self, Go},
    },
    pipeline::{
        base, distdir, glide, gobuild, load,
        meta::Meta,
        oci::{Content, Image},
        publish::{self, PROVENANCE_FILE, PROVENANCE_TYPE, SBOM_FILE, SBOM_TYPE},
        record::Record,
        sbom,
    },
};

/// Default platforms: what servers run.
const DEFAULT_PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

impl flags::Publish {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let paths = &ctx.paths;
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
        if self.sign.is_some() {
            needed.push(tools::COSIGN);
        }
        tools::require(ctx, &needed)?;
        let _lock = ctx.lock()?;
        let engine = Engine::ensure(ctx)?;
        let record = Record::load(ctx, paths)?;
        let go = Go::find(ctx)?;
        glide::vendor(ctx, paths, || Ok(go.clone()))?;
        let version = gobuild::version(
            ctx,
            &paths.root,
            self.app_version.as_ref().map(|v| v.0.as_str()),
        );
        let tag = tag.map_or_else(|| version.clone(), str::to_string);
        let platforms = match self.platform {
            Some(p) if !p.0.is_empty() => p.0,
            _ => DEFAULT_PLATFORMS
                .iter()
                .map(|p| p.parse().expect("a known platform"))
                .collect(),
        };
        let base_image = base::builder_base(ctx, &engine, None)?;
        let files = base::base_files(ctx, paths, &record.checkout, &base_image)?;
        let meta = Meta::of_checkout(ctx, &paths.root, &version, &go.version, &base_image.image);
        distdir::build_on_host(ctx, paths, &go, &platforms, &version)?;

        // The images, SBOMs and provenance, from dist/ (under --dry-run: the binaries a previous
        // `dist --platform …` left, if any).
        let dist = paths.dist();
        let ca_bundle = std::fs::read(&files.ca_bundle).context("reading the CA bundle")?;
        let deps = sbom::dependencies(&paths.go_app(), &paths.vendor())?;
        let mut built = Vec::new();
        for &platform in &platforms {
            let binary_path = dist.join(gobuild::platform_binary(platform));
            let Ok(binary) = std::fs::read(&binary_path) else {
                println!("[dry-run] no {binary_path} yet: digests unknown until `cargo xtask dist --platform {platform}` ran");
                return Ok(());
            };
            let image = Image::assemble(
                &Content {
                    binary: &binary,
                    ca_bundle: &ca_bundle,
                },
                &meta,
                platform,
            )?;
            let spdx = sbom::spdx(
                &meta,
                platform,
                &fsx::sha256_hex(&binary),
                &deps,
                &files.ca_version,
            );
            let provenance =
                sbom::provenance(&meta, platform, &image.manifest_digest, &base_image.id);
            built.push((platform, image, pretty(&spdx), pretty(&provenance)));
        }
        let images: Vec<&Image> = built.iter().map(|(_, i, _, _)| i).collect();
        let layout = paths.xtask_dir().join("publish-oci");
        let index = load::write_layout(ctx, &layout, &images, &tag)?;
        let index_digest = match &index {
            Some((_, d)) => d.clone(),
            None => images[0].manifest_digest.clone(),
        };
        let destination = format!("{repository}:{tag}");
        println!("{destination}@{index_digest}");
        for (platform, image, _, _) in &built {
            println!("  {platform:<16} {repository}@{}", image.manifest_digest);
        }
        for (platform, _, spdx, provenance) in &built {
            let slug = platform.to_string().replace('/', "-");
            for (name, bytes) in [
                (format!("sbom-{slug}.spdx.json"), spdx),
                (format!("provenance-{slug}.intoto.json"), provenance),
            ] {
                let path = dist.join(name);
                ctx.change(format!("write {path}"), || fsx::write_atomic(&path, bytes))?;
            }
        }

        ctx.step(&format!("push {destination} (skopeo)"), || {
            publish::push(ctx, &layout, &tag, &destination, &registry)
        })?;
        ctx.after_real_run(|| {
            // The registry's digests must be ours.
            let theirs = publish::remote_digest(ctx, &destination, &registry)?;
            if theirs != index_digest {
                bail!("the registry serves {destination} as {theirs}, not {index_digest}: something rewrote the index");
            }
            for (platform, image, _, _) in &built {
                let reference = format!("{repository}@{}", image.manifest_digest);
                let theirs = publish::remote_digest(ctx, &reference, &registry)?;
                if theirs != image.manifest_digest {
                    bail!("the registry serves {platform} as {theirs}, not {}", image.manifest_digest);
                }
            }
            Ok(())
        })?;
        ctx.step(
            "attach SBOMs and provenance (oras, referrers tag scheme)",
            || {
                for (_, image, spdx, provenance) in &built {
                    let subject = format!("{repository}@{}", image.manifest_digest);
                    let tmp = fsx::Temp::dir_in(&paths.xtask_dir(), ".attach-")?;
                    let dir = tmp.path();
                    for (name, bytes, kind) in [
                        (SBOM_FILE, spdx, SBOM_TYPE),
                        (PROVENANCE_FILE, provenance, PROVENANCE_TYPE),
                    ] {
                        std::fs::write(dir.join(name), bytes)?;
                        publish::attach(
                            ctx,
                            &subject,
                            &registry,
                            dir,
                            name,
                            kind,
                            &meta.created(),
                        )?;
                    }
                }
                Ok(())
            },
        )?;
        if let Some(key) = &self.sign {
            let subject = format!("{repository}@{index_digest}");
            ctx.step(
                &format!("sign {subject} (cosign, no transparency log)"),
                || publish::sign(ctx, &subject, &registry, key),
            )?;
        }
        let mut digests = format!("{destination}@{index_digest}\n");
        for (_, image, _, _) in &built {
            digests += &format!("{repository}@{}\n", image.manifest_digest);
        }
        let path = dist.join("digests.txt");
        ctx.change(format!("write {path}"), || {
            fsx::write_atomic(&path, digests.as_bytes())
        })?;
        ctx.after_real_run(|| {
            println!("published; digests in {path}:\n{digests}");
            Ok(())
        })
    }
}

fn pretty(value: &jzon::JsonValue) -> Vec<u8> {
    (value.pretty(2) + "\n").into_bytes()
}
