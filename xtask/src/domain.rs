//! The values every floor speaks of: how to build (`Strategy`, `Builder`), for which `Platform`,
//! stamped with which `Version`, named by which `ImageRef`. Parsed and shown in one place; no
//! process, no engine.

use std::{fmt, str::FromStr};

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

/// A content digest as OCI and the engines spell it, `sha256:` and 64 lowercase hex digits: a
/// blob's, a manifest's, an image ID. The one place that knows the spelling.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    const PREFIX: &'static str = "sha256:";

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(format!(
            "{}{:x}",
            Digest::PREFIX,
            sha2::Sha256::digest(bytes)
        ))
    }

    /// A digest as a tool prints it: `sha256:HEX`, or bare `HEX` (Podman), with blanks around;
    /// None for anything else.
    pub fn parse(text: &str) -> Option<Digest> {
        let hex = text.trim();
        let hex = hex.strip_prefix(Digest::PREFIX).unwrap_or(hex);
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Digest(format!("{}{hex}", Digest::PREFIX)))
    }

    /// The digests in `text`, wherever they stand (what is left of a damaged file).
    pub fn all_in(text: &str) -> Vec<Digest> {
        let mut found = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find(Digest::PREFIX) {
            let end = (at + Digest::PREFIX.len() + 64).min(rest.len());
            let next = rest.as_bytes().get(end).copied();
            // A longer run of hex is no digest.
            if let Some(d) = rest.get(at..end).and_then(Digest::parse) {
                if !next.is_some_and(|b| b.is_ascii_hexdigit()) {
                    found.push(d);
                }
            }
            rest = &rest[at + Digest::PREFIX.len()..];
        }
        found
    }

    /// The 64 hex digits of a digest we hold as text (`sha256:` dropped, when there).
    pub fn hex_of(digest: &str) -> &str {
        digest.strip_prefix(Digest::PREFIX).unwrap_or(digest)
    }

    /// Where an OCI image layout keeps the blob of `digest`.
    pub fn blob_path(digest: &str) -> String {
        format!("blobs/sha256/{}", Digest::hex_of(digest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An image reference as docker takes it: `[REGISTRY/]NAME[:TAG][@sha256:DIGEST]`, or `scratch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef(String);

impl ImageRef {
    /// `NAME:latest`, for a name already checked as an image's (an app's name).
    pub fn latest(name: &str) -> Result<ImageRef, String> {
        format!("{name}:latest").parse()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
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
/// A path component as the distribution reference grammar has it: alphanumerics, joined by
/// separators `.`, `_`, `__` or any run of `-`.
fn path_component_ok(p: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut chars = p.chars().peekable();
    let mut expect_alnum = true;
    while let Some(c) = chars.next() {
        if alnum(c) {
            expect_alnum = false;
            continue;
        }
        if expect_alnum {
            return false;
        }
        let separator_ok = match c {
            '.' => true,
            '_' => {
                if chars.peek() == Some(&'_') {
                    chars.next();
                }
                true
            }
            '-' => {
                while chars.peek() == Some(&'-') {
                    chars.next();
                }
                true
            }
            _ => false,
        };
        if !separator_ok {
            return false;
        }
        expect_alnum = true;
    }
    !expect_alnum
}

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
            // Spelled in full: no bare hex, no blanks.
            if Digest::parse(d).is_none_or(|parsed| parsed.as_str() != d) {
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
        // A first part with a `.` or `:` (or `localhost`) is a registry host: domain components
        // (letters, digits, inner `-`) joined by `.`, then an optional `:PORT`. No IPv6
        // address: the engines here refuse `[::1]:5000/x`.
        if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
            let host = parts.remove(0);
            let (domain, port) = match host.rsplit_once(':') {
                Some((d, p)) => (d, Some(p)),
                None => (host, None),
            };
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if !domain.split('.').all(label_ok) || !port_ok {
                return bad(
                    "the registry host: letters, digits and `-` between dots, then `:PORT`",
                );
            }
        }
        if !parts.iter().all(|p| path_component_ok(p)) {
            return bad(
                "each path component: lowercase letters and digits, joined by one `.`, one or \
                 two `_`, or `-`s",
            );
        }
        // The engine counts the name in full (`docker.io/library/NAME`): at most 255.
        if split_tag(&ImageRef(name.to_string()).normalized()).0.len() > 255 {
            return bad("the name in full, `docker.io/library/` and all, is over 255 characters");
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
        registry_of(&self.0)
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

    /// In full, as containerd names images: `docker.io/library/go-docker-prod:latest` for
    /// `go-docker-prod`.
    pub fn normalized(&self) -> String {
        let familiar = self.familiar();
        match self.registry() == "docker.io" {
            true if familiar.contains('/') => format!("docker.io/{familiar}"),
            true => format!("docker.io/library/{familiar}"),
            false => familiar,
        }
    }
}

/// `docker.io` for `golang:1.27`, `127.0.0.1:5000` for `127.0.0.1:5000/app`.
pub fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_string(),
        _ => "docker.io".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_spelled_one_way() {
        let hex = "ab".repeat(32);
        let full = format!("sha256:{hex}");
        for said in [hex.clone(), full.clone(), format!(" {full}\n")] {
            assert_eq!(Digest::parse(&said).unwrap().as_str(), full, "{said:?}");
        }
        for nonsense in [
            "",
            "sha256:",
            &"AB".repeat(32),
            &"ab".repeat(33),
            "sha512:ab",
        ] {
            assert_eq!(Digest::parse(nonsense), None, "{nonsense:?}");
        }
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::blob_path(&full), format!("blobs/sha256/{hex}"));
        assert_eq!(Digest::hex_of(&full), hex);
        // In text, a digest stands alone: a longer run of hex is none.
        let text = format!("x{full}\"sha256:{hex}ff {full}");
        let found: Vec<String> = Digest::all_in(&text)
            .into_iter()
            .map(Digest::into_string)
            .collect();
        assert_eq!(found, [full.clone(), full]);
    }

    #[test]
    fn names_in_full() {
        let full = |r: &str| ImageRef(r.into()).normalized();
        assert_eq!(
            full("go-docker-prod"),
            "docker.io/library/go-docker-prod:latest"
        );
        assert_eq!(full("me/app:v1"), "docker.io/me/app:v1");
        assert_eq!(full("docker.io/library/app:v1"), "docker.io/library/app:v1");
        assert_eq!(full("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(full("localhost/app:v1"), "localhost/app:v1");
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
            "a__b--c.d_e:1",
            "my-reg.example.com:5000/team/app---x:v1",
            &"a".repeat(237),
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
            "a..b:1",
            "a.-b:1",
            "a___b:1",
            "[::1]:5000/x",
            "-a/b",
            "reg-.io/a",
            "reg.io:50a0/a",
            &"a".repeat(248),
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
        for (reference, registry) in [
            ("golang:1.27-bookworm", "docker.io"),
            ("127.0.0.1:5000/app:1", "127.0.0.1:5000"),
            ("library/golang", "docker.io"),
            ("ghcr.io/a/b", "ghcr.io"),
        ] {
            assert_eq!(registry_of(reference), registry);
        }
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
