//! Every command and flag of `cargo xtask`, parsed and validated before any work starts.

use std::fmt;

pub const USAGE: &str = "\
cargo xtask: turn the Go app in go-app/ into a lean, reproducible production image.

USAGE: cargo xtask <COMMAND> [FLAGS]

COMMANDS
  setup         install what the pipeline needs (apt) and start dockerd; idempotent
  dist          glide, then a static Linux binary: dist/main and dist/SHA256SUMS
  image         the production image (multi-stage by default)
  base-images   build the builder base image locally from Debian's mirror (no registry needed)
  clean         remove dist/, the GOPATH workspace, our images, containers and dangling images
  ci            the test suite: fmt, clippy, go vet, gofmt, go test, Rust tests (real Docker)
  bench         measure build time, size and disk use against the tutorial's flow, as ratios

FLAGS (every command)
  --dry-run             print the commands that change something, run none of them
  --no-setup            never install anything; a missing tool is an error
  --offline             never reach GitHub or a registry: Debian-sourced glide mirror, local base images
  -h, --help            this text

dist
  --platform LIST       also build for these platforms, comma separated (dist/main-linux-arm64, ...):
                        linux/amd64, linux/arm64, linux/386, linux/arm/v6, linux/arm/v7,
                        linux/ppc64le, linux/s390x, linux/riscv64
  --app-version V       the version stamped into the binary (default: git describe, else \"dev\")

image
  --strategy S          multistage (default) | handoff | single
  --tag NAME:TAG        the image tag (default go-docker-prod:latest)
  --builder B           buildkit | legacy (default: buildkit when the client has it)
  --builder-image IMG   the Go builder base image (default golang:1.19-bookworm, or the local one)
  --runtime-image IMG   the runtime base image (default scratch)
  --compress            UPX the binary (goes through the dist handoff; needs upx on the host)
  --smoke               run the image on a loopback port, check /healthz and /hello/x, stop it
  --no-cache            build without the builder's cache (a cold build; base images are kept)
  --app-version V       as for dist

base-images
  --mirror URL          the Debian mirror for debootstrap (default http://deb.debian.org/debian)

clean
  --all                 also remove the local base images

bench
  --quick               one run, the one-line-edit rebuild only (what CI runs)
  --runs N              runs per measurement, medians reported (default 5)
";

pub const STRATEGIES: [&str; 3] = ["multistage", "handoff", "single"];
pub const BUILDERS: [&str; 2] = ["buildkit", "legacy"];
pub const PLATFORMS: [&str; 8] = [
    "linux/amd64",
    "linux/arm64",
    "linux/386",
    "linux/arm/v6",
    "linux/arm/v7",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
];

#[derive(Debug, Default, Clone)]
pub struct Global {
    pub dry_run: bool,
    pub no_setup: bool,
    pub offline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Multistage,
    Handoff,
    Single,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    BuildKit,
    Legacy,
}

#[derive(Debug, Default, Clone)]
pub struct Dist {
    pub platforms: Vec<String>,
    pub app_version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub strategy: Strategy,
    pub tag: String,
    pub builder: Option<Builder>,
    pub builder_image: Option<String>,
    pub runtime_image: Option<String>,
    pub compress: bool,
    pub smoke: bool,
    pub no_cache: bool,
    pub app_version: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Command {
    Help,
    Setup,
    Dist(Dist),
    Image(Image),
    BaseImages { mirror: Option<String> },
    Clean { all: bool },
    Ci,
    Bench { quick: bool, runs: usize },
}

/// A usage error: shown with a hint, exit code 2, before any work starts.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\nRun `cargo xtask --help` for every command and flag.",
            self.0
        )
    }
}

impl std::error::Error for UsageError {}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Multistage => "multistage",
            Strategy::Handoff => "handoff",
            Strategy::Single => "single",
        })
    }
}

impl fmt::Display for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Builder::BuildKit => "buildkit",
            Builder::Legacy => "legacy",
        })
    }
}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> Result<(Global, Command), UsageError> {
    let mut global = Global::default();
    let mut command: Option<&str> = None;
    let mut rest: Vec<(String, Option<String>)> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--dry-run" => global.dry_run = true,
            "--no-setup" => global.no_setup = true,
            "--offline" => global.offline = true,
            "-h" | "--help" => return Ok((global, Command::Help)),
            flag if flag.starts_with("--") => {
                let (name, inline) = match flag.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (flag.to_string(), None),
                };
                let value = if takes_value(&name) {
                    match inline {
                        Some(v) => Some(v),
                        None => Some(
                            it.next()
                                .cloned()
                                .ok_or_else(|| usage(format!("{name} needs a value")))?,
                        ),
                    }
                } else {
                    inline.map_or(Ok(None), |_| Err(usage(format!("{name} takes no value"))))?
                };
                rest.push((name, value));
            }
            word if command.is_none() => command = Some(word),
            word => return Err(usage(format!("unexpected argument `{word}`"))),
        }
    }
    let command = match command {
        None => return Ok((global, Command::Help)),
        Some(c) => c,
    };
    let allowed: &[&str] = match command {
        "setup" | "ci" => &[],
        "dist" => &["--platform", "--app-version"],
        "image" => &[
            "--strategy",
            "--tag",
            "--builder",
            "--builder-image",
            "--runtime-image",
            "--compress",
            "--smoke",
            "--no-cache",
            "--app-version",
        ],
        "base-images" => &["--mirror"],
        "clean" => &["--all"],
        "bench" => &["--quick", "--runs"],
        other => {
            return Err(usage(format!(
                "unknown command `{other}`; valid commands: setup, dist, image, base-images, clean, ci, bench"
            )))
        }
    };
    if let Some((bad, _)) = rest
        .iter()
        .find(|(name, _)| !allowed.contains(&name.as_str()))
    {
        let valid = if allowed.is_empty() {
            "none".to_string()
        } else {
            allowed.join(", ")
        };
        return Err(usage(format!(
            "unknown flag `{bad}` for `{command}`; its flags: {valid}"
        )));
    }
    let value = |name: &str| {
        rest.iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    };
    let present = |name: &str| rest.iter().any(|(n, _)| n == name);
    let app_version = value("--app-version").map(validate_version).transpose()?;

    let command = match command {
        "setup" => Command::Setup,
        "ci" => Command::Ci,
        "dist" => Command::Dist(Dist {
            platforms: value("--platform")
                .map(|p| parse_platforms(&p))
                .transpose()?
                .unwrap_or_default(),
            app_version,
        }),
        "image" => Command::Image(Image {
            strategy: value("--strategy")
                .map(|s| parse_strategy(&s))
                .transpose()?
                .unwrap_or(Strategy::Multistage),
            tag: value("--tag")
                .map(|t| validate_tag(&t))
                .transpose()?
                .unwrap_or_else(|| crate::project::DEFAULT_TAG.into()),
            builder: value("--builder").map(|b| parse_builder(&b)).transpose()?,
            builder_image: value("--builder-image")
                .map(|i| validate_tag(&i))
                .transpose()?,
            runtime_image: value("--runtime-image")
                .map(|i| validate_runtime(&i))
                .transpose()?,
            compress: present("--compress"),
            smoke: present("--smoke"),
            no_cache: present("--no-cache"),
            app_version,
        }),
        "base-images" => Command::BaseImages {
            mirror: value("--mirror"),
        },
        "clean" => Command::Clean {
            all: present("--all"),
        },
        "bench" => Command::Bench {
            quick: present("--quick"),
            runs: match value("--runs") {
                None => 5,
                Some(n) => n.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    usage(format!(
                        "--runs takes a whole number of at least 1, not `{n}`"
                    ))
                })?,
            },
        },
        _ => unreachable!("checked above"),
    };
    Ok((global, command))
}

fn takes_value(flag: &str) -> bool {
    matches!(
        flag,
        "--platform"
            | "--app-version"
            | "--strategy"
            | "--tag"
            | "--builder"
            | "--builder-image"
            | "--runtime-image"
            | "--mirror"
            | "--runs"
    )
}

fn parse_strategy(s: &str) -> Result<Strategy, UsageError> {
    match s {
        "multistage" => Ok(Strategy::Multistage),
        "handoff" => Ok(Strategy::Handoff),
        "single" => Ok(Strategy::Single),
        _ => Err(usage(format!(
            "unknown strategy `{s}`; valid strategies: {}",
            STRATEGIES.join(", ")
        ))),
    }
}

fn parse_builder(s: &str) -> Result<Builder, UsageError> {
    match s {
        "buildkit" => Ok(Builder::BuildKit),
        "legacy" => Ok(Builder::Legacy),
        _ => Err(usage(format!(
            "unknown builder `{s}`; valid builders: {}",
            BUILDERS.join(", ")
        ))),
    }
}

fn parse_platforms(list: &str) -> Result<Vec<String>, UsageError> {
    let mut out: Vec<String> = Vec::new();
    for p in list.split(',').map(str::trim) {
        if !PLATFORMS.contains(&p) {
            return Err(usage(format!(
                "unknown platform `{p}`; valid platforms: {}",
                PLATFORMS.join(", ")
            )));
        }
        if !out.iter().any(|q| q == p) {
            out.push(p.to_string());
        }
    }
    Ok(out)
}

/// A version string goes into `-ldflags -X` and an image label: keep it to a safe alphabet.
fn validate_version(v: String) -> Result<String, UsageError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if ok {
        Ok(v)
    } else {
        Err(usage(format!(
            "bad --app-version `{v}`: use 1 to 128 of A-Z a-z 0-9 . _ + -"
        )))
    }
}

fn validate_runtime(image: &str) -> Result<String, UsageError> {
    if image == "scratch" {
        Ok(image.to_string())
    } else {
        validate_tag(image)
    }
}

/// Checks an image reference: `[host[:port]/]name[/name...][:tag]`, lowercase name components
/// (`a-z0-9` joined by `.`, `_`, `__` or `-`) and a tag of `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
/// Adds `:latest` when the tag is missing.
pub fn validate_tag(reference: &str) -> Result<String, UsageError> {
    let bad = |why: &str| {
        usage(format!(
            "malformed image tag `{reference}`: {why}; expected NAME[:TAG], for example {}",
            crate::project::DEFAULT_TAG
        ))
    };
    let (name, tag) = match reference.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (reference, None),
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("the name is empty or too long"));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let first = parts[0];
    let host = first.split_once(':').map_or(first, |(host, _)| host);
    let port_ok = first
        .split_once(':')
        .is_none_or(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if parts.len() > 1
        && port_ok
        && (host.contains('.') || host == "localhost" || first.contains(':'))
    {
        parts.remove(0); // a registry host: not checked further
    }
    for part in parts {
        let valid_chars = part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        let ends_ok = part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_chars || !ends_ok || part.contains("..") || part.contains("___") {
            return Err(bad(
                "name components are lowercase letters and digits joined by . _ or -",
            ));
        }
    }
    let tag = tag.unwrap_or("latest");
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !tag_ok {
        return Err(bad(
            "the tag is 1 to 128 of A-Z a-z 0-9 _ . - and starts with neither . nor -",
        ));
    }
    Ok(format!("{name}:{tag}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn image_defaults() {
        let (g, c) = parse(&args("image")).unwrap();
        assert!(!g.dry_run && !g.no_setup && !g.offline);
        match c {
            Command::Image(i) => {
                assert_eq!(i.strategy, Strategy::Multistage);
                assert_eq!(i.tag, "go-docker-prod:latest");
                assert!(!i.compress && !i.smoke && i.builder.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_anywhere_and_inline_values() {
        let (g, c) = parse(&args(
            "--offline image --strategy=handoff --tag app:v1 --dry-run --smoke",
        ))
        .unwrap();
        assert!(g.offline && g.dry_run);
        match c {
            Command::Image(i) => {
                assert_eq!(i.strategy, Strategy::Handoff);
                assert_eq!(i.tag, "app:v1");
                assert!(i.smoke);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_list_the_valid_ones() {
        let e = parse(&args("image --strategy fast"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("multistage, handoff, single"), "{e}");
        let e = parse(&args("dist --platform linux/sparc"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux/arm64"), "{e}");
        let e = parse(&args("image --builder kaniko"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("buildkit, legacy"), "{e}");
        let e = parse(&args("launch")).unwrap_err().to_string();
        assert!(e.contains("valid commands"), "{e}");
        let e = parse(&args("clean --force")).unwrap_err().to_string();
        assert!(e.contains("--all"), "{e}");
        assert!(parse(&args("bench --runs 0")).is_err());
        assert!(parse(&args("dist --app-version a;rm")).is_err());
    }

    #[test]
    fn platforms_are_deduplicated() {
        match parse(&args("dist --platform linux/arm64,linux/amd64,linux/arm64"))
            .unwrap()
            .1
        {
            Command::Dist(d) => assert_eq!(d.platforms, ["linux/arm64", "linux/amd64"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tags() {
        assert_eq!(validate_tag("app").unwrap(), "app:latest");
        assert_eq!(
            validate_tag("registry.local:5000/team/app:1.2-rc_1").unwrap(),
            "registry.local:5000/team/app:1.2-rc_1"
        );
        for bad in [
            "App:1",
            "app:",
            "app:-x",
            "-app",
            "app:a/b",
            "a..b",
            "app:tag with space",
            "",
        ] {
            assert!(validate_tag(bad).is_err(), "{bad} accepted");
        }
    }
}
