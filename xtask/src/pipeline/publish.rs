//! Publishing: the OCI layout (one image per platform, an index over them) pushed with skopeo,
//! which copies an OCI layout to a registry as it is (`--all --preserve-digests`: the registry's
//! digests are the ones computed here, and it refuses to change them); SBOMs and provenance
//! attached with oras as OCI 1.1 artifacts whose `subject` is the image, found through the
//! referrers tag scheme (Debian's registry predates the referrers API); signatures with cosign,
//! offline. Credentials are the docker CLI's (`docker login`, `~/.docker/config.json`, its
//! credential helpers) or REGISTRY_AUTH_FILE: never on a command line, never printed.

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use crate::{
    cmd,
    domain::{Digest, Platform},
    infra::{ctx::Ctx, fsx, process::ProcessError},
    pipeline::{build, checkout::Builder, gobuild, meta::Meta, oci::Image, sbom},
};

/// Where a release goes: `REGISTRY/REPOSITORY:TAG`.
pub struct Target<'a> {
    pub registry: &'a str,
    pub repository: &'a str,
    pub tag: &'a str,
}

/// Publishes `built`: the OCI layout (an index over the images) pushed, the registry's digests
/// checked against ours, SBOMs and provenance written to dist/ and attached, the index signed with
/// `sign` (a cosign key), the digests written to dist/digests.txt.
pub fn release(
    ctx: &Ctx,
    target: &Target,
    built: &[Published],
    created: &str,
    sign: Option<&str>,
) -> Result<()> {
    let Target {
        registry,
        repository,
        tag,
    } = *target;
    let images: Vec<&Image> = built.iter().map(|p| &p.image).collect();
    let layout = ctx.paths.xtask_dir().join("publish-oci");
    let index = crate::pipeline::load::write_layout(ctx, &layout, &images, tag)?;
    let index_digest = index.map_or_else(|| images[0].manifest_digest.clone(), |(_, d)| d);
    let destination = format!("{repository}:{tag}");
    write_documents(ctx, built)?;
    ctx.step(&format!("push {destination} (skopeo)"), || {
        push(ctx, &layout, tag, &destination, registry)
    })?;
    // Said once it is true: the push completed (under --dry-run: what it would push).
    println!("{destination}@{index_digest}");
    for p in built {
        println!(
            "  {:<16} {repository}@{}",
            p.platform, p.image.manifest_digest
        );
    }
    ctx.after_real_run(|| {
        check_digests(
            ctx,
            registry,
            repository,
            &destination,
            &index_digest,
            built,
        )
    })?;
    ctx.step(
        "attach SBOMs and provenance (oras, referrers tag scheme)",
        || attach_documents(ctx, registry, repository, built, created),
    )?;
    if let Some(key) = sign {
        let subject = format!("{repository}@{index_digest}");
        ctx.step(
            &format!("sign {subject} (cosign, no transparency log)"),
            || self::sign(ctx, &subject, registry, key),
        )?;
    }
    let mut digests = format!("{destination}@{index_digest}\n");
    for p in built {
        digests += &format!("{repository}@{}\n", p.image.manifest_digest);
    }
    let path = ctx.paths.dist().join("digests.txt");
    ctx.change(format!("write {path}"), || {
        fsx::write_atomic(&path, digests.as_bytes())
    })?;
    ctx.after_real_run(|| {
        println!("published; digests in {path}:\n{digests}");
        Ok(())
    })
}

/// One platform's image, with its SBOM and provenance (JSON, as written and attached).
pub struct Published {
    pub platform: Platform,
    pub image: Image,
    pub sbom: Vec<u8>,
    pub provenance: Vec<u8>,
}

/// The images of `platforms` from the binaries in dist/, with their SBOMs and provenance. None
/// under `--dry-run` when dist/ lacks a binary (its digests are unknown then).
pub fn assemble(
    ctx: &Ctx,
    platforms: &[Platform],
    meta: &Meta,
    builder: &Builder,
) -> Result<Option<Vec<Published>>> {
    let paths = &ctx.paths;
    let ca_bundle = std::fs::read(&builder.files.ca_bundle).context("reading the CA bundle")?;
    let deps = sbom::dependencies(&paths.go_app(), &paths.vendor())?;
    let mut built = Vec::new();
    for &platform in platforms {
        let binary_path = paths
            .dist()
            .join(gobuild::platform_binary(meta.app.entrypoint(), platform));
        let Ok(binary) = std::fs::read(&binary_path) else {
            println!("[dry-run] no {binary_path} yet: digests unknown until `cargo xtask dist --platform {platform}` ran");
            return Ok(None);
        };
        let image = build::assemble(
            &meta.app,
            &paths.go_app(),
            &paths.dist(),
            &ca_bundle,
            meta,
            platform,
        )?;
        let binary_sha = fsx::sha256_hex(&binary);
        let spdx = sbom::spdx(
            meta,
            platform,
            &binary_sha,
            &deps,
            &builder.files.ca_version,
        );
        let provenance = sbom::provenance(meta, platform, &image.manifest_digest, &builder.base.id);
        built.push(Published {
            platform,
            image,
            sbom: pretty(&spdx),
            provenance: pretty(&provenance),
        });
    }
    Ok(Some(built))
}

fn pretty(value: &jzon::JsonValue) -> Vec<u8> {
    (value.pretty(2) + "\n").into_bytes()
}

/// Writes each platform's SBOM and provenance to dist/.
pub fn write_documents(ctx: &Ctx, built: &[Published]) -> Result<()> {
    for p in built {
        let slug = p.platform.to_string().replace('/', "-");
        for (name, bytes) in [
            (format!("sbom-{slug}.spdx.json"), &p.sbom),
            (format!("provenance-{slug}.intoto.json"), &p.provenance),
        ] {
            let path = ctx.paths.dist().join(name);
            ctx.change(format!("write {path}"), || fsx::write_atomic(&path, bytes))?;
        }
    }
    Ok(())
}

/// Fails unless the registry serves `destination` as `index_digest` and each image under its own
/// digest: nothing rewrote what we pushed.
pub fn check_digests(
    ctx: &Ctx,
    registry: &str,
    repository: &str,
    destination: &str,
    index_digest: &str,
    built: &[Published],
) -> Result<()> {
    let theirs = remote_digest(ctx, destination, registry)?;
    if theirs != index_digest {
        bail!("the registry serves {destination} as {theirs}, not {index_digest}: something rewrote the index");
    }
    for p in built {
        let ours = &p.image.manifest_digest;
        let theirs = remote_digest(ctx, &format!("{repository}@{ours}"), registry)?;
        if &theirs != ours {
            bail!("the registry serves {} as {theirs}, not {ours}", p.platform);
        }
    }
    Ok(())
}

/// Attaches each image's SBOM and provenance to it, created at `created`.
pub fn attach_documents(
    ctx: &Ctx,
    registry: &str,
    repository: &str,
    built: &[Published],
    created: &str,
) -> Result<()> {
    for p in built {
        let subject = format!("{repository}@{}", p.image.manifest_digest);
        let tmp = fsx::Temp::dir_in(&ctx.paths.xtask_dir(), ".attach-")?;
        let dir = tmp.path();
        for (name, bytes, kind) in [
            (SBOM_FILE, &p.sbom, SBOM_TYPE),
            (PROVENANCE_FILE, &p.provenance, PROVENANCE_TYPE),
        ] {
            std::fs::write(dir.join(name), bytes)?;
            attach(ctx, &subject, registry, dir, name, kind, created)?;
        }
    }
    Ok(())
}

/// A registry we talk plain HTTP to: loopback only (as the docker engine does by default).
pub fn plain_http(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// Pushes the layout's `tag` (an index and everything it names) to `destination` (`REPO:TAG`).
pub fn push(
    ctx: &Ctx,
    layout: &Utf8Path,
    tag: &str,
    destination: &str,
    registry: &str,
) -> Result<()> {
    let source = format!("oci:{layout}:{tag}");
    let dest = format!("docker://{destination}");
    let tls = format!("--dest-tls-verify={}", !plain_http(registry));
    let auth = auth_file_args("--dest-authfile");
    ctx.run(cmd!("skopeo copy --all --preserve-digests {tls} {auth...} {source} {dest}").kept())
        .map(drop)
        .map_err(|e| explain(e, registry, destination, Stage::Pushing))
}

/// The registry's own digest of `reference` (the sha256 of the manifest it serves).
pub fn remote_digest(ctx: &Ctx, reference: &str, registry: &str) -> Result<String> {
    let tls = format!("--tls-verify={}", !plain_http(registry));
    let auth = auth_file_args("--authfile");
    let target = format!("docker://{reference}");
    let raw = ctx
        .start(cmd!("skopeo inspect --raw {tls} {auth...} {target}").as_query())
        .and_then(|query| query.wait())
        .map_err(|e| explain(e, registry, reference, Stage::Pushed))?;
    Ok(Digest::of(&raw).into_string())
}

/// Attaches `file` (named `name` in the artifact) to `subject` (`REPO@sha256:…`) as an artifact of
/// `artifact_type`, created at `created` (so that the same inputs give the same artifact).
pub fn attach(
    ctx: &Ctx,
    subject: &str,
    registry: &str,
    dir: &Utf8Path,
    name: &str,
    artifact_type: &str,
    created: &str,
) -> Result<()> {
    let plain = plain_http(registry).then_some("--plain-http");
    let auth = auth_file_args("--registry-config");
    let annotation = format!("org.opencontainers.image.created={created}");
    let file = format!("{name}:{artifact_type}");
    ctx.run(cmd!("oras attach {plain...} {auth...} --distribution-spec v1.1-referrers-tag --artifact-type {artifact_type} --annotation {annotation} {subject} {file}").kept().dir(dir))
    .map(drop)
    .map_err(|e| explain(e, registry, subject, Stage::Pushed))
}

/// The referrers of `subject` of `artifact_type`, as oras finds them (through the tag scheme).
pub fn referrers(
    ctx: &Ctx,
    subject: &str,
    registry: &str,
    artifact_type: &str,
) -> Result<Vec<String>> {
    let plain = plain_http(registry).then_some("--plain-http");
    let auth = auth_file_args("--registry-config");
    let out = ctx.read(cmd!("oras discover {plain...} {auth...} --distribution-spec v1.1-referrers-tag --artifact-type {artifact_type} --format json {subject}"
    ))?;
    let value = jzon::parse(&out).context("reading oras discover's answer")?;
    Ok(value["manifests"]
        .members()
        .filter_map(|m| m["digest"].as_str().map(str::to_string))
        .collect())
}

/// Signs `subject` (`REPO@sha256:…`) with the cosign key at `key`: no transparency log (offline).
pub fn sign(ctx: &Ctx, subject: &str, registry: &str, key: &str) -> Result<()> {
    let http = plain_http(registry).then_some("--allow-http-registry");
    ctx.run(cmd!("cosign sign --yes --tlog-upload=false {http...} --key {key} {subject}").kept())
        .map(drop)
        .map_err(|e| explain(e, registry, subject, Stage::Pushed))
}

/// Checks the signature of `subject` with the cosign public key at `key`.
pub fn verify_signature(ctx: &Ctx, subject: &str, registry: &str, key: &str) -> Result<()> {
    let http = plain_http(registry).then_some("--allow-http-registry");
    ctx.read(cmd!(
        "cosign verify --insecure-ignore-tlog=true {http...} --key {key} {subject}"
    ))
    .map(drop)
    .with_context(|| format!("no valid signature by {key} on {subject}"))
}

/// REGISTRY_AUTH_FILE, when set, for the tools that take an auth file by flag; otherwise they
/// read the docker CLI's configuration themselves.
fn auth_file_args(flag: &str) -> Vec<String> {
    std::env::var("REGISTRY_AUTH_FILE")
        .map(|f| vec![flag.to_string(), f])
        .unwrap_or_default()
}

/// How far a release got when a request failed: what is live in the registry then.
#[derive(Clone, Copy)]
enum Stage {
    /// The push: the tag moves last, so nothing new is tagged yet.
    Pushing,
    /// After the push: the tag names the new index; SBOMs, provenance or the signature may not
    /// be attached yet.
    Pushed,
}

/// Says which of the usual refusals it is, what is live (`stage`), and that a re-run completes
/// what stopped partway.
fn explain(e: anyhow::Error, registry: &str, what: &str, stage: Stage) -> anyhow::Error {
    let text = format!("{e:#}");
    // What the tool said, not the command line (which spells `--dest-tls-verify`).
    let said = ProcessError::of(&e).map_or_else(|| text.clone(), ProcessError::stderr_text);
    let lower = said.to_lowercase();
    let why = if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("denied")
    {
        format!(
            "the registry {registry} refused: no credentials, or wrong ones. Log in with `docker login {registry}` \
             (or point REGISTRY_AUTH_FILE at an auth file)"
        )
    } else if lower.contains("x509") || lower.contains("certificate") || lower.contains("tls") {
        format!("TLS error talking to {registry}: its certificate is not trusted here (or it speaks plain HTTP)")
    } else if lower.contains("connection refused")
        || lower.contains("no such host")
        || lower.contains("timeout")
        || lower.contains("dial tcp")
    {
        format!("the registry {registry} is unreachable")
    } else {
        format!("talking to {registry} failed")
    };
    let live = match stage {
        Stage::Pushing => "What was uploaded before the failure stays in the registry, untagged",
        Stage::Pushed => {
            "The push had completed: the tag names the new image in the registry, but what \
             failed here (an SBOM, the provenance, the signature) may not be attached to it"
        }
    };
    anyhow::anyhow!(
        "{why} ({what}).\n{live}; running the same command again completes it with the same \
         digests.\n{}",
        text.lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// The artifact file names (fixed, so that the artifacts are the same everywhere).
pub const SBOM_FILE: &str = "sbom.spdx.json";
pub const PROVENANCE_FILE: &str = "provenance.intoto.json";
pub const SBOM_TYPE: &str = sbom::SPDX_MEDIA_TYPE;
pub const PROVENANCE_TYPE: &str = sbom::PROVENANCE_MEDIA_TYPE;

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(super::plain_http("127.0.0.1:5000"));
        assert!(super::plain_http("localhost:5000"));
        assert!(!super::plain_http("ghcr.io"));
        assert!(!super::plain_http("registry.example.com:5000"));
    }
}
