//! Every command and flag of `cargo xtask`, parsed by xflags (which also generates `--help`)
//! before any work starts. Values with a fixed set of names are `FromStr` types whose errors list
//! the valid names; a usage error exits with 2.

use std::{fmt, str::FromStr};

xflags::xflags! {
    /// Turn the Go app in go-app/ into a lean, reproducible production image.
    cmd xtask {
        /// Print the commands that would change something; run none of them.
        optional --dry-run
        /// Never install anything: a missing tool is an error.
        optional --no-setup
        /// Never reach GitHub or a registry (Debian-sourced glide mirror, local base images).
        optional --offline

        /// Install what the pipeline needs (apt; through sudo when not root) and start a local
        /// dockerd when no engine answers. Leaves /etc/apt as it found it.
        cmd setup {}

        /// Glide, then static Linux binaries: dist/main and dist/SHA256SUMS.
        cmd dist {
            /// Also build for these platforms, comma separated (dist/main-linux-arm64, ...).
            optional --platform platforms: Platforms
            /// The version stamped into the binary (default: git describe, else dev).
            optional --app-version version: Version
        }

        /// The production image (multi-stage by default).
        cmd image {
            /// multistage (default) | handoff | single | direct.
            optional --strategy strategy: Strategy
            /// The image tag (default go-docker-prod:latest).
            optional --tag tag: ImageRef
            /// buildkit | legacy (default: buildkit when the client has it).
            optional --builder builder: Builder
            /// The Go builder base image (default golang:1.27-bookworm, else the local one).
            optional --builder-image image: ImageRef
            /// The runtime base image (default scratch).
            optional --runtime-image image: ImageRef
            /// UPX the binary (goes through the dist handoff; needs upx on the host).
            optional --compress
            /// Run the image hardened on a loopback port, wait until healthy, check it, stop it.
            optional --smoke
            /// Build without the builder's cache (base images are kept).
            optional --no-cache
            /// As for dist.
            optional --app-version version: Version
        }

        /// Push a multi-platform image (assembled as by --strategy direct), with SBOMs and provenance
        /// attached, to a registry; digests to dist/digests.txt.
        cmd publish {
            /// Where: REGISTRY/REPO[:TAG] (the tag defaults to the version).
            required --to reference: ImageRef
            /// Platforms, comma separated (default linux/amd64,linux/arm64).
            optional --platform platforms: Platforms
            /// Sign the index digest with this cosign key (no transparency log; COSIGN_PASSWORD).
            optional --sign key: String
            /// Only check the signature of what --to names with this cosign public key.
            optional --verify-signature key: String
            /// As for dist.
            optional --app-version version: Version
        }

        /// Rebuild the image's revision with --strategy direct; exit 0 only when the image IDs match.
        cmd verify {
            /// The image to check (default go-docker-prod:latest).
            optional image: ImageRef
        }

        /// Build the local builder base image from Debian's mirror (mmdebstrap; no registry, no root).
        cmd base-images {
            /// The Debian mirror (default http://deb.debian.org/debian).
            optional --mirror url: String
        }

        /// Remove what the xtask built (by its record) and dist/, target/ state, go-app/vendor/.
        cmd clean {
            /// Also remove the local base images.
            optional --all
        }

        /// The test suite: provisioning, fmt, clippy, go vet, gofmt, go test, all Rust tests.
        cmd ci {}

        /// Measure build time, size and disk use against the tutorial's flow and a host go build.
        cmd bench {
            /// The one-line-edit rebuild only, one run unless --runs (what CI runs).
            optional --quick
            /// Runs per measurement, medians reported (default 5).
            optional --runs n: usize
            /// Only the contenders whose name contains this text (the limit always runs).
            optional --only text: String
            /// Also `direct` on this engine (a DOCKER_HOST value), which must have the builder base.
            optional --remote host: String
        }
    }
}

/// How `image` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// docker/Dockerfile in one build.
    #[default]
    Multistage,
    /// ex1, its /out copied to dist/, ex2 from dist/.
    Handoff,
    /// ex1 as the production image: the fat image, for comparison.
    Single,
    /// The xtask writes the image itself from dist/ and hands it to the engine (no Dockerfile).
    Direct,
}

/// Which builder runs a Dockerfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    BuildKit,
    Legacy,
}

/// Names, written once: parsing, display and the error's list of valid values all use them.
trait Named: Sized + Copy + 'static {
    const WHAT: &'static str;
    const PLURAL: &'static str;
    const ALL: &'static [(Self, &'static str)];
    fn name(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }
    fn parse_name(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(v, _)| *v)
            .ok_or_else(|| {
                let valid: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                format!(
                    "unknown {} `{s}`; valid {}: {}",
                    Self::WHAT,
                    Self::PLURAL,
                    valid.join(", ")
                )
            })
    }
}

impl Named for Strategy {
    const WHAT: &'static str = "strategy";
    const PLURAL: &'static str = "strategies";
    const ALL: &'static [(Strategy, &'static str)] = &[
        (Strategy::Multistage, "multistage"),
        (Strategy::Handoff, "handoff"),
        (Strategy::Single, "single"),
        (Strategy::Direct, "direct"),
    ];
}

impl Named for Builder {
    const WHAT: &'static str = "builder";
    const PLURAL: &'static str = "builders";
    const ALL: &'static [(Builder, &'static str)] =
        &[(Builder::BuildKit, "buildkit"), (Builder::Legacy, "legacy")];
}

macro_rules! named_str {
    ($($t:ty),*) => {$(
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <$t as Named>::parse_name(s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(Named::name(*self))
            }
        }
    )*};
}
named_str!(Strategy, Builder);

/// A Linux platform Go can cross-compile to without cgo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Platform {
    pub arch: &'static str,
    pub variant: Option<&'static str>,
}

impl Platform {
    pub const ALL: [Platform; 8] = [
        Platform::new("amd64", None),
        Platform::new("arm64", None),
        Platform::new("386", None),
        Platform::new("arm", Some("v6")),
        Platform::new("arm", Some("v7")),
        Platform::new("ppc64le", None),
        Platform::new("s390x", None),
        Platform::new("riscv64", None),
    ];
    const fn new(arch: &'static str, variant: Option<&'static str>) -> Platform {
        Platform { arch, variant }
    }
    /// The platform of the machine the xtask runs on (Go's GOARCH names).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            _ => "amd64",
        };
        Platform::new(arch, None)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.variant {
            Some(v) => write!(f, "linux/{}/{v}", self.arch),
            None => write!(f, "linux/{}", self.arch),
        }
    }
}

impl FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Platform, String> {
        Platform::ALL
            .iter()
            .copied()
            .find(|p| p.to_string() == s)
            .ok_or_else(|| {
                let valid: Vec<String> = Platform::ALL.iter().map(ToString::to_string).collect();
                format!(
                    "unknown platform `{s}`; valid platforms: {}",
                    valid.join(", ")
                )
            })
    }
}

/// A comma-separated list of platforms, deduplicated, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platforms(pub Vec<Platform>);

impl FromStr for Platforms {
    type Err = String;
    fn from_str(s: &str) -> Result<Platforms, String> {
        let mut out: Vec<Platform> = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let p: Platform = p.parse()?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(Platforms(out))
    }
}

/// A version to stamp: letters, digits and `._+-` only (it goes into ldflags and labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub String);

impl FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Version, String> {
        if s.is_empty()
            || s.len() > 128
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
        {
            return Err(format!(
                "invalid version `{s}`: use letters, digits and `._+-` (at most 128)"
            ));
        }
        Ok(Version(s.to_string()))
    }
}

/// An image reference as docker takes it: `[REGISTRY/]NAME[:TAG][@sha256:DIGEST]`, or `scratch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef(pub String);

impl ImageRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Without the digest: what can be used as a tag.
    pub fn has_digest(&self) -> bool {
        self.0.contains('@')
    }
    /// `NAME-builder:TAG`: where the builder image sits beside this tag.
    pub fn builder_tag(&self) -> String {
        let (name, tag) = split_tag(&self.0);
        format!("{name}-builder:{}", tag.unwrap_or("latest"))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `host:5000/a/b:tag` → (`host:5000/a/b`, Some(`tag`)); a `:` before the last `/` is a port.
fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let reference = reference.split('@').next().unwrap_or(reference);
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (reference, None),
    }
}

impl FromStr for ImageRef {
    type Err = String;
    fn from_str(s: &str) -> Result<ImageRef, String> {
        let bad = |why: &str| {
            Err(format!(
                "invalid image reference `{s}` ({why}); expected [REGISTRY/]NAME[:TAG][@sha256:DIGEST], \
                 lowercase name, e.g. go-docker-prod:latest"
            ))
        };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (s, None),
        };
        if let Some(d) = digest {
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64
                || !hex
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            {
                return bad("a digest is sha256: and 64 lowercase hex digits");
            }
        }
        if rest.is_empty() || rest.len() > 255 {
            return bad("empty or too long");
        }
        let (name, tag) = split_tag(rest);
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && !tag.starts_with(['.', '-'])
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return bad("the tag takes letters, digits, `_.-`, at most 128");
            }
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        // A first part with a `.` or `:` (or `localhost`) is a registry host.
        if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
            let host = parts.remove(0);
            if !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            {
                return bad("the registry host");
            }
        }
        let component_ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && p.starts_with(|c: char| c.is_ascii_alphanumeric())
                && p.ends_with(|c: char| c.is_ascii_alphanumeric())
        };
        if !parts.iter().all(|p| component_ok(p)) {
            return bad("each path component: lowercase letters, digits, `._-`");
        }
        Ok(ImageRef(s.to_string()))
    }
}

impl ImageRef {
    /// `REGISTRY/REPO` and the tag, if any.
    pub fn repository_and_tag(&self) -> (&str, Option<&str>) {
        split_tag(&self.0)
    }

    /// The registry host (`docker.io` when none is named).
    pub fn registry(&self) -> String {
        crate::infra::docker::registry_of(&self.0)
    }

    /// As `docker images` shows it: `REPOSITORY:TAG`, without Docker Hub's `docker.io/` and
    /// `library/`, `:latest` when no tag is named.
    pub fn familiar(&self) -> String {
        let (name, tag) = split_tag(&self.0);
        let hub = self.registry() == "docker.io";
        let name = match name.strip_prefix("docker.io/") {
            Some(rest) if hub => rest,
            _ => name,
        };
        let name = match name.strip_prefix("library/") {
            Some(rest) if hub => rest,
            _ => name,
        };
        format!("{name}:{}", tag.unwrap_or("latest"))
    }
}

impl Image {
    pub fn tag(&self) -> ImageRef {
        self.tag
            .clone()
            .unwrap_or_else(|| ImageRef(crate::project::DEFAULT_TAG.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> xflags::Result<Xtask> {
        Xtask::from_vec(args.split_whitespace().map(Into::into).collect())
    }

    #[test]
    fn image_defaults_and_flags_anywhere() {
        let flags = parse("image --dry-run --strategy handoff --tag a/b:c --no-cache").unwrap();
        assert!(flags.dry_run);
        let XtaskCmd::Image(image) = flags.subcommand else {
            panic!()
        };
        assert_eq!(image.strategy, Some(Strategy::Handoff));
        assert_eq!(image.tag().as_str(), "a/b:c");
        assert!(image.no_cache && !image.smoke);
        let XtaskCmd::Image(image) = parse("image").unwrap().subcommand else {
            panic!()
        };
        assert_eq!(image.strategy.unwrap_or_default(), Strategy::Multistage);
        assert_eq!(image.tag().as_str(), crate::project::DEFAULT_TAG);
    }

    #[test]
    fn bad_values_list_the_valid_ones() {
        let err = parse("image --strategy fast").unwrap_err().to_string();
        assert!(err.contains("multistage, handoff, single, direct"), "{err}");
        let err = parse("image --builder kaniko").unwrap_err().to_string();
        assert!(err.contains("buildkit, legacy"), "{err}");
        let err = parse("dist --platform linux/sparc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux/arm64"), "{err}");
        let err = parse("frobnicate").unwrap_err().to_string();
        assert!(!err.is_empty());
        assert!(parse("dist --app-version 'a b'").is_err());
    }

    #[test]
    fn platforms_are_deduplicated_and_named_once() {
        let p: Platforms = "linux/arm64, linux/arm/v7,linux/arm64".parse().unwrap();
        assert_eq!(
            p.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["linux/arm64", "linux/arm/v7"]
        );
        for p in Platform::ALL {
            assert_eq!(p.to_string().parse::<Platform>().unwrap(), p);
        }
        for (s, name) in <Strategy as Named>::ALL {
            assert_eq!(name.parse::<Strategy>().unwrap(), *s);
            assert_eq!(s.to_string(), *name);
        }
    }

    #[test]
    fn image_references() {
        for ok in [
            "go-docker-prod:latest",
            "a/b/c",
            "localhost:5000/x/y:1.0",
            "127.0.0.1:5000/app:v1",
            "golang@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "golang:1.27@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "scratch",
        ] {
            assert!(ok.parse::<ImageRef>().is_ok(), "{ok}");
        }
        for bad in [
            "Bad Tag",
            "UPPER:1",
            "a:",
            "a:-x",
            "x@sha256:12",
            "",
            "a//b",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
        }
        assert_eq!(
            ImageRef("r:5000/a:t".into()).builder_tag(),
            "r:5000/a-builder:t"
        );
        assert_eq!(
            ImageRef("r:5000/a".into()).builder_tag(),
            "r:5000/a-builder:latest"
        );
        for (given, shown) in [
            ("app", "app:latest"),
            ("docker.io/library/app:1", "app:1"),
            ("library/app:1", "app:1"),
            ("docker.io/me/app", "me/app:latest"),
            (
                "localhost:5000/library/app:2",
                "localhost:5000/library/app:2",
            ),
        ] {
            assert_eq!(ImageRef(given.into()).familiar(), shown);
        }
    }
}
