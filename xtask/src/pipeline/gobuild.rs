//! The Go build, defined once. The same environment and flags drive the host build (`dist`) and,
//! as build args, every Dockerfile, so every path yields the same binary.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::{
    cmd,
    domain::Platform,
    infra::{ctx::Ctx, git, process::Running, tools::Go},
    pipeline::app::{self, App},
    project::{self, Paths},
};

/// How the app's dependencies are managed, read from the app itself: a `go.mod` in go-app/ means
/// module mode with the dependencies in `vendor/` (committed); otherwise GOPATH mode with Glide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Gopath,
    Modules,
}

impl Mode {
    /// The mode of the checkout at `paths`.
    pub fn of(paths: &Paths) -> Mode {
        Mode::at(&paths.root)
    }

    /// The mode of the checkout whose root is `root`.
    pub fn at(root: &Utf8Path) -> Mode {
        if root.join("go-app/go.mod").is_file() {
            Mode::Modules
        } else {
            Mode::Gopath
        }
    }

    /// Where `go` runs on the host: the GOPATH workspace's copy (at the app's import path), or
    /// go-app/ itself.
    pub fn app_dir(self, paths: &Paths, app: &App) -> Utf8PathBuf {
        match self {
            Mode::Gopath => paths.gopath_app(&app.import_path),
            Mode::Modules => paths.go_app(),
        }
    }

    /// Static, no paths or VCS stamps in the binary, built by the Go that was found and no other
    /// toolchain (what `Go::version` says is what builds); GOPATH mode from glide's vendor/, or
    /// module mode from vendor/ with no network.
    pub fn env(self) -> Vec<(&'static str, &'static str)> {
        let common = [
            ("CGO_ENABLED", "0"),
            ("GOOS", "linux"),
            ("GOTOOLCHAIN", "local"),
        ];
        let mode: [(&str, &str); 3] = match self {
            Mode::Gopath => [
                ("GO111MODULE", "off"),
                ("GOFLAGS", "-trimpath -buildvcs=false"),
                ("GOPROXY", ""),
            ],
            Mode::Modules => [
                ("GO111MODULE", "on"),
                ("GOFLAGS", "-mod=vendor -trimpath -buildvcs=false"),
                ("GOPROXY", "off"),
            ],
        };
        let mut env: Vec<_> = common.into_iter().chain(mode).collect();
        env.retain(|(_, v)| !v.is_empty());
        env
    }

    /// What the Dockerfiles build before the app's sources are copied (the layer that survives an
    /// edit), and with which GOFLAGS: the vendored packages (GOPATH mode) or, without go.mod yet,
    /// the standard library the app uses (module mode).
    pub fn prebuild(self) -> [(&'static str, &'static str); 2] {
        match self {
            Mode::Gopath => [
                ("PREBUILD", "./vendor/... os/signal"),
                ("PREBUILD_GOFLAGS", "-trimpath -buildvcs=false"),
            ],
            Mode::Modules => [
                ("PREBUILD", "net/http os/signal"),
                ("PREBUILD_GOFLAGS", "-trimpath -buildvcs=false"),
            ],
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Gopath => "GOPATH mode (Glide)",
            Mode::Modules => "module mode (vendor/)",
        })
    }
}

/// Stripped, no build ID.
pub const STRIP: &str = "-s -w -buildid=";

/// Stripped, no build ID, the version stamped into `main.version`.
pub fn ldflags(version: &str) -> String {
    format!("{STRIP} -X main.version={version}")
}

/// How the HTTP health check (`docker/healthcheck/main.go`, standard library only) is built, on
/// the host and in the builder stages alike: one file, GOPATH mode, wherever it sits. `ldflags`
/// is `STRIP`; the rest of the environment is the app's.
pub const HEALTHCHECK_ENV: [(&str, &str); 2] = [
    ("GO111MODULE", "off"),
    ("GOFLAGS", "-trimpath -buildvcs=false"),
];

/// The version to stamp: the flag, else `git describe`, else "dev".
pub fn version(ctx: &Ctx, root: &Utf8Path, flag: Option<&str>) -> String {
    if let Some(flag) = flag {
        return flag.to_string();
    }
    let Some(described) = git::describe(ctx, root) else {
        return "dev".to_string();
    };
    let version = sanitize_version(&described);
    if version != described {
        ctx.warn(format!(
            "`git describe` says `{described}`, which labels and `-X` cannot take as it is: the \
             version is `{version}` (or pass --app-version)"
        ));
    }
    version
}

/// A version as labels, image tags and `-X main.version=` take it, the same everywhere: letters,
/// digits and `._+-`, every other character `-`, at most 128.
pub fn sanitize_version(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    if clean.is_empty() {
        "dev".into()
    } else {
        clean
    }
}

/// The build args every Dockerfile takes from us: the Go build's, the app's (its import path, main
/// packages, binaries, extra files) and the runtime files'. Every Go variable is passed, empty
/// where the mode sets none.
pub fn docker_build_args(mode: Mode, app: &App, version: &str) -> Vec<(&'static str, String)> {
    let env = mode.env();
    let value = |key: &str| {
        env.iter()
            .find(|(k, _)| *k == key)
            .map_or(String::new(), |(_, v)| v.to_string())
    };
    GO_VARIABLES
        .iter()
        .map(|k| (*k, value(k)))
        .chain(mode.prebuild().map(|(k, v)| (k, v.to_string())))
        .chain([
            ("IMPORT_PATH", app.import_path.clone()),
            ("GO_OUT", output("/out", app, None)),
            ("GO_PACKAGES", packages(app).join(" ")),
            (
                "BINARIES",
                app.binaries()
                    .map(|b| format!("/out/{b}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            ("FILES", app.files.join(" ")),
            ("DATA_DIR", app::DATA_DIR.to_string()),
            ("LDFLAGS", ldflags(version)),
            ("APP_UID", project::APP_UID.to_string()),
            ("PASSWD", project::passwd()),
            ("GROUP", project::group()),
        ])
        .collect()
}

/// Every variable `Mode::env` may set: each Dockerfile declares them all.
pub const GO_VARIABLES: [&str; 6] = [
    "GO111MODULE",
    "CGO_ENABLED",
    "GOOS",
    "GOFLAGS",
    "GOPROXY",
    "GOTOOLCHAIN",
];

/// The platform's GOARCH (and GOARM) settings: `linux/arm/v7` → GOARCH=arm GOARM=7.
pub fn arch_env(platform: Platform) -> Vec<(&'static str, String)> {
    let mut env = vec![("GOARCH", platform.arch.to_string())];
    if let Some(variant) = platform.variant {
        env.push(("GOARM", variant.trim_start_matches('v').to_string()));
    }
    env
}

/// The dist file name of `binary` for a platform: `main-linux-arm64`, `main-linux-arm-v7`.
pub fn platform_binary(binary: &str, platform: Platform) -> String {
    format!("{binary}-{}", platform.to_string().replace('/', "-"))
}

/// The main packages as `go build` takes them: `./src`, `./cmd/api`, `.`.
fn packages(app: &App) -> Vec<String> {
    app.mains
        .iter()
        .map(|m| {
            if m.dir == "." {
                ".".to_string()
            } else {
                format!("./{}", m.dir)
            }
        })
        .collect()
}

/// `go build -o`'s value in `dir`: the one binary's path (for `platform`: `NAME-linux-arm64`), or,
/// for several main packages, the directory (`dir/`: Go names each binary by its package's
/// directory).
fn output(dir: &str, app: &App, platform: Option<Platform>) -> String {
    match (app.mains.as_slice(), platform) {
        ([one], None) => format!("{dir}/{}", one.binary),
        ([one], Some(p)) => format!("{dir}/{}", platform_binary(&one.binary, p)),
        _ => format!("{dir}/"),
    }
}

/// The environment for `go` on the host, in the checkout at `paths` (GOPATH: its workspace under
/// target/, where module mode keeps nothing it needs).
pub fn go_env(go: &Go, paths: &Paths) -> Vec<(&'static str, String)> {
    let mode = Mode::of(paths);
    let mut env = vec![
        ("PATH", go.path_env()),
        ("GOPATH", paths.gopath().to_string()),
    ];
    env.extend(mode.env().into_iter().map(|(k, v)| (k, v.to_string())));
    env.extend(PINNED.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// The environment for `go` on the health check's source: the app's, in GOPATH mode.
pub fn healthcheck_env(go: &Go, paths: &Paths) -> Vec<(&'static str, String)> {
    let mut env = go_env(go, paths);
    env.retain(|(k, _)| !HEALTHCHECK_ENV.iter().any(|(h, _)| h == k));
    env.extend(HEALTHCHECK_ENV.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// Starts `go build` of the HTTP health check into `out` (named `healthcheck`, or for
/// `platform` `healthcheck-linux-arm64`), as `start` builds the app: `wait` for it.
pub fn start_healthcheck(
    ctx: &Ctx,
    go: &Go,
    paths: &Paths,
    out: &Utf8Path,
    platform: Option<Platform>,
) -> Result<Running> {
    let mut env = healthcheck_env(go, paths);
    env.extend(arch_env(platform.unwrap_or_else(Platform::host)));
    let name = app::HEALTHCHECK_BINARY;
    let output = out.join(platform.map_or(name.to_string(), |p| platform_binary(name, p)));
    ctx.start(
        cmd!("go build -ldflags {STRIP} -o {output} main.go")
            .envs(&env)
            .dir(paths.healthcheck_source()),
    )
}

/// What the user's environment (or `go env -w`'s file) could set to change the binary on the
/// host, set to Go's defaults (`start` sets GOARCH: the platform asked for, else the host's).
/// The builder images have no such settings.
const PINNED: [(&str, &str); 7] = [
    ("GOENV", "off"),
    ("GOWORK", "off"),
    ("GOAMD64", "v1"),
    ("GOARM64", "v8.0"),
    ("GO386", "sse2"),
    ("GOEXPERIMENT", ""),
    ("GOFIPS140", "off"),
];

/// Starts `go build` of the checkout's app (its main packages, `app`) into the directory `out`,
/// each binary named as the contract says, for `platform` (None: the host's architecture; then
/// named `NAME-linux-arm64`). It runs in the background (the xtask can ask the engine meanwhile):
/// `wait` for it.
pub fn start(
    ctx: &Ctx,
    go: &Go,
    paths: &Paths,
    app: &App,
    out: &Utf8Path,
    platform: Option<Platform>,
    version: &str,
) -> Result<Running> {
    if app.mains.len() > 1 && platform.is_some() {
        // `-o DIR/` names each binary by its directory, without the platform.
        anyhow::bail!("a build for a platform takes one main package (App::each_main)");
    }
    let mut env = go_env(go, paths);
    // The target is the platform asked for, else this host: never the shell's GOARCH.
    env.extend(arch_env(platform.unwrap_or_else(Platform::host)));
    let ldflags = ldflags(version);
    let dir = Mode::of(paths).app_dir(paths, app);
    let output = output(out.as_str(), app, platform);
    let packages = packages(app);
    ctx.start(
        cmd!("go build -ldflags {ldflags} -o {output} {packages...}")
            .envs(&env)
            .dir(dir),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_tag_becomes_a_version_labels_take() {
        assert_eq!(
            sanitize_version("v1.2.0-3-gabc-dirty"),
            "v1.2.0-3-gabc-dirty"
        );
        assert_eq!(sanitize_version("release/1.2.0"), "release-1.2.0");
        assert_eq!(sanitize_version("v1 ü"), "v1--");
        assert_eq!(sanitize_version(&"x".repeat(300)).len(), 128);
        assert!(sanitize_version("release/1.2.0")
            .parse::<crate::domain::Version>()
            .is_ok());
    }

    #[test]
    fn platforms() {
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let armv7: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(arch_env(arm64), vec![("GOARCH", "arm64".to_string())]);
        assert_eq!(
            arch_env(armv7),
            vec![("GOARCH", "arm".to_string()), ("GOARM", "7".to_string())]
        );
        assert_eq!(platform_binary("main", armv7), "main-linux-arm-v7");
    }
}
