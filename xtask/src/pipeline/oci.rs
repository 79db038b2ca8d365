//! The runtime image as bytes, computed from its inputs with no engine and no process: layer,
//! config, manifest, index and layout, as ko and Jib write them (`direct`, `verify` and `publish`
//! use it; `load` hands it to an engine). One layer, a tar with entries in a fixed order, owner 0:0, fixed modes and
//! the commit's time as every mtime; a config whose every value comes from the commit. The same
//! commit, flags and base give the same image ID on every machine and engine: its ID is the
//! sha256 of the config, which names the layer's sha256.
//!
//! Handed to the engine by one `docker load` of one archive that every engine reads: an OCI image
//! layout (what Docker's containerd image store loads: its image ID is then our manifest's digest)
//! with a docker-archive `manifest.json` naming the same blobs (what Docker's classic store and
//! Podman load: the ID is our config's digest). It carries no name: the caller tags the image once
//! it is wanted (`record`), so that a tag never moves to an image that failed its smoke test, and
//! the image the tag named before stays an image on every store. The one exception is the
//! containerd store's, where the caller may name it in the index (`rest_of_archive`). Also written
//! as an OCI image layout in target/ (what a registry push takes).

use std::{borrow::Cow, collections::BTreeMap, io::Read, sync::Arc};

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use jzon::{array, object, JsonValue};

use crate::{
    domain::{Digest, ImageRef, Platform},
    infra::docker::Store,
    pipeline::meta::Meta,
    project,
};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// The PATH the Dockerfile builders give every image (Docker's default).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What goes into the runtime layer.
pub struct Content<'a> {
    /// The app's binaries, by name (`App::binaries`), each at the image's root.
    pub binaries: Vec<(&'a str, Body<'a>)>,
    pub ca_bundle: &'a [u8],
    /// The app's extra files (`app::data_files`): their paths in the image and their content
    /// (None: a directory).
    pub files: Vec<(String, Option<Body<'a>>)>,
}

impl<'a> Content<'a> {
    /// The binaries (name, path) and the extra files (`app::data_files`), read as files.
    pub fn of_files(
        binaries: &'a [(String, camino::Utf8PathBuf)],
        ca_bundle: &'a [u8],
        files: &'a [DataFile],
    ) -> Content<'a> {
        Content {
            binaries: binaries
                .iter()
                .map(|(name, path)| (name.as_str(), Body::File(path)))
                .collect(),
            ca_bundle,
            files: files
                .iter()
                .map(|(path, from)| (path.clone(), from.as_deref().map(Body::File)))
                .collect(),
        }
    }
}

/// An extra file in the image: its path there, and the file it is read from (None: a directory).
pub type DataFile = (String, Option<camino::Utf8PathBuf>);

/// A file's content in the layer: bytes in hand, or a file read straight into the layer (the
/// binary: its megabytes copied once).
pub enum Body<'a> {
    Bytes(Cow<'a, [u8]>),
    File(&'a Utf8Path),
}

impl Body<'_> {
    fn len(&self) -> Result<u64> {
        Ok(match self {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File(path) => std::fs::metadata(path)
                .with_context(|| format!("reading {path}"))?
                .len(),
        })
    }
}

/// An image, assembled: every blob and its digest.
#[derive(Debug, Clone)]
pub struct Image {
    /// Shared with the thread that sends it to the engine.
    pub layer: Arc<Vec<u8>>,
    /// `sha256:…` of the (uncompressed) layer: its diff ID and its OCI digest.
    pub layer_digest: String,
    pub config: Vec<u8>,
    /// `sha256:…` of the config: the image ID on Docker's classic store and on Podman.
    pub id: String,
    pub manifest: Vec<u8>,
    /// `sha256:…` of the OCI manifest: the registry digest, and the image ID on Docker's
    /// containerd image store.
    pub manifest_digest: String,
    pub platform: Platform,
    /// The files' bytes, as the engine counts an image's size.
    pub size: u64,
}

fn digest(bytes: &[u8]) -> String {
    Digest::of(bytes).into_string()
}

impl Image {
    pub fn assemble(content: &Content<'_>, meta: &Meta, platform: Platform) -> Result<Image> {
        let (layer, size) = layer(content, meta.epoch)?;
        let layer = Arc::new(layer);
        let layer_digest = digest(&layer);
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
        Ok(Image {
            layer,
            layer_digest,
            config,
            id,
            manifest,
            manifest_digest,
            platform,
            size,
        })
    }

    /// What an engine with this store calls the image once loaded.
    pub fn engine_id(&self, store: Store) -> &str {
        if store.ids_by_manifest() {
            &self.manifest_digest
        } else {
            &self.id
        }
    }

    /// The archive `docker load` takes on every engine: `oci-layout`, the blobs and `index.json`
    /// (an OCI image layout), and a docker-archive `manifest.json` naming the same blobs. No name
    /// in either: the image loads untagged.
    pub fn archive(&self) -> Result<Vec<u8>> {
        let rest = self.rest_of_archive(None)?;
        Ok([
            opening()?,
            rest.before_layer,
            self.layer.to_vec(),
            rest.after_layer,
        ]
        .concat())
    }

    /// The archive after its opening entry (`opening`), to its end: the layer's own bytes go
    /// between the two parts, uncopied. `name`: the image's name for Docker's containerd store
    /// alone (its index entry's `io.containerd.image.name`; the other stores read
    /// `manifest.json`, which stays nameless).
    pub fn rest_of_archive(&self, name: Option<&ImageRef>) -> Result<RestOfArchive> {
        let blob = Digest::blob_path;
        let mut header = header(tar::EntryType::Regular, 0o644, self.layer.len() as u64, 0);
        header.set_path(blob(&self.layer_digest))?;
        header.set_cksum();
        let padding = self.layer.len().next_multiple_of(512) - self.layer.len();
        let mut entry = self.descriptor();
        if let Some(name) = name {
            entry["annotations"] = object! { "io.containerd.image.name": name.normalized() };
        }
        let index = object! { "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry] };
        let manifest = array![{
            "Config": blob(&self.id),
            "RepoTags": null,
            "Layers": [blob(&self.layer_digest)],
        }];
        let mut tar = tar::Builder::new(vec![0; padding]);
        for (path, bytes) in [
            (blob(&self.id), self.config.as_slice()),
            (blob(&self.manifest_digest), &self.manifest),
            ("index.json".into(), index.dump().as_bytes()),
            ("manifest.json".into(), manifest.dump().as_bytes()),
        ] {
            append_file(&mut tar, &path, bytes, 0o644, 0)?;
        }
        Ok(RestOfArchive {
            before_layer: header.as_bytes().to_vec(),
            after_layer: tar.into_inner()?,
        })
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

    /// The files of an OCI image layout holding `images` and, named `tag`, the one image or an
    /// image index over all of them (`index`: its bytes and digest).
    pub fn layout<'a>(images: &[&'a Image], tag: &str) -> Layout<'a> {
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
        let blob = Digest::blob_path;
        let mut files = Vec::new();
        for image in images {
            files.push((blob(&image.layer_digest), Cow::from(image.layer.as_slice())));
            files.push((blob(&image.id), Cow::from(&image.config)));
            files.push((blob(&image.manifest_digest), Cow::from(&image.manifest)));
        }
        let mut top = match &index {
            Some((bytes, d)) => {
                files.push((blob(d), Cow::Owned(bytes.clone())));
                object! { "mediaType": OCI_INDEX, "digest": d.as_str(), "size": bytes.len() }
            }
            None => images[0].descriptor(),
        };
        top["annotations"] = object! { "org.opencontainers.image.ref.name": tag };
        let layout_index =
            object! { "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top] };
        files.push((
            "index.json".into(),
            Cow::Owned((layout_index.pretty(2) + "\n").into_bytes()),
        ));
        files.push(("oci-layout".into(), Cow::from(OCI_LAYOUT.as_bytes())));
        Layout { files, index }
    }
}

/// An OCI image layout: its files (path, bytes), and the image index it holds when there are
/// several images.
pub struct Layout<'a> {
    pub files: Vec<(String, Cow<'a, [u8]>)>,
    pub index: Option<(Vec<u8>, String)>,
}

/// The archive after its opening entry: the layer's entry header, the layer (not copied here),
/// then the rest.
pub struct RestOfArchive {
    pub before_layer: Vec<u8>,
    pub after_layer: Vec<u8>,
}

/// The archive's opening entry, the same for every image: `oci-layout`, without the archive's
/// end.
pub fn opening() -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    append_file(&mut tar, "oci-layout", OCI_LAYOUT.as_bytes(), 0o644, 0)?;
    // The bytes so far: the builder would end the archive if asked for them by `into_inner`.
    Ok(tar.get_ref().clone())
}

/// A runtime file: path, mode, content (None: a directory).
pub type RuntimeFile<'a> = (Cow<'a, str>, u32, Option<Body<'a>>);

/// The runtime files, as every strategy ships them (the tests compare `docker export` listings).
pub fn runtime_files<'a>(content: &'a Content<'a>) -> Vec<RuntimeFile<'a>> {
    let line = |s: String| Some(Body::Bytes(Cow::Owned((s + "\n").into_bytes())));
    let borrow = |body: &'a Body<'a>| match body {
        Body::Bytes(bytes) => Body::Bytes(Cow::Borrowed(bytes)),
        Body::File(path) => Body::File(path),
    };
    let fixed: [(&'static str, u32, Option<Body<'a>>); 6] = [
        ("etc/", 0o755, None),
        ("etc/group", 0o444, line(project::group())),
        ("etc/passwd", 0o444, line(project::passwd())),
        ("etc/ssl/", 0o755, None),
        ("etc/ssl/certs/", 0o755, None),
        (
            project::CA_BUNDLE,
            0o444,
            Some(Body::Bytes(Cow::Borrowed(content.ca_bundle))),
        ),
    ];
    let mut binaries: Vec<&(&str, Body)> = content.binaries.iter().collect();
    binaries.sort_by_key(|(name, _)| *name);
    fixed
        .into_iter()
        .map(|(path, mode, body)| (Cow::Borrowed(path), mode, body))
        .chain(
            binaries
                .into_iter()
                .map(|(name, body)| (Cow::Borrowed(*name), 0o555, Some(borrow(body)))),
        )
        .chain(content.files.iter().map(|(path, body)| match body {
            Some(body) => (Cow::Borrowed(path.as_str()), 0o444, Some(borrow(body))),
            None => (Cow::Owned(format!("{path}/")), 0o755, None),
        }))
        .collect()
}

/// The layer: a tar with entries in a fixed order, owner 0:0, `epoch` as every mtime.
/// The layer, and the size of its files.
fn layer(content: &Content<'_>, epoch: u64) -> Result<(Vec<u8>, u64)> {
    let files = runtime_files(content);
    let lengths = files
        .iter()
        .map(|(_, _, body)| body.as_ref().map_or(Ok(0), Body::len))
        .collect::<Result<Vec<u64>>>()?;
    // Allocated once: a header and the content padded to 512 bytes an entry, two blocks at the end.
    let capacity = lengths
        .iter()
        .map(|len| 512 + len.next_multiple_of(512))
        .sum::<u64>()
        + 1024;
    let mut tar = tar::Builder::new(Vec::with_capacity(capacity as usize));
    let mut size = 0;
    for ((path, mode, body), len) in files.into_iter().zip(lengths) {
        size += len;
        match body {
            Some(Body::Bytes(bytes)) => append_file(&mut tar, &path, &bytes, mode, epoch)?,
            Some(Body::File(file)) => {
                let before = tar.get_ref().len() as u64;
                let mut header = header(tar::EntryType::Regular, mode, len, epoch);
                let reader =
                    std::fs::File::open(file).with_context(|| format!("reading {file}"))?;
                tar.append_data(&mut header, &*path, reader.take(len))
                    .with_context(|| format!("adding {file} to the layer"))?;
                if tar.get_ref().len() as u64 != before + 512 + len.next_multiple_of(512) {
                    bail!("{file} changed while it was read");
                }
            }
            None => {
                let mut header = header(tar::EntryType::Directory, mode, 0, epoch);
                tar.append_data(&mut header, &*path, std::io::empty())?;
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
    let app = &meta.app;
    let env: Vec<String> = std::iter::once(DEFAULT_PATH.to_string())
        .chain(app.env_lines())
        .collect();
    let mut image = object! { "User": format!("{0}:{0}", project::APP_UID) };
    // A port only where the app serves one (a worker serves none).
    if app.serves_http() {
        image["ExposedPorts"] = object! { [&format!("{}/tcp", app.port)]: {} };
    }
    image["Env"] = env.into();
    image["Entrypoint"] = vec![format!("/{}", app.entrypoint())].into();
    image["WorkingDir"] = app.workdir().into();
    image["Labels"] = labels.into();
    config["config"] = image;
    if let Some(command) = app.health_command("/") {
        let test: Vec<String> = std::iter::once("CMD".to_string()).chain(command).collect();
        config["config"]["Healthcheck"] = object! {
            "Test": test,
            "Interval": seconds(project::HEALTHCHECK_INTERVAL_S),
            "Timeout": seconds(project::HEALTHCHECK_TIMEOUT_S),
            "Retries": project::HEALTHCHECK_RETRIES,
        };
    }
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
            mode: crate::pipeline::gobuild::Mode::Gopath,
            app: crate::pipeline::app::App::demo(),
        }
    }

    fn bytes(b: &'static [u8]) -> Body<'static> {
        Body::Bytes(Cow::Borrowed(b))
    }

    fn content() -> Content<'static> {
        Content {
            binaries: vec![("main", bytes(b"\x7fELF binary"))],
            ca_bundle: b"certs",
            files: Vec::new(),
        }
    }

    fn amd64() -> Platform {
        "linux/amd64".parse().unwrap()
    }

    /// Fixed inputs, fixed digests: a change here changes every image ID users have.
    #[test]
    fn fixed_inputs_give_fixed_digests() {
        let image = Image::assemble(&content(), &meta(), amd64()).unwrap();
        assert_eq!(image.layer_digest, PINNED_LAYER);
        assert_eq!(image.id, PINNED_CONFIG);
        assert_eq!(image.manifest_digest, PINNED_MANIFEST);
    }

    const PINNED_LAYER: &str =
        "sha256:ef448e2209d696bc3a60918fe5c5cfcdf90894bc33f24e87bdf6a4b95107708a";
    const PINNED_CONFIG: &str =
        "sha256:8b6036b6e2164ebfa9cb04d25a44109665983151e5609355987670ecf5ad4d42";
    const PINNED_MANIFEST: &str =
        "sha256:df315b09ed1da84b3e35f9ceecb61e9e05c6fcc5dbb6e96d0616759a36b8019d";

    #[test]
    fn every_input_changes_the_image_id() {
        let base = Image::assemble(&content(), &meta(), amd64()).unwrap().id;
        let id = |content: Content<'_>, meta: Meta, platform: Platform| {
            Image::assemble(&content, &meta, platform).unwrap().id
        };
        let changed = [
            (
                "binary",
                id(
                    Content {
                        binaries: vec![("main", bytes(b"\x7fELF binarY"))],
                        ..content()
                    },
                    meta(),
                    amd64(),
                ),
            ),
            (
                "CA bundle",
                id(
                    Content {
                        ca_bundle: b"certS",
                        ..content()
                    },
                    meta(),
                    amd64(),
                ),
            ),
            (
                "commit time",
                id(
                    content(),
                    Meta {
                        epoch: 1_735_689_601,
                        ..meta()
                    },
                    amd64(),
                ),
            ),
            (
                "version",
                id(
                    content(),
                    Meta {
                        version: "v2".into(),
                        ..meta()
                    },
                    amd64(),
                ),
            ),
            (
                "revision",
                id(
                    content(),
                    Meta {
                        revision: "abd".into(),
                        ..meta()
                    },
                    amd64(),
                ),
            ),
            (
                "Go release",
                id(
                    content(),
                    Meta {
                        go: "go1.27.5".into(),
                        ..meta()
                    },
                    amd64(),
                ),
            ),
            (
                "platform",
                id(content(), meta(), "linux/arm64".parse().unwrap()),
            ),
            (
                "an extra file",
                id(
                    Content {
                        files: vec![("srv".into(), None)],
                        ..content()
                    },
                    meta(),
                    amd64(),
                ),
            ),
            (
                "the contract",
                id(
                    content(),
                    Meta {
                        app: crate::pipeline::app::App {
                            port: 9090,
                            ..crate::pipeline::app::App::demo()
                        },
                        ..meta()
                    },
                    amd64(),
                ),
            ),
        ];
        for (input, changed) in changed {
            assert_ne!(changed, base, "the {input} did not change the image ID");
        }
    }

    /// The binary read from its file makes the layer its bytes make.
    #[test]
    fn a_binary_read_from_its_file_gives_the_same_image() {
        let dir = tempfile::tempdir().unwrap();
        let file = camino::Utf8PathBuf::from_path_buf(dir.path().join("main")).unwrap();
        std::fs::write(&file, b"\x7fELF binary").unwrap();
        let from_file = Content {
            binaries: vec![("main", Body::File(&file))],
            ..content()
        };
        let image = Image::assemble(&from_file, &meta(), amd64()).unwrap();
        assert_eq!(image.id, PINNED_CONFIG);
        assert_eq!(
            image.size,
            Image::assemble(&content(), &meta(), amd64()).unwrap().size
        );
    }

    /// The archive names the same blobs both ways, with no name: every store loads it untagged.
    #[test]
    fn the_archive_is_an_oci_layout_and_a_docker_archive_of_the_same_blobs() {
        let image = Image::assemble(&content(), &meta(), Platform::host()).unwrap();
        let files = entries(&image.archive().unwrap());
        // Every blob is stored under its own digest.
        for (name, bytes) in files.iter().filter(|(n, _)| n.starts_with("blobs/")) {
            assert_eq!(
                name.trim_start_matches("blobs/sha256/"),
                crate::infra::fsx::sha256_hex(bytes)
            );
        }
        let json = |name: &str| jzon::parse(std::str::from_utf8(&files[name]).unwrap()).unwrap();
        let index = json("index.json");
        assert_eq!(index["manifests"].len(), 1);
        assert_eq!(
            index["manifests"][0]["digest"],
            image.manifest_digest.as_str()
        );
        assert!(index["manifests"][0]["annotations"].is_null(), "named");
        let docker = json("manifest.json");
        let hex = Digest::blob_path;
        assert_eq!(docker[0]["Config"], hex(&image.id).as_str());
        assert_eq!(docker[0]["Layers"][0], hex(&image.layer_digest).as_str());
        assert!(docker[0]["RepoTags"].is_null(), "named");
        assert_eq!(files["oci-layout"], OCI_LAYOUT.as_bytes());
        assert_eq!(image.engine_id(Store::Classic), image.id);
        assert_eq!(image.engine_id(Store::Podman), image.id);
        assert_eq!(image.engine_id(Store::Containerd), image.manifest_digest);
    }

    /// An archive's files by path.
    fn entries(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        for entry in tar::Archive::new(archive).entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            files.insert(name, bytes);
        }
        files
    }

    #[test]
    fn a_name_goes_to_the_index_alone_in_full() {
        let image = Image::assemble(&content(), &meta(), Platform::host()).unwrap();
        let rest = image
            .rest_of_archive(Some(&"go-docker-prod".parse().unwrap()))
            .unwrap();
        let archive = [
            opening().unwrap(),
            rest.before_layer,
            image.layer.to_vec(),
            rest.after_layer,
        ];
        let files = entries(&archive.concat());
        let json = |name: &str| jzon::parse(std::str::from_utf8(&files[name]).unwrap()).unwrap();
        assert_eq!(
            json("index.json")["manifests"][0]["annotations"]["io.containerd.image.name"],
            "docker.io/library/go-docker-prod:latest"
        );
        assert!(json("manifest.json")[0]["RepoTags"].is_null(), "named");
    }

    #[test]
    fn the_layer_holds_exactly_the_runtime_files_as_root() {
        let content = Content {
            binaries: vec![("main", bytes(b"bin"))],
            ca_bundle: b"certs",
            files: Vec::new(),
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

    /// Several binaries (sorted) and the extra files under /app, which is then the working
    /// directory; an app without a health check declares none.
    #[test]
    fn binaries_and_extra_files_follow_the_contract() {
        let content = Content {
            binaries: vec![("worker", bytes(b"w")), ("api", bytes(b"a"))],
            ca_bundle: b"certs",
            files: vec![
                ("srv".into(), None),
                ("srv/templates".into(), None),
                ("srv/templates/index.html".into(), Some(bytes(b"<p>"))),
            ],
        };
        let app = crate::pipeline::app::App {
            files: vec!["templates".into()],
            health: crate::pipeline::app::Health::None,
            ..crate::pipeline::app::App::demo()
        };
        let meta = Meta { app, ..meta() };
        let image = Image::assemble(&content, &meta, amd64()).unwrap();
        let files = entries(&image.layer);
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        for name in [
            "api",
            "worker",
            "srv/",
            "srv/templates/",
            "srv/templates/index.html",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        let config = jzon::parse(std::str::from_utf8(&image.config).unwrap()).unwrap();
        assert_eq!(config["config"]["WorkingDir"], "/srv");
        assert_eq!(config["config"]["Entrypoint"][0], "/main");
        assert!(config["config"]["Healthcheck"].is_null());
    }
}
