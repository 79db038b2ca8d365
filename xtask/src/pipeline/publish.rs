//! Publishing: the OCI layout (one image per platform, an index over them) pushed with skopeo,
//! which copies an OCI layout to a registry as it is (`--all --preserve-digests`: the registry's
//! digests are the ones computed here, and it refuses to change them); SBOMs and provenance
//! attached with oras as OCI 1.1 artifacts whose `subject` is the image, found through the
//! referrers tag scheme (Debian's registry predates the referrers API); signatures with cosign,
//! offline. Credentials are the docker CLI's (`docker login`, `~/.docker/config.json`, its
//! credential helpers) or REGISTRY_AUTH_FILE: never on a command line, never printed.

use anyhow::{Context, Result};
use camino::Utf8Path;

use crate::{
    cmd,
    infra::{ctx::Ctx, fsx, process::ProcessError},
    pipeline::sbom,
};

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
        .map_err(|e| explain(e, registry, destination))
}

/// The registry's own digest of `reference` (the sha256 of the manifest it serves).
pub fn remote_digest(ctx: &Ctx, reference: &str, registry: &str) -> Result<String> {
    let tls = format!("--tls-verify={}", !plain_http(registry));
    let auth = auth_file_args("--authfile");
    let target = format!("docker://{reference}");
    let raw = ctx
        .start(cmd!("skopeo inspect --raw {tls} {auth...} {target}").as_query())
        .and_then(|query| query.wait())
        .map_err(|e| explain(e, registry, reference))?;
    Ok(format!("sha256:{}", fsx::sha256_hex(&raw)))
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
    .map_err(|e| explain(e, registry, subject))
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
        .map_err(|e| explain(e, registry, subject))
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

/// Says which of the usual refusals it is, and that a re-run completes a push stopped partway.
fn explain(e: anyhow::Error, registry: &str, what: &str) -> anyhow::Error {
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
    anyhow::anyhow!(
        "{why} ({what}).\nWhat was uploaded before the failure stays in the registry, untagged; running the \
         same command again completes it with the same digests.\n{}",
        text.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
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
