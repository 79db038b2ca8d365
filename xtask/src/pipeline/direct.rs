//! `--strategy direct`: the xtask writes the runtime image itself, as ko and Jib do, and the
//! engine only loads it. One layer, a tar with entries in a fixed order, owner 0:0, fixed modes and
//! the commit's time as every mtime; a config whose every value comes from the commit. The same
//! commit, flags and base give the same image ID on every machine and engine: its ID is the
//! sha256 of the config, which names the layer's sha256.
//!
//! Written as a docker-archive (`docker load`, also on a remote engine: it is streamed) and as an
//! OCI image layout in target/ (what a registry push takes).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use jzon::{array, object, JsonValue};

use crate::{
    flags::Platform,
    infra::{
        ctx::{Ctx, Running},
        fsx,
    },
    pipeline::meta::Meta,
    project,
};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// The PATH the Dockerfile builders give every image (Docker's default).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What goes into the runtime layer.
pub struct Content<'a> {
    pub binary: &'a [u8],
    pub ca_bundle: &'a [u8],
}

/// An image, assembled: every blob and its digest.
#[derive(Debug, Clone)]
pub struct Image {
    pub layer: Vec<u8>,
    /// `sha256:…` of the (uncompressed) layer: its diff ID and its OCI digest.
    pub layer_digest: String,
    pub config: Vec<u8>,
    /// `sha256:…` of the config: the image ID.
    pub id: String,
    pub manifest: Vec<u8>,
    /// `sha256:…` of the OCI manifest: the registry digest.
    pub manifest_digest: String,
    pub platform: Platform,
    /// The files' bytes, as the engine counts an image's size.
    pub size: u64,
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", fsx::sha256_hex(bytes))
}

/// The layer's directory in a docker-archive (as `docker save` writes it; any name will do:
/// manifest.json points at the layer). It opens the archive, sent when the load starts: the
/// engine starts unpacking (a process of its own, which takes tens of milliseconds to start)
/// before the rest comes.
const ARCHIVE_LAYER_DIR: &str = "layer/";
const ARCHIVE_LAYER: &str = "layer/layer.tar";

impl Image {
    pub fn assemble(content: &Content<'_>, meta: &Meta, platform: Platform) -> Result<Image> {
        let (layer, size) = layer(content, meta.epoch)?;
        let layer_digest = digest(&layer);
        Ok(Image::around(layer, layer_digest, size, meta, platform))
    }

    /// `assemble` while writing the image's docker-archive, tagged `tag`, to `out`: the layer goes
    /// first and is hashed as it is written, so that the reader (`docker load`) works meanwhile.
    /// Once the image ID is known, `wanted(id)` decides: false stops before the config, and the
    /// archive, without its manifest, loads nothing. The image, and whether the archive is whole.
    pub fn assemble_streamed(
        content: &Content<'_>,
        meta: &Meta,
        platform: Platform,
        tag: &str,
        out: impl std::io::Write,
        wanted: impl FnOnce(&str) -> bool,
    ) -> Result<(Image, bool)> {
        let (layer, size) = layer(content, meta.epoch)?;
        let mut archive = tar::Builder::new(out);
        let mut hash = fsx::Sha256::default();
        let mut header = header(tar::EntryType::Regular, 0o644, layer.len() as u64, 0);
        let hashing = Hashing {
            bytes: &layer,
            hash: &mut hash,
        };
        archive
            .append_data(&mut header, ARCHIVE_LAYER, hashing)
            .context("writing the layer to docker load")?;
        let layer_digest = format!("sha256:{}", hash.hex());
        let image = Image::around(layer, layer_digest, size, meta, platform);
        if !wanted(&image.id) {
            return Ok((image, false));
        }
        image.append_config_and_manifest(&mut archive, tag)?;
        archive
            .into_inner()
            .and_then(|mut out| out.flush())
            .context("writing the archive to docker load")?;
        Ok((image, true))
    }

    /// The image around a layer: its config and manifest, and their digests.
    fn around(
        layer: Vec<u8>,
        layer_digest: String,
        size: u64,
        meta: &Meta,
        platform: Platform,
    ) -> Image {
        let config = config(meta, platform, &layer_digest).dump().into_bytes();
        let id = digest(&config);
        let manifest = object! {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": id.as_str(), "size": config.len() },
            "layers": [{ "mediaType": OCI_LAYER, "digest": layer_digest.as_str(), "size": layer.len() }],
        }
        .dump()
        .into_bytes();
        let manifest_digest = digest(&manifest);
        Image {
            layer,
            layer_digest,
            config,
            id,
            manifest,
            manifest_digest,
            platform,
            size,
        }
    }

    /// Writes a docker-archive (what `docker save` writes and `docker load` reads), tagged `tag`.
    fn write_docker_archive(&self, out: impl std::io::Write, tag: &str) -> Result<()> {
        let mut archive = tar::Builder::new(out);
        append_file(&mut archive, ARCHIVE_LAYER, &self.layer, 0o644, 0)?;
        self.append_config_and_manifest(&mut archive, tag)?;
        archive
            .into_inner()
            .and_then(|mut out| out.flush())
            .context("writing the archive to docker load")
    }

    /// The rest of a docker-archive, after its layer: the config and manifest.json.
    fn append_config_and_manifest(
        &self,
        archive: &mut tar::Builder<impl std::io::Write>,
        tag: &str,
    ) -> Result<()> {
        let config_name = format!("{}.json", self.id.trim_start_matches("sha256:"));
        let manifest = array![{
            "Config": config_name.as_str(),
            "RepoTags": [tag],
            "Layers": [ARCHIVE_LAYER],
        }]
        .dump();
        append_file(archive, &config_name, &self.config, 0o644, 0)?;
        append_file(archive, "manifest.json", manifest.as_bytes(), 0o644, 0)
    }

    /// This image's descriptor, as an index lists it.
    fn descriptor(&self) -> JsonValue {
        object! {
            "mediaType": OCI_MANIFEST,
            "digest": self.manifest_digest.as_str(),
            "size": self.manifest.len(),
            "platform": platform_json(self.platform),
        }
    }

    /// Writes an OCI image layout at `dir` (built aside, swapped in whole) holding `images` and,
    /// named `tag`: the one image, or an image index over all of them (returned: bytes, digest).
    pub fn write_layout(
        ctx: &Ctx,
        dir: &camino::Utf8Path,
        images: &[&Image],
        tag: &str,
    ) -> Result<Option<(Vec<u8>, String)>> {
        let index = match images {
            [_] => None,
            _ => {
                let manifests: Vec<JsonValue> = images.iter().map(|i| i.descriptor()).collect();
                let bytes =
                    object! { "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }
                        .dump()
                        .into_bytes();
                let digest = digest(&bytes);
                Some((bytes, digest))
            }
        };
        ctx.change(format!("write the OCI image layout {dir}"), || {
            let tmp = fsx::scratch_beside(dir)?;
            let root = tmp.path();
            let blobs = root.join("blobs/sha256");
            std::fs::create_dir_all(&blobs)?;
            let write = |d: &str, bytes: &[u8]| {
                std::fs::write(blobs.join(d.trim_start_matches("sha256:")), bytes)
            };
            for image in images {
                write(&image.layer_digest, &image.layer)?;
                write(&image.id, &image.config)?;
                write(&image.manifest_digest, &image.manifest)?;
            }
            let mut top = match &index {
                Some((bytes, d)) => {
                    write(d, bytes)?;
                    object! { "mediaType": OCI_INDEX, "digest": d.as_str(), "size": bytes.len() }
                }
                None => images[0].descriptor(),
            };
            top["annotations"] = object! { "org.opencontainers.image.ref.name": tag };
            let layout_index =
                object! { "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top] };
            std::fs::write(root.join("index.json"), layout_index.pretty(2) + "\n")?;
            std::fs::write(
                root.join("oci-layout"),
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
            fsx::replace_dir(root, dir)?;
            tmp.keep();
            Ok(())
        })?;
        Ok(index)
    }
}

/// A `docker load` waiting for its docker-archive. Started ahead (while Go builds), the CLI, its
/// connection and the engine's receiving end are ready when the archive comes. Dropped without
/// an archive, it loads nothing.
pub struct Loading {
    /// Dropped first: the load reads the end of its input, then stops.
    archive: std::io::BufWriter<os_pipe::PipeWriter>,
    running: Running,
    tag: String,
}

impl Loading {
    pub fn start(ctx: &Ctx, tag: &str) -> Result<Loading> {
        let (reader, mut writer) = os_pipe::pipe().context("making a pipe to docker load")?;
        let shown = format!("docker load -q < (the docker-archive of {tag}, streamed once built)");
        let load = duct::cmd("docker", ["load", "-q"]).stdin_file(reader);
        let running = ctx.start_captured(&shown, load)?;
        // The archive's first entry, now. A load that failed to start fails the archive's writes.
        let mut opening = header(tar::EntryType::Directory, 0o755, 0, 0);
        if opening.set_path(ARCHIVE_LAYER_DIR).is_ok() {
            opening.set_cksum();
            let _ = std::io::Write::write_all(&mut writer, opening.as_bytes());
        }
        Ok(Loading {
            archive: std::io::BufWriter::with_capacity(1 << 16, writer),
            running,
            tag: tag.to_string(),
        })
    }

    /// Waits until the engine has loaded what was written.
    fn finish(self) -> Result<()> {
        let Loading {
            archive,
            running,
            tag,
        } = self;
        drop(archive);
        running
            .wait()
            .with_context(|| format!("loading {tag} into the engine"))
            .map(drop)
    }
}

/// Puts the image of `content` in the engine under `tag` (which names `tag_has` now) and returns
/// it: no load when the tag names it already, `docker tag` when the engine `has` it, else its
/// docker-archive streamed to `docker load`. With a `loading` started ahead, the layer goes to it
/// as it is hashed, and the archive stops before its config when the image turns out present (it
/// loads nothing); a load stopped halfway leaves no image. `meanwhile` (files to write) runs
/// while the engine works.
#[allow(clippy::too_many_arguments)]
pub fn assemble_and_load(
    ctx: &Ctx,
    content: &Content<'_>,
    meta: &Meta,
    platform: Platform,
    tag: &str,
    tag_has: Option<&str>,
    has: impl Fn(&str) -> bool,
    loading: Option<Loading>,
    meanwhile: impl FnOnce(&Image) -> Result<()>,
) -> Result<Image> {
    let image = match loading {
        Some(mut loading) => {
            let wanted = |id: &str| tag_has != Some(id) && !has(id);
            let (image, whole) = Image::assemble_streamed(
                content,
                meta,
                platform,
                tag,
                &mut loading.archive,
                wanted,
            )?;
            if whole {
                meanwhile(&image)?;
                loading.finish()?;
                return Ok(image);
            }
            drop(loading); // stopped before the config: nothing loads
            image
        }
        None => Image::assemble(content, meta, platform)?,
    };
    let id = image.id.as_str();
    if tag_has == Some(id) {
        ctx.announce(format!("{tag} is {id} already: load skipped"));
    } else if has(id) {
        ctx.announce(format!("the engine has {id} already: load skipped"));
        let sh = &ctx.sh;
        ctx.run_quiet(xshell::cmd!(sh, "docker tag {id} {tag}"))?;
    } else {
        let mut loading = Loading::start(ctx, tag)?;
        image.write_docker_archive(&mut loading.archive, tag)?;
        meanwhile(&image)?;
        loading.finish()?;
        return Ok(image);
    }
    meanwhile(&image)?;
    Ok(image)
}

/// Hands out `bytes`, hashing what it hands out.
struct Hashing<'a> {
    bytes: &'a [u8],
    hash: &'a mut fsx::Sha256,
}

impl std::io::Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.bytes.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A runtime file: path, mode, content (None: a directory).
pub type RuntimeFile<'a> = (&'static str, u32, Option<std::borrow::Cow<'a, [u8]>>);

/// The runtime files, as every strategy ships them (the tests compare `docker export` listings).
pub fn runtime_files<'a>(content: &Content<'a>) -> Vec<RuntimeFile<'a>> {
    use std::borrow::Cow;
    let line = |s: String| Some(Cow::Owned((s + "\n").into_bytes()));
    vec![
        ("etc/", 0o755, None),
        ("etc/group", 0o444, line(project::group())),
        ("etc/passwd", 0o444, line(project::passwd())),
        ("etc/ssl/", 0o755, None),
        ("etc/ssl/certs/", 0o755, None),
        (
            project::CA_BUNDLE,
            0o444,
            Some(Cow::Borrowed(content.ca_bundle)),
        ),
        (project::BINARY, 0o555, Some(Cow::Borrowed(content.binary))),
    ]
}

/// The layer: a tar with entries in a fixed order, owner 0:0, `epoch` as every mtime.
/// The layer, and the size of its files.
fn layer(content: &Content<'_>, epoch: u64) -> Result<(Vec<u8>, u64)> {
    let files = runtime_files(content);
    // Allocated once: a header and the content padded to 512 bytes an entry, two blocks at the end.
    let capacity = files
        .iter()
        .map(|(_, _, bytes)| 512 + bytes.as_ref().map_or(0, |b| b.len().div_ceil(512) * 512))
        .sum::<usize>()
        + 1024;
    let mut tar = tar::Builder::new(Vec::with_capacity(capacity));
    let mut size = 0;
    for (path, mode, bytes) in files {
        match bytes {
            Some(bytes) => {
                size += bytes.len() as u64;
                append_file(&mut tar, path, &bytes, mode, epoch)?
            }
            None => {
                let mut header = header(tar::EntryType::Directory, mode, 0, epoch);
                tar.append_data(&mut header, path, std::io::empty())?;
            }
        }
    }
    Ok((tar.into_inner()?, size))
}

fn header(kind: tar::EntryType, mode: u32, size: u64, epoch: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(size);
    header.set_mtime(epoch);
    header
}

fn append_file(
    tar: &mut tar::Builder<impl std::io::Write>,
    path: &str,
    bytes: &[u8],
    mode: u32,
    epoch: u64,
) -> Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, bytes.len() as u64, epoch);
    tar.append_data(&mut header, path, bytes)
        .with_context(|| format!("adding {path} to the archive"))
}

fn platform_json(platform: Platform) -> JsonValue {
    let mut p = object! { "architecture": platform.arch, "os": "linux" };
    if let Some(v) = platform.variant {
        p["variant"] = v.into();
    }
    p
}

/// The image config: the same user, port, entrypoint, health check and labels as the Dockerfile
/// strategies; every time is the commit's.
fn config(meta: &Meta, platform: Platform, layer_digest: &str) -> JsonValue {
    let labels: BTreeMap<&str, String> =
        meta.labels(project::STAGE_PRODUCTION).into_iter().collect();
    let seconds = |s: u64| s * 1_000_000_000;
    let mut config = platform_json(platform);
    config["created"] = meta.created().into();
    config["config"] = object! {
        "User": format!("{0}:{0}", project::APP_UID),
        "ExposedPorts": { [&format!("{}/tcp", project::APP_PORT)]: {} },
        "Env": [DEFAULT_PATH],
        "Entrypoint": [format!("/{}", project::BINARY)],
        "WorkingDir": "/",
        "Labels": labels,
        "Healthcheck": {
            "Test": ["CMD", format!("/{}", project::BINARY), project::HEALTHCHECK_FLAG],
            "Interval": seconds(project::HEALTHCHECK_INTERVAL_S),
            "Timeout": seconds(project::HEALTHCHECK_TIMEOUT_S),
            "Retries": project::HEALTHCHECK_RETRIES,
        },
    };
    config["rootfs"] = object! { "type": "layers", "diff_ids": [layer_digest] };
    config["history"] = array![{
        "created": meta.created(),
        "created_by": "cargo xtask image --strategy direct",
    }];
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            version: "v1".into(),
            revision: "abc".into(),
            epoch: 1_735_689_600,
            source: String::new(),
            go: "go1.27.4".into(),
            builder_base: project::LOCAL_BUILDER_IMAGE.into(),
        }
    }

    #[test]
    fn same_inputs_same_image_and_every_input_counts() {
        let content = Content {
            binary: b"\x7fELF binary",
            ca_bundle: b"certs",
        };
        let a = Image::assemble(&content, &meta(), Platform::host()).unwrap();
        let b = Image::assemble(&content, &meta(), Platform::host()).unwrap();
        assert_eq!(
            (a.id.clone(), a.layer.clone()),
            (b.id.clone(), b.layer.clone())
        );
        let other = Content {
            binary: b"\x7fELF binarY",
            ..content
        };
        assert_ne!(
            Image::assemble(&other, &meta(), Platform::host())
                .unwrap()
                .id,
            a.id
        );
        let later = Meta {
            epoch: 1_735_689_601,
            ..meta()
        };
        assert_ne!(
            Image::assemble(&content, &later, Platform::host())
                .unwrap()
                .id,
            a.id
        );
    }

    #[test]
    fn the_layer_holds_exactly_the_runtime_files_as_root() {
        let content = Content {
            binary: b"bin",
            ca_bundle: b"certs",
        };
        let image = Image::assemble(&content, &meta(), Platform::host()).unwrap();
        let mut archive = tar::Archive::new(image.layer.as_slice());
        let entries: Vec<(String, u32, u64, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/group",
                "etc/passwd",
                "etc/ssl/",
                "etc/ssl/certs/",
                "etc/ssl/certs/ca-certificates.crt",
                "main"
            ]
        );
        assert!(entries
            .iter()
            .all(|e| e.2 == 0 && e.3 == 0 && e.4 == 1_735_689_600));
        assert_eq!(entries.last().unwrap().1, 0o555);
        let config = jzon::parse(std::str::from_utf8(&image.config).unwrap()).unwrap();
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["created"], "2025-01-01T00:00:00Z");
        assert_eq!(config["rootfs"]["diff_ids"][0], image.layer_digest.as_str());
        assert_eq!(config["config"]["Labels"][project::OCI_REVISION], "abc");
    }
}
