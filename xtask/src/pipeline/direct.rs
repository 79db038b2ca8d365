//! `--strategy direct`: the xtask writes the runtime image itself, as ko and Jib do, and the
//! engine only loads it. One layer, a tar with entries in a fixed order, owner 0:0, fixed modes and
//! the commit's time as every mtime; a config whose every value comes from the commit. The same
//! commit, flags and base give the same image ID on every machine and engine: its ID is the
//! sha256 of the config, which names the layer's sha256.
//!
//! Handed to the engine through the docker CLI, streamed (so also to a remote engine): the layer
//! to `docker import`, then a docker-archive of the config and manifest to `docker load` (or the
//! whole docker-archive, where the engine cannot take the layer by reference); and written as an
//! OCI image layout in target/ (what a registry push takes).

use std::{collections::BTreeMap, io::Write};

use anyhow::{bail, Context, Result};
use jzon::{array, object, JsonValue};

use crate::{
    flags::Platform,
    infra::{
        ctx::{Ctx, Running},
        docker, fsx, signals,
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

/// How many of the layer's bytes go to `docker import` ahead, while Go builds: part of the first
/// entry's header (the `etc/` directory, the same whatever the content), enough for the engine to
/// start its unpacking process, and no whole entry.
const AHEAD: usize = 100;
/// The layer's last bytes (the binary's last block and the archive's end) go to the import once
/// the image is wanted: until then the stream stops inside an entry, and an end there (a stop, a
/// crash) fails the import, of which the engine keeps nothing.
const HELD_BACK: usize = 512 + 1024;

type Pipe = std::io::BufWriter<os_pipe::PipeWriter>;

/// The engine's side of `direct`, started while Go builds. Docker unpacks what it is sent in a
/// process of its own (dockerd run again: tens of milliseconds to start), one per archive it
/// unpacks; started ahead, they are ready when the binary is.
/// - By reference: `docker import` takes the layer, then `docker load` a docker-archive of the
///   config and manifest alone: the engine has the layer by then (by its diff ID), unpacked once.
///   The import's own image (the carrier) goes after the load.
/// - Whole: `docker load` takes the whole archive: the engine unpacks the archive, then the
///   layer, whose process starts only once the whole archive is in.
///
/// Dropped before its end, it loads nothing, and the engine keeps nothing.
pub struct Loading {
    /// The docker-archive, its first entry sent. Dropped unfinished, it ends without
    /// manifest.json: nothing loads.
    load: Feed<tar::Builder<Pipe>>,
    /// By reference: the layer's import, and the bytes it was sent ahead.
    import: Option<(Feed<Pipe>, Vec<u8>)>,
    tag: String,
}

/// A docker CLI reading what we write.
struct Feed<W> {
    /// Dropped first: the CLI reads the end of its input, then stops.
    input: W,
    running: Running,
}

impl Feed<Pipe> {
    /// Starts `docker ARGS` reading a pipe, and sends it `first`.
    fn start(ctx: &Ctx, shown: &str, args: &[&str], first: &[u8]) -> Result<Feed<Pipe>> {
        let (reader, mut writer) = os_pipe::pipe().context("making a pipe to the docker CLI")?;
        let running = ctx.start_fed(shown, duct::cmd("docker", args).stdin_file(reader))?;
        // A CLI that failed to start fails the later writes, and says why when waited for.
        let _ = writer.write_all(first);
        Ok(Feed {
            input: std::io::BufWriter::with_capacity(1 << 16, writer),
            running,
        })
    }

    /// Ends the input: the CLI finishes (`wait_text` for its output).
    fn end(self) -> Running {
        let Feed { input, running } = self;
        // A failed write is the CLI's failure: its own error says more.
        drop(input.into_inner());
        running
    }
}

impl Feed<tar::Builder<Pipe>> {
    /// Ends the archive, then waits for `docker load`.
    fn finish(self, tag: &str) -> Result<()> {
        let Feed { input, running } = self;
        let ended = input.into_inner().and_then(|mut pipe| pipe.flush());
        let loaded = running
            .wait()
            .with_context(|| format!("loading {tag} into the engine"));
        // The CLI's own error says more than a failed write.
        loaded?;
        ended
            .context("writing the archive to docker load")
            .map(drop)
    }
}

impl Loading {
    /// The load of `tag` (whole), or by reference: the import of the layer of a commit whose
    /// time is `epoch`, and the load.
    pub fn start(ctx: &Ctx, tag: &str, epoch: u64, by_reference: bool) -> Result<Loading> {
        let import = if by_reference {
            let ahead = opening(epoch)?;
            let label = format!("LABEL {}={}", project::LABEL_PROJECT, project::APP);
            let shown = format!("docker import --change '{label}' - < (the layer of {tag})");
            let args = ["import", "--change", &label, "-"];
            Some((Feed::start(ctx, &shown, &args, &ahead)?, ahead))
        } else {
            None
        };
        Ok(Loading {
            import,
            ..Loading::whole(ctx, tag)?
        })
    }

    /// The load of `tag`'s whole archive.
    fn whole(ctx: &Ctx, tag: &str) -> Result<Loading> {
        let shown = format!("docker load -q < (the docker-archive of {tag}, once built)");
        let feed = Feed::start(ctx, &shown, &["load", "-q"], &[])?;
        // The archive's first entry now: the layer's directory, as `docker save` writes it.
        let mut archive = tar::Builder::new(feed.input);
        let mut dir = header(tar::EntryType::Directory, 0o755, 0, 0);
        let _ = archive
            .append_data(&mut dir, ARCHIVE_LAYER_DIR, std::io::empty())
            .and_then(|()| archive.get_mut().flush());
        Ok(Loading {
            load: Feed {
                input: archive,
                running: feed.running,
            },
            import: None,
            tag: tag.to_string(),
        })
    }

    /// Sends the layer, hashing it as it goes (the engine works meanwhile). Once the image ID is
    /// known, `wanted(id)` decides: the rest is sent (the load to finish is returned with the
    /// image), or nothing more and nothing loads.
    fn send(
        mut self,
        layer: Vec<u8>,
        size: u64,
        meta: &Meta,
        platform: Platform,
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<(Image, Option<Loading>)> {
        let mut hash = fsx::Sha256::default();
        let held = match &mut self.import {
            Some((import, ahead)) => {
                if !layer.starts_with(ahead) || layer.len() < ahead.len() + HELD_BACK {
                    bail!("the layer does not begin as its import was told");
                }
                hash.update(ahead);
                let rest = &layer[ahead.len()..layer.len() - HELD_BACK];
                let mut hashing = Hashing {
                    bytes: rest,
                    hash: &mut hash,
                };
                std::io::copy(&mut hashing, &mut import.input)
                    .and_then(|_| import.input.flush())
                    .context("sending the layer to docker import")?;
                hash.update(&layer[layer.len() - HELD_BACK..]);
                HELD_BACK
            }
            None => {
                let mut header = header(tar::EntryType::Regular, 0o644, layer.len() as u64, 0);
                let hashing = Hashing {
                    bytes: &layer,
                    hash: &mut hash,
                };
                self.load
                    .input
                    .append_data(&mut header, ARCHIVE_LAYER, hashing)
                    .context("writing the layer to docker load")?;
                0
            }
        };
        let layer_digest = format!("sha256:{}", hash.hex());
        let image = Image::around(layer, layer_digest, size, meta, platform);
        if !wanted(&image.id) {
            return Ok((image, None));
        }
        if let Some((import, _)) = &mut self.import {
            // The last bytes make the import whole: not after a signal.
            if let Some(signal) = signals::received() {
                bail!(
                    "stopped by {} before the end of the import",
                    signals::name(signal)
                );
            }
            let held = &image.layer[image.layer.len() - held..];
            import
                .input
                .write_all(held)
                .context("sending the layer to docker import")?;
        }
        Ok((image, Some(self)))
    }

    /// Ends the import (by reference) and the load; `meanwhile` runs while the engine works.
    /// By reference: the import's image (the carrier), its removal started. An engine that does
    /// not take the layer by reference gets the whole archive, and is remembered as one that
    /// does not.
    fn finish(
        self,
        ctx: &Ctx,
        image: &Image,
        meanwhile: impl FnOnce(&Image) -> Result<()>,
    ) -> Result<Option<(String, Running)>> {
        let Loading {
            mut load,
            import,
            tag,
        } = self;
        let Some((import, _)) = import else {
            image.append_config_and_manifest(&mut load.input, &tag)?;
            meanwhile(image)?;
            load.finish(&tag)?;
            return Ok(None);
        };
        // The engine unpacks the layer while the files are written.
        let importing = import.end();
        let wrote = meanwhile(image);
        // With its input whole, the import makes an image, the carrier: waited for whatever
        // else failed or came meanwhile, so that it goes.
        let carrier = importing
            .wait_text()
            .context("importing the layer")
            .map(|id| Carrier { ctx, id });
        wrote?;
        let by_reference = carrier.and_then(|carrier| {
            ctx.check_signal("the load")?;
            image.append_config_and_manifest(&mut load.input, &tag)?;
            load.finish(&tag)?;
            carrier.remove()
        });
        match by_reference {
            Ok(carrier) => Ok(Some(carrier)),
            Err(e) if signals::received().is_none() => {
                ctx.announce(format!(
                    "the engine did not load {tag} by reference ({e:#}): loading it whole, as from \
                     now on for this engine (remembered in {})",
                    ctx.paths.whole_loads()
                ));
                load_whole(ctx, image, &tag, |_| Ok(()))?;
                remember_whole_loads(ctx)?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// The import's image: its layer is all `direct` needs of it. Removed when dropped (a failed load,
/// a signal), or by `remove` in the background.
struct Carrier<'a> {
    ctx: &'a Ctx,
    id: String,
}

impl Carrier<'_> {
    /// Starts the removal: the ID, and the removal under way.
    fn remove(mut self) -> Result<(String, Running)> {
        let id = std::mem::take(&mut self.id); // nothing left for `drop`
        let sh = &self.ctx.sh;
        let removal = self
            .ctx
            .start_cleanup(xshell::cmd!(sh, "docker image rm {id}"))?;
        Ok((id, removal))
    }
}

impl Drop for Carrier<'_> {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            let _ = docker::remove_image(self.ctx, &self.id);
        }
    }
}

/// The layer's first bytes, whatever the content: its first entry is a directory.
fn opening(epoch: u64) -> Result<Vec<u8>> {
    let empty = Content {
        binary: b"",
        ca_bundle: b"",
    };
    let (mut layer, _) = layer(&empty, epoch)?;
    layer.truncate(AHEAD);
    Ok(layer)
}

/// An image in the engine, as `assemble_and_load` left it.
pub struct Loaded {
    pub image: Image,
    /// The import's image, being removed: `finish` waits for it.
    carrier: Option<(String, Running)>,
}

impl Loaded {
    /// The import's image, until `finish`.
    pub fn carrier(&self) -> Option<&str> {
        self.carrier.as_ref().map(|(id, _)| id.as_str())
    }

    /// Waits until the import's image is gone (a failure is a warning: `clean` finds it).
    pub fn finish(self, ctx: &Ctx) -> Image {
        if let Some((id, removal)) = self.carrier {
            if let Err(e) = removal.wait() {
                ctx.warn(format!("the import's image {id} stays: {e:#}"));
            }
        }
        self.image
    }
}

/// Puts the image of `content` in the engine under `tag` (which names `tag_has` now) and returns
/// it: no load when the tag names it already, `docker tag` when the engine `has` it, else loaded:
/// through `loading`, started ahead, or a whole archive now. `meanwhile` (files to write) runs
/// while the engine works. An engine that does not take the layer by reference gets the whole
/// archive, and is remembered as one that does not.
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
) -> Result<Loaded> {
    if content.binary.is_empty() {
        bail!("{} is empty", project::BINARY); // and the layer would end where it should not
    }
    let wanted = |id: &str| tag_has != Some(id) && !has(id);
    let image = match loading {
        Some(loading) => {
            let (layer, size) = layer(content, meta.epoch)?;
            match loading.send(layer, size, meta, platform, &wanted)? {
                (image, Some(loading)) => {
                    let carrier = loading.finish(ctx, &image, meanwhile)?;
                    return Ok(Loaded { image, carrier });
                }
                (image, None) => image, // nothing loads
            }
        }
        None => Image::assemble(content, meta, platform)?,
    };
    let id = image.id.as_str();
    if tag_has == Some(id) {
        ctx.announce(format!("{tag} is {id} already: load skipped"));
        meanwhile(&image)?;
    } else if has(id) {
        ctx.announce(format!("the engine has {id} already: load skipped"));
        let sh = &ctx.sh;
        ctx.run_quiet(xshell::cmd!(sh, "docker tag {id} {tag}"))?;
        meanwhile(&image)?;
    } else {
        load_whole(ctx, &image, tag, meanwhile)?;
    }
    Ok(Loaded {
        image,
        carrier: None,
    })
}

/// Sends the whole docker-archive of `image` to a new `docker load` (`meanwhile` runs while the
/// engine loads), and waits for it.
fn load_whole(
    ctx: &Ctx,
    image: &Image,
    tag: &str,
    meanwhile: impl FnOnce(&Image) -> Result<()>,
) -> Result<()> {
    let Loading { mut load, .. } = Loading::whole(ctx, tag)?;
    append_file(&mut load.input, ARCHIVE_LAYER, &image.layer, 0o644, 0)?;
    image.append_config_and_manifest(&mut load.input, tag)?;
    meanwhile(image)?;
    load.finish(tag)
}

/// Whether this engine takes `direct`'s images by reference (not known to refuse it).
pub fn by_reference(ctx: &Ctx) -> bool {
    let engine = docker::engine_key();
    std::fs::read_to_string(ctx.paths.whole_loads())
        .map_or(true, |known| !known.lines().any(|line| line == engine))
}

/// Remembers that this engine takes whole archives only.
fn remember_whole_loads(ctx: &Ctx) -> Result<()> {
    let path = ctx.paths.whole_loads();
    let mut known = std::fs::read_to_string(&path).unwrap_or_default();
    known += &(docker::engine_key() + "\n");
    ctx.change(format!("remember in {path}"), || {
        fsx::write_atomic(&path, known.as_bytes())
    })
    .map(drop)
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

    /// Reads every entry of `tar` whole: an error when it stops inside one.
    fn read_whole(tar: &[u8]) -> std::io::Result<usize> {
        let mut archive = tar::Archive::new(tar);
        let mut entries = 0;
        for entry in archive.entries()? {
            std::io::copy(&mut entry?, &mut std::io::sink())?;
            entries += 1;
        }
        Ok(entries)
    }

    #[test]
    fn what_the_import_gets_before_the_end_never_ends_an_entry() {
        let epoch = meta().epoch;
        let opening = opening(epoch).unwrap();
        assert!(read_whole(&opening).is_err());
        for size in [1, 511, 512, 513, 1536, 6_000_000] {
            let binary = vec![7u8; size];
            let content = Content {
                binary: &binary,
                ca_bundle: b"certs",
            };
            let (layer, _) = layer(&content, epoch).unwrap();
            assert!(layer.starts_with(&opening), "binary of {size} bytes");
            assert_eq!(read_whole(&layer).unwrap(), 7);
            let held = &layer[..layer.len() - HELD_BACK];
            assert!(read_whole(held).is_err(), "binary of {size} bytes");
        }
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
