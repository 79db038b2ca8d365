//! The facts every layer shares: where things live, what they are called, how they are labelled,
//! which Go. Nothing else in the xtask spells a path, an image name or a label key.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// The tool's name: the project label's value on everything it makes, its containers' prefix.
/// The app's own facts (name, binaries, port, health check) are its contract: `pipeline::app`.
pub const TOOL: &str = "go-docker-prod";
/// The uid and gid the app runs as inside every image we make (ko's `nonroot`).
pub const APP_UID: u32 = 65532;
/// The app's user and group in the runtime image, one line each (the files end with a newline):
/// the one place that spells them (the Dockerfiles take them as build args, `direct` writes them).
pub fn passwd() -> String {
    format!("app:x:{APP_UID}:{APP_UID}:app:/:/sbin/nologin")
}
pub fn group() -> String {
    format!("app:x:{APP_UID}:")
}
/// Where the runtime image keeps the CA bundle (Debian's path; Go looks there).
pub const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
/// The timing of the health check an image declares (`pipeline::app::Health`).
pub const HEALTHCHECK_INTERVAL_S: u64 = 2;
pub const HEALTHCHECK_TIMEOUT_S: u64 = 2;
pub const HEALTHCHECK_RETRIES: u64 = 3;

/// The Go line we build with: supported upstream, shipped by Debian (trixie-backports), installed
/// alone on bookworm. Host and local builder base use the same package, so binaries match. Every
/// name below derives from this one literal.
macro_rules! go_line {
    () => {
        "1.27"
    };
}
pub const GO_LINE: &str = go_line!();
pub const GO_PACKAGE: &str = concat!("golang-", go_line!(), "-go");
pub const GO_SRC_PACKAGE: &str = concat!("golang-", go_line!(), "-src");
/// Debian's versioned Go packages put `go` here, not on PATH.
pub const GO_BIN: &str = concat!("/usr/lib/go-", go_line!(), "/bin/go");
/// The oldest Go line still supported upstream: anything older gets a warning.
pub const OLDEST_SUPPORTED_GO: (u32, u32) = (1, 26);

/// Official base images, for users who can pull them.
pub const DEFAULT_BUILDER_IMAGE: &str = concat!("golang:", go_line!(), "-bookworm");
pub const DEFAULT_RUNTIME_IMAGE: &str = "scratch";
/// The builder base made locally from Debian's mirror when the official one cannot be pulled.
pub const LOCAL_BUILDER_IMAGE: &str = concat!("xtask-local/golang:", go_line!(), "-bookworm");
/// The local base's suites: bookworm, and Go from trixie-backports.
pub const BASE_SUITE: &str = "bookworm";
pub const BASE_EXTRA_SUITE: &str = "trixie-backports";
/// A fixed time for the local base image's files, so that every run gives the same layer.
pub const BASE_EPOCH: u64 = 1_735_689_600; // 2025-01-01T00:00:00Z

/// The tests' second Docker: trixie's Docker 26 (with its containerd, for the containerd image
/// store), unpacked here by `cargo xtask ci`, never installed over the host's engine.
pub const TEST_DOCKER_ROOT: &str = "/var/tmp/go-docker-prod-engines/docker-trixie";
pub const TEST_DOCKER_SUITE: &str = "trixie";
/// The file in the tests' target tmpdir (`CARGO_TARGET_TMPDIR`) whose flock a test holds while it
/// uses the host's engine; `cargo xtask ci` holds it for its own runs on that engine.
pub const TESTS_HOST_ENGINE_LOCK: &str = "host-engine.lock";
pub const TEST_DOCKER_PACKAGES: [&str; 3] = ["docker.io", "containerd", "tini"];

/// Debian's mirror: for the extra apt suites and for mmdebstrap.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// `LABEL_PROJECT=TOOL` is set on every image we build (in each stage's first step too, so that a
/// build stopped halfway leaves images we recognise). Containers inherit image labels, so a
/// container is ours only when it carries `LABEL_TEMP`, which the xtask alone sets at
/// `docker create`, with this checkout's random id as the value.
pub const LABEL_PROJECT: &str = "dev.go-docker-prod.project";
pub const LABEL_TEMP: &str = "dev.go-docker-prod.temporary";
/// Set by a Dockerfile build on its images, with the build id its record noted before it started
/// (see `pipeline::record`): how `clean` finds what a killed build left.
pub const LABEL_BUILD: &str = "dev.go-docker-prod.build";
/// `builder` or `production`: which stage of our Dockerfiles an image is.
pub const LABEL_STAGE: &str = "dev.go-docker-prod.stage";
pub const STAGE_BUILDER: &str = "builder";
pub const STAGE_PRODUCTION: &str = "production";
/// The Go that built the binary and the builder base it came with: what `verify` rebuilds with.
pub const LABEL_GO: &str = "dev.go-docker-prod.go";
pub const LABEL_BUILDER_BASE: &str = "dev.go-docker-prod.builder-base";
/// Marks the base images we made.
pub const LABEL_BASE: &str = "dev.go-docker-prod.base-image";
/// The OCI labels.
pub const OCI_TITLE: &str = "org.opencontainers.image.title";
pub const OCI_VERSION: &str = "org.opencontainers.image.version";
pub const OCI_REVISION: &str = "org.opencontainers.image.revision";
pub const OCI_CREATED: &str = "org.opencontainers.image.created";
pub const OCI_SOURCE: &str = "org.opencontainers.image.source";

/// Where the workspace keeps things.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Paths {
    pub root: Utf8PathBuf,
}

impl Paths {
    /// The workspace root: the nearest ancestor of the current directory that holds `xtask/` and
    /// `go-app/` with glide.yaml or go.mod, else the one this binary was compiled in.
    pub fn discover() -> Result<Paths> {
        let cwd = std::env::current_dir().context("reading the current directory")?;
        let cwd = Utf8PathBuf::from_path_buf(cwd)
            .map_err(|p| anyhow::anyhow!("the current directory is not UTF-8: {}", p.display()))?;
        let compiled = Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Utf8Path::to_path_buf);
        for dir in cwd.ancestors().map(Utf8Path::to_path_buf).chain(compiled) {
            if Paths::is_root(&dir) {
                return Paths::at(dir);
            }
        }
        bail!("no workspace found above {cwd}: run `cargo xtask` inside the project checkout")
    }

    fn is_root(dir: &Utf8Path) -> bool {
        let app = dir.join("go-app");
        let moved_aside = || !crate::infra::fsx::leftovers_beside(&app).is_empty();
        (app.join("glide.yaml").is_file() || app.join("go.mod").is_file() || moved_aside())
            && dir.join("xtask").is_dir()
    }

    /// The workspace at `root`, refused before any work when a tool could not take its path.
    pub fn at(root: Utf8PathBuf) -> Result<Paths> {
        // GOPATH is a `:`-separated list: a `:` in the checkout's path would split it.
        if root.as_str().contains(':') {
            bail!(
                "the checkout's path {root} contains `:`, which GOPATH (and so glide and go) \
                 cannot take: move or clone the checkout to a path without `:`"
            );
        }
        Ok(Paths { root })
    }

    pub fn go_app(&self) -> Utf8PathBuf {
        self.root.join("go-app")
    }
    pub fn docker_dir(&self) -> Utf8PathBuf {
        self.root.join("docker")
    }
    /// The HTTP health check's Go source (`main.go`), built into images that ask for it.
    pub fn healthcheck_source(&self) -> Utf8PathBuf {
        self.docker_dir().join("healthcheck")
    }
    /// The xtask's integration tests: one test binary per `*.rs` file.
    pub fn integration_tests(&self) -> Utf8PathBuf {
        self.root.join("xtask/tests")
    }
    pub fn bench_fixtures(&self) -> Utf8PathBuf {
        self.root.join("xtask/bench")
    }
    pub fn dist(&self) -> Utf8PathBuf {
        self.root.join("dist")
    }
    pub fn vendor(&self) -> Utf8PathBuf {
        self.go_app().join("vendor")
    }
    pub fn target(&self) -> Utf8PathBuf {
        self.root.join("target")
    }
    /// The xtask's own state: the record of what it built, the lock, caches, the OCI layout.
    pub fn xtask_dir(&self) -> Utf8PathBuf {
        self.target().join("xtask")
    }
    /// The GOPATH workspace glide and `go build` need; the user never sets GOPATH.
    pub fn gopath(&self) -> Utf8PathBuf {
        self.target().join("gopath")
    }
    /// The app's copy inside the GOPATH workspace, where glide and `go` run: at its import path.
    pub fn gopath_app(&self, import_path: &str) -> Utf8PathBuf {
        self.gopath().join("src").join(import_path)
    }
    /// The Docker build contexts the xtask makes (go-app/ without its .dockerignore, dist/'s
    /// runtime files) and the Dockerfiles rendered for the app.
    pub fn contexts(&self) -> Utf8PathBuf {
        self.xtask_dir().join("contexts")
    }
    /// Glide's state: its homes (online, offline) and the offline mirror.
    pub fn glide_dir(&self) -> Utf8PathBuf {
        self.target().join("glide")
    }
    pub fn glide_home(&self, offline: bool) -> Utf8PathBuf {
        self.glide_dir()
            .join(if offline { "home-offline" } else { "home" })
    }
    /// The local git mirror of httprouter made from Debian's source, for air-gapped builds.
    pub fn glide_mirror(&self) -> Utf8PathBuf {
        self.glide_dir().join("mirror/httprouter")
    }
    pub fn lock_file(&self) -> Utf8PathBuf {
        self.target().join("xtask.lock")
    }
    /// What the xtask built on the engine: the record `clean` works from.
    pub fn record(&self) -> Utf8PathBuf {
        self.xtask_dir().join("record.json")
    }
    /// Kept fresh while the Dockerfile build `build` runs: when a killed build was last alive.
    pub fn build_heartbeat(&self, build: &str) -> Utf8PathBuf {
        self.xtask_dir()
            .join("builds")
            .join(format!("{build}.alive"))
    }
    /// The OCI image layout `--strategy direct` writes.
    pub fn oci_layout(&self) -> Utf8PathBuf {
        self.xtask_dir().join("oci")
    }
    /// Files taken from base images (the CA bundle), by image ID.
    pub fn base_files(&self) -> Utf8PathBuf {
        self.xtask_dir().join("base-files")
    }
    /// Where `verify` checks revisions out.
    pub fn worktrees(&self) -> Utf8PathBuf {
        self.xtask_dir().join("worktrees")
    }
    pub fn bench_dir(&self) -> Utf8PathBuf {
        self.target().join("bench")
    }
}
