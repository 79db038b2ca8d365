//! The facts every step shares: where things live, what they are called, how they are labelled.
//! Nothing else in the xtask spells a path, an image name or a label key.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// The app's name: its GOPATH import path, the default image name and the ownership label's value.
pub const APP: &str = "go-docker-prod";
/// The binary's name in `dist/` and in the images (the seed's name).
pub const BINARY: &str = "main";
/// The default production image tag, as in the tutorial.
pub const DEFAULT_TAG: &str = "go-docker-prod:latest";
/// The uid and gid the app runs as inside every image we make (ko's `nonroot`).
pub const APP_UID: &str = "65532";
/// The port the app listens on.
pub const APP_PORT: u16 = 8080;

/// Official base images, for users who can pull them.
pub const DEFAULT_BUILDER_IMAGE: &str = "golang:1.19-bookworm";
pub const DEFAULT_RUNTIME_IMAGE: &str = "scratch";
/// The builder base image `cargo xtask base-images` makes from Debian's mirror when the official
/// one cannot be pulled. Its Go is Debian's, the same as the host's `golang-go`.
pub const LOCAL_BUILDER_IMAGE: &str = "xtask-local/golang:bookworm";

/// Debian's mirror: for the extra apt suites and for debootstrap.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// Ownership labels: `LABEL_PROJECT=APP` on everything we make; `LABEL_CHECKOUT` tells checkouts
/// apart (a hash of the workspace path, never the path itself); `LABEL_BASE` marks base images.
pub const LABEL_PROJECT: &str = "dev.go-docker-prod.project";
pub const LABEL_CHECKOUT: &str = "dev.go-docker-prod.checkout";
pub const LABEL_BASE: &str = "dev.go-docker-prod.base-image";
/// `builder` or `production`: which stage of our Dockerfiles an image is.
pub const LABEL_STAGE: &str = "dev.go-docker-prod.stage";

/// Where the workspace keeps things.
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: Utf8PathBuf,
}

impl Paths {
    /// The workspace root: the nearest ancestor of the current directory that holds
    /// `go-app/glide.yaml` and `xtask/`, else the one this binary was compiled in.
    pub fn discover() -> Result<Paths> {
        let cwd = std::env::current_dir().context("reading the current directory")?;
        let cwd = Utf8PathBuf::from_path_buf(cwd)
            .map_err(|p| anyhow::anyhow!("the current directory is not UTF-8: {}", p.display()))?;
        let compiled = Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Utf8Path::to_path_buf);
        for dir in cwd.ancestors().map(Utf8Path::to_path_buf).chain(compiled) {
            if dir.join("go-app/glide.yaml").is_file() && dir.join("xtask").is_dir() {
                return Ok(Paths { root: dir });
            }
        }
        bail!("no workspace found above {cwd}: run `cargo xtask` inside the project checkout")
    }

    pub fn go_app(&self) -> Utf8PathBuf {
        self.root.join("go-app")
    }
    pub fn docker_dir(&self) -> Utf8PathBuf {
        self.root.join("docker")
    }
    pub fn dist(&self) -> Utf8PathBuf {
        self.root.join("dist")
    }
    pub fn target(&self) -> Utf8PathBuf {
        self.root.join("target")
    }
    /// The GOPATH workspace glide and `go build` need; the user never sets GOPATH.
    pub fn gopath(&self) -> Utf8PathBuf {
        self.target().join("gopath")
    }
    /// The app's copy inside the GOPATH workspace, where glide and `go` run.
    pub fn stage(&self) -> Utf8PathBuf {
        self.gopath().join("src").join(APP)
    }
    /// Glide's home (cache, mirrors.yaml); one for online use, one for the offline mirror.
    pub fn glide_home(&self, offline: bool) -> Utf8PathBuf {
        self.target().join(if offline {
            "glide/home-offline"
        } else {
            "glide/home"
        })
    }
    /// The local git mirror of httprouter made from Debian's source, for air-gapped builds.
    pub fn glide_mirror(&self) -> Utf8PathBuf {
        self.target().join("glide/mirror/httprouter")
    }
    /// Scratch space for steps that build something then move it into place.
    pub fn scratch(&self, name: &str) -> Utf8PathBuf {
        self.target()
            .join("xtask-tmp")
            .join(format!("{name}-{}", std::process::id()))
    }
    /// The lock that keeps two xtasks on one checkout from building at the same time.
    pub fn lock_file(&self) -> Utf8PathBuf {
        self.target().join("xtask.lock")
    }

    /// The value of `LABEL_CHECKOUT`: FNV-1a of the root path, stable across runs and toolchains.
    pub fn checkout_id(&self) -> String {
        let hash = self
            .root
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        format!("{hash:016x}")
    }
}
