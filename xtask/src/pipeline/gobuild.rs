//! The Go build, defined once. The same environment and flags drive the host build (`dist`) and,
//! as build args, every Dockerfile, so every path yields the same binary.

use anyhow::Result;
use camino::Utf8Path;

use crate::{
    cmd,
    domain::Platform,
    infra::{ctx::Ctx, git, process::Running, tools::Go},
    project,
};

/// GOPATH mode from glide's vendor/, static, no paths or VCS stamps in the binary.
pub const ENV: [(&str, &str); 4] = [
    ("GO111MODULE", "off"),
    ("CGO_ENABLED", "0"),
    ("GOOS", "linux"),
    ("GOFLAGS", "-trimpath -buildvcs=false"),
];

/// Stripped, no build ID, the version stamped into `main.version`.
pub fn ldflags(version: &str) -> String {
    format!("-s -w -buildid= -X main.version={version}")
}

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

/// The build args every Dockerfile takes from us: the Go build's and the runtime files'.
pub fn docker_build_args(version: &str) -> Vec<(&'static str, String)> {
    ENV.iter()
        .map(|(k, v)| (*k, v.to_string()))
        .chain([
            ("LDFLAGS", ldflags(version)),
            ("APP_UID", project::APP_UID.to_string()),
            ("PASSWD", project::passwd()),
            ("GROUP", project::group()),
        ])
        .collect()
}

/// The platform's GOARCH (and GOARM) settings: `linux/arm/v7` → GOARCH=arm GOARM=7.
pub fn arch_env(platform: Platform) -> Vec<(&'static str, String)> {
    let mut env = vec![("GOARCH", platform.arch.to_string())];
    if let Some(variant) = platform.variant {
        env.push(("GOARM", variant.trim_start_matches('v').to_string()));
    }
    env
}

/// The dist file name for a platform: `main-linux-arm64`, `main-linux-arm-v7`.
pub fn platform_binary(platform: Platform) -> String {
    format!(
        "{}-{}",
        project::BINARY,
        platform.to_string().replace('/', "-")
    )
}

/// The environment for `go` in the GOPATH workspace.
pub fn go_env(go: &Go, gopath: &Utf8Path) -> Vec<(&'static str, String)> {
    let mut env = vec![("PATH", go.path_env()), ("GOPATH", gopath.to_string())];
    env.extend(ENV.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// Starts `go build` of the app in `app_dir` (inside `gopath`) into `out`, for `platform` (None:
/// the host's architecture). It runs in the background (the xtask can ask the engine meanwhile):
/// `wait` for it.
pub fn start(
    ctx: &Ctx,
    go: &Go,
    gopath: &Utf8Path,
    app_dir: &Utf8Path,
    out: &Utf8Path,
    platform: Option<Platform>,
    version: &str,
) -> Result<Running> {
    let mut env = go_env(go, gopath);
    env.extend(platform.map(arch_env).unwrap_or_default());
    let ldflags = ldflags(version);
    ctx.start(
        cmd!("go build -ldflags {ldflags} -o {out} .")
            .envs(&env)
            .dir(app_dir),
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
        assert_eq!(platform_binary(armv7), "main-linux-arm-v7");
    }
}
