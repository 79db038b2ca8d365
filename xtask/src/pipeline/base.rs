//! Base images. Users who can pull get the official ones; where no registry answers (or with
//! `--offline`), the builder base is made locally: `mmdebstrap` streams a minimal Debian with
//! Debian's Go (the same package as the host's) as a tarball straight into `docker import`. No
//! directory (so no path it could trip on), no root (`--mode=unshare` for ordinary users), any
//! engine (the stream goes through the CLI), and with a fixed SOURCE_DATE_EPOCH the same layer
//! from every run.

use std::fs;

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;

use crate::{
    domain::Digest,
    infra::{
        ctx::Ctx,
        docker::{self, Engine},
        fsx,
        process::Cmd,
        tools,
    },
    project::{self, Paths},
};

/// A builder base image the engine has.
#[derive(Debug, Clone)]
pub struct Base {
    /// As the user or the project names it.
    pub image: String,
    pub id: String,
}

/// The builder base image to use: `requested`, else the official default when the engine has it,
/// else the local one when the engine has it (one query for both), else the official one pulled,
/// else the local one made now. The local one is announced.
pub fn builder_base(ctx: &Ctx, engine: &Engine, requested: Option<&str>) -> Result<Base> {
    let present = match requested {
        Some(_) => docker::ImageList::default(), // the engine is asked for that one below
        None => docker::ImageList::of(ctx, engine, &candidates())?,
    };
    builder_base_among(ctx, requested, &present)
}

/// The builder bases asked for when none is requested: the official one, then the local one.
pub fn candidates() -> [&'static str; 2] {
    [project::DEFAULT_BUILDER_IMAGE, project::LOCAL_BUILDER_IMAGE]
}

/// `builder_base`, where `present` lists the engine's images (at least the `candidates`).
pub fn builder_base_among(
    ctx: &Ctx,
    requested: Option<&str>,
    present: &docker::ImageList,
) -> Result<Base> {
    let base = |image: &str, id: String| Base {
        image: image.to_string(),
        id,
    };
    let pulled = |image: &str| {
        docker::try_pull(ctx, image)
            .then(|| docker::image_id(ctx, image))
            .flatten()
    };
    if let Some(image) = requested {
        // Not listed (or not as `docker images` shows it: an ID, a digest): the engine is asked.
        let id = present
            .id_of(image)
            .or_else(|| docker::image_id(ctx, image));
        if let Some(id) = id.or_else(|| pulled(image)) {
            return Ok(base(image, id));
        }
        bail!(
            "the builder image {image} is neither in the engine nor pullable: build the local one with \
             `cargo xtask base-images` and pass --builder-image {}",
            project::LOCAL_BUILDER_IMAGE
        );
    }
    let (official, local) = (project::DEFAULT_BUILDER_IMAGE, project::LOCAL_BUILDER_IMAGE);
    match [official, local].map(|r| present.id_of(r)) {
        [Some(id), _] => return Ok(base(official, id)),
        [None, Some(id)] => {
            ctx.announce(format!(
                "using the local builder base {local}: the engine has no {official} (`docker pull \
                 {official}` to use that; `cargo xtask clean --all` removes the local one)"
            ));
            return Ok(base(local, id));
        }
        _ => {}
    }
    if let Some(id) = pulled(official) {
        return Ok(base(official, id));
    }
    let why = if ctx.offline {
        "--offline"
    } else {
        "no registry answers"
    };
    ctx.announce(format!(
        "{why}: using the local builder base {local} instead of {official}"
    ));
    ensure_local(ctx, None)?;
    let id = docker::image_id(ctx, local).with_context(|| format!("the engine has no {local}"))?;
    Ok(base(local, id))
}

/// The runtime base: `scratch` (needs nothing) or an image the engine has or can pull.
pub fn runtime_base(ctx: &Ctx, requested: Option<&str>) -> Result<String> {
    let image = requested.unwrap_or(project::DEFAULT_RUNTIME_IMAGE);
    if image == "scratch" || available(ctx, image) {
        Ok(image.to_string())
    } else {
        bail!("the runtime image {image} is neither in the engine nor pullable (`--runtime-image scratch` needs nothing)")
    }
}

fn available(ctx: &Ctx, image: &str) -> bool {
    docker::image_id(ctx, image).is_some() || docker::try_pull(ctx, image)
}

/// Makes the local builder base if the engine lacks it; returns its layer digest.
pub fn ensure_local(ctx: &Ctx, mirror: Option<&str>) -> Result<Option<String>> {
    let image = project::LOCAL_BUILDER_IMAGE;
    if docker::image_id(ctx, image).is_some() {
        ctx.announce(format!(
            "{image} is there (`cargo xtask clean --all` removes it)"
        ));
        return Ok(layer(ctx, image));
    }
    tools::require(ctx, &[tools::MMDEBSTRAP, tools::UIDMAP])?;
    let mirror = mirror.unwrap_or(project::DEBIAN_MIRROR);
    let (suite, extra) = (project::BASE_SUITE, project::BASE_EXTRA_SUITE);
    ctx.step(&format!("base image {image} (mmdebstrap {suite} + Go from {extra}, {mirror})"), || {
        let include = format!("--include={},ca-certificates", project::GO_PACKAGE);
        let sources = [format!("deb {mirror} {suite} main"), format!("deb {mirror} {extra} main")];
        let mut args: Vec<String> = vec!["--variant=minbase".into(), "--quiet".into(), include];
        // Docs, manuals and translations are of no use in a builder; apt's lists go by default.
        for path in ["doc", "man", "info", "locale"] {
            args.push(format!("--dpkgopt=path-exclude=/usr/share/{path}/*"));
        }
        args.push("--customize-hook=mkdir -p \"$1/go/src\"".into());
        args.extend([suite.to_string(), "-".to_string()]);
        args.extend(sources);
        let path_env = format!(
            "ENV PATH={}:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            Utf8PathBuf::from(project::GO_BIN).parent().map(|p| p.to_string()).unwrap_or_default()
        );
        let changes = [
            "ENV GOPATH=/go".to_string(),
            path_env,
            format!("LABEL {}={}", project::LABEL_BASE, project::TOOL),
        ];
        let mut import: Vec<String> = vec!["import".into()];
        for change in &changes {
            import.extend(["--change".to_string(), change.clone()]);
        }
        import.extend(["-".to_string(), image.to_string()]);
        let epoch = project::BASE_EPOCH.to_string();
        let pipeline = Cmd::new("mmdebstrap")
            .args(&args)
            .env("SOURCE_DATE_EPOCH", epoch)
            .pipe(Cmd::new("docker").args(&import))
            .quiet();
        ctx.run(pipeline)
            .context("mmdebstrap needs Debian's mirror (and, as an ordinary user, subuids in /etc/subuid)")
    })?;
    Ok(layer(ctx, image))
}

/// The image's (single) layer digest, as the summary shows it.
pub fn layer(ctx: &Ctx, image: &str) -> Option<String> {
    docker::inspect(ctx, image, "{{join .RootFS.Layers \" \"}}")
}

/// IDs of the base images we made.
pub fn ours(ctx: &Ctx) -> Result<Vec<String>> {
    docker::images(
        ctx,
        &[docker::label_filter(project::LABEL_BASE, project::TOOL)],
    )
}

/// What we take from a builder base: its Go's version and its CA bundle.
#[derive(Debug, Clone)]
pub struct BaseFiles {
    pub go_version: String,
    pub ca_bundle: Utf8PathBuf,
    /// The Debian version of the `ca-certificates` package the bundle came from.
    pub ca_version: String,
    /// The base image's size, as the engine counts it.
    pub size: u64,
}

/// Reads (once per image ID, cached in target/) the builder base's Go version, CA bundle and the
/// version of the Debian package it came from.
pub fn base_files(ctx: &Ctx, paths: &Paths, checkout: &str, base: &Base) -> Result<BaseFiles> {
    let (image, id) = (&base.image, &base.id);
    let dir = paths.base_files().join(Digest::hex_of(id));
    let files = BaseFiles {
        go_version: String::new(),
        ca_bundle: dir.join("ca-certificates.crt"),
        ca_version: String::new(),
        size: 0,
    };
    let read = |name: &str| fs::read_to_string(dir.join(name)).map(|s| s.trim().to_string());
    if let (Ok(go_version), Ok(ca_version), Some(size), true) = (
        read("go-version"),
        read("ca-version"),
        read("size").ok().and_then(|s| s.parse().ok()),
        files.ca_bundle.is_file(),
    ) {
        return Ok(BaseFiles {
            go_version,
            ca_version,
            size,
            ..files
        });
    }
    ctx.step(
        &format!("read Go's version and the CA bundle from {image}"),
        || {
            let go = ["go", "version"];
            let base = format!("{}-base", project::TOOL);
            let container = docker::TempContainer::create(ctx, checkout, image, &base, &[], &go)?;
            let name = &container.name;
            let out = docker::start_attached(ctx, name)?;
            let go_version = out
                .split_whitespace()
                .nth(2)
                .unwrap_or_default()
                .to_string();
            let tmp = fsx::scratch_beside(&dir)?;
            let staged = tmp.path().to_path_buf();
            let bundle = format!("/{}", project::CA_BUNDLE);
            docker::copy_out(ctx, name, &bundle, &staged.join("ca-certificates.crt"))?;
            let status = "/var/lib/dpkg/status";
            docker::copy_out(ctx, name, status, &staged.join("dpkg-status"))?;
            let size = docker::inspect(ctx, id, "{{.Size}}").unwrap_or_default();
            let ca_version = ctx
                .change(format!("keep them in {dir}"), || {
                    let status = fs::read_to_string(staged.join("dpkg-status")).unwrap_or_default();
                    let ca_version = package_version(&status, "ca-certificates")
                        .unwrap_or_else(|| "unknown".into());
                    fs::write(staged.join("go-version"), &go_version)?;
                    fs::write(staged.join("ca-version"), &ca_version)?;
                    fs::write(staged.join("size"), &size)?;
                    fs::remove_file(staged.join("dpkg-status"))?;
                    fsx::replace_dir(&staged, &dir)?;
                    tmp.keep();
                    Ok(ca_version)
                })?
                .unwrap_or_default();
            Ok(BaseFiles {
                go_version,
                ca_version,
                size: size.parse().unwrap_or(0),
                ..files.clone()
            })
        },
    )
}

/// A package's version in a dpkg status file.
fn package_version(status: &str, package: &str) -> Option<String> {
    status.split("\n\n").find_map(|stanza| {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::trim)
        };
        (field("Package:") == Some(package))
            .then(|| field("Version:").map(str::to_string))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn dpkg_status() {
        let status = "Package: bash\nVersion: 5.2\n\nPackage: ca-certificates\nStatus: install ok installed\nVersion: 20230311\n";
        assert_eq!(
            super::package_version(status, "ca-certificates").as_deref(),
            Some("20230311")
        );
        assert_eq!(super::package_version(status, "curl"), None);
    }
}
