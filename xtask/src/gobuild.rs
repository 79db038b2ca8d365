//! The Go build, defined once. The same environment and flags drive the host build (`dist`) and,
//! as build args, every Dockerfile, so every path yields the same binary.

use anyhow::Result;
use camino::Utf8Path;
use xshell::cmd;

use crate::{ctx::Ctx, project};

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
pub fn version(ctx: &Ctx, flag: Option<&str>) -> String {
    if let Some(v) = flag {
        return v.to_string();
    }
    let sh = &ctx.sh;
    cmd!(sh, "git describe --tags --always --dirty")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .filter(|v| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
        })
        .unwrap_or_else(|| "dev".to_string())
}

/// The build args every Dockerfile takes from us.
pub fn docker_build_args(version: &str) -> Vec<String> {
    ENV.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain([
            format!("LDFLAGS={}", ldflags(version)),
            format!("APP_UID={}", project::APP_UID),
        ])
        .flat_map(|arg| ["--build-arg".to_string(), arg])
        .collect()
}

/// The platform's GOARCH (and GOARM) settings: `linux/arm/v7` → GOARCH=arm GOARM=7.
pub fn arch_env(platform: &str) -> Vec<(&'static str, String)> {
    let mut parts = platform.trim_start_matches("linux/").split('/');
    let arch = parts.next().unwrap_or_default().to_string();
    let mut env = vec![("GOARCH", arch)];
    if let Some(variant) = parts.next() {
        env.push(("GOARM", variant.trim_start_matches('v').to_string()));
    }
    env
}

/// The dist file name for a platform: `main-linux-arm64`, `main-linux-arm-v7`.
pub fn platform_binary(platform: &str) -> String {
    format!("{}-{}", project::BINARY, platform.replace('/', "-"))
}

/// The environment for `go` in the GOPATH workspace.
pub fn go_env(ctx: &Ctx) -> Vec<(&'static str, String)> {
    let mut env = vec![("GOPATH", ctx.paths.gopath().to_string())];
    env.extend(ENV.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// `go build` of the staged app into `out`, for `platform` (None: the host's architecture).
pub fn build(ctx: &Ctx, out: &Utf8Path, platform: Option<&str>, version: &str) -> Result<()> {
    let sh = &ctx.sh;
    let _dir = sh.push_dir(ctx.paths.stage());
    let mut env = go_env(ctx);
    env.extend(platform.map(arch_env).unwrap_or_default());
    let ldflags = ldflags(version);
    ctx.run_env(&env, cmd!(sh, "go build -ldflags {ldflags} -o {out} ."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        assert_eq!(
            arch_env("linux/arm64"),
            vec![("GOARCH", "arm64".to_string())]
        );
        assert_eq!(
            arch_env("linux/arm/v7"),
            vec![("GOARCH", "arm".to_string()), ("GOARM", "7".to_string())]
        );
        assert_eq!(platform_binary("linux/arm/v7"), "main-linux-arm-v7");
    }

    /// The Dockerfiles take every build arg we pass, and hard-code none of our flags.
    #[test]
    fn dockerfiles_take_the_build_args() {
        let docker = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker");
        for file in ["ex1.Dockerfile", "Dockerfile"] {
            let text = std::fs::read_to_string(docker.join(file)).unwrap();
            for (key, value) in ENV {
                assert!(text.contains(key), "{file} does not declare {key}");
                assert!(
                    !text.contains(&format!("{key}={value}")),
                    "{file} hard-codes {key}"
                );
            }
            assert!(
                text.contains("\"$LDFLAGS\"")
                    && text.contains("ARG LDFLAGS\n")
                    && text.contains("$APP_UID"),
                "{file}"
            );
            assert!(
                !text.contains(" -a "),
                "{file} uses -a, which defeats Go's build cache"
            );
        }
    }
}
