//! The external tools the pipeline needs: how to find them, which Debian package brings them, and
//! what to tell a user who lacks one. Installing goes through `apt`.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::{
    cmd,
    infra::{apt, ctx::Ctx},
    project,
};

/// How we tell that a tool is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A program on `PATH`.
    OnPath(&'static str),
    /// A file a package installs.
    File(&'static str),
    /// A program that must run with these arguments (a version too old fails them).
    Runs(&'static str, &'static [&'static str]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub probe: Probe,
    /// The Debian package that brings it.
    pub package: &'static str,
    /// The Debian suite to take it from when the host's own suites lack it.
    pub suite: Option<&'static str>,
    /// Packages apt may install along with it (and nothing else).
    pub companions: &'static [&'static str],
    /// Taken from `suite` even where the host's suites have the package (theirs is too old).
    pub suite_only: bool,
    /// What a user on another system does.
    pub elsewhere: &'static str,
}

const fn tool(
    name: &'static str,
    probe: Probe,
    package: &'static str,
    elsewhere: &'static str,
) -> Tool {
    Tool {
        name,
        probe,
        package,
        suite: None,
        companions: &[],
        suite_only: false,
        elsewhere,
    }
}

pub const DOCKER: Tool = tool(
    "docker",
    Probe::OnPath("docker"),
    "docker.io",
    "install Docker Engine from your distribution or docs.docker.com",
);
/// The engine itself: a docker client alone (some machines ship one) cannot start one.
pub const DOCKERD: Tool = tool(
    "dockerd",
    Probe::OnPath("dockerd"),
    "docker.io",
    "install Docker Engine from your distribution or docs.docker.com",
);
pub const GIT: Tool = tool(
    "git",
    Probe::OnPath("git"),
    "git",
    "install git from your distribution",
);
pub const MMDEBSTRAP: Tool = tool(
    "mmdebstrap",
    Probe::OnPath("mmdebstrap"),
    "mmdebstrap",
    "install mmdebstrap (Debian/Ubuntu), or pull the official builder image instead",
);
/// newuidmap/newgidmap: mmdebstrap's unshare mode as an ordinary user.
pub const UIDMAP: Tool = tool(
    "newuidmap",
    Probe::File("/usr/bin/newuidmap"),
    "uidmap",
    "install uidmap (shadow's newuidmap) from your distribution",
);
/// httprouter's source, which Debian ships: the air-gapped glide mirror is made from it.
pub const HTTPROUTER_SRC: Tool = tool(
    "httprouter source",
    Probe::File("/usr/share/gocode/src/github.com/julienschmidt/httprouter/router.go"),
    "golang-github-julienschmidt-httprouter-dev",
    "online, glide fetches httprouter from GitHub and needs no mirror",
);
/// The Go line we build with (`go` stays whatever the user has on PATH).
pub const GO: Tool = Tool {
    name: "go",
    probe: Probe::File(project::GO_BIN),
    package: project::GO_PACKAGE,
    suite: Some("trixie-backports"),
    companions: &[project::GO_SRC_PACKAGE],
    suite_only: false,
    elsewhere: "install a supported Go from go.dev/dl (or your distribution) and put it on PATH",
};
/// Glide left Debian after bullseye (and came back in trixie); bullseye's installs alone on bookworm.
pub const GLIDE: Tool = Tool {
    suite: Some("bullseye"),
    ..tool(
        "glide",
        Probe::OnPath("glide"),
        "golang-glide",
        "install glide v0.13 from github.com/Masterminds/glide/releases",
    )
};
/// BuildKit for Docker CLIs from 23 on (optional: without it, the legacy builder).
pub const BUILDX: Tool = Tool {
    suite: Some("trixie"),
    ..tool(
        "docker-buildx",
        Probe::File("/usr/libexec/docker/cli-plugins/docker-buildx"),
        "docker-buildx",
        "install the buildx plugin from your distribution or docs.docker.com",
    )
};
/// UPX 4 (optional: only `--compress` needs it).
pub const UPX: Tool = Tool {
    suite: Some("bookworm-backports"),
    ..tool(
        "upx",
        Probe::OnPath("upx"),
        "upx-ucl",
        "install upx from your distribution or upx.github.io",
    )
};

/// Publishing: skopeo pushes images, oras attaches SBOMs and provenance, cosign signs.
pub const SKOPEO: Tool = tool(
    "skopeo",
    Probe::OnPath("skopeo"),
    "skopeo",
    "install skopeo from your distribution",
);
pub const ORAS: Tool = Tool {
    suite: Some("trixie"),
    ..tool(
        "oras",
        Probe::OnPath("oras"),
        "oras",
        "install oras from your distribution or oras.land",
    )
};
pub const COSIGN: Tool = Tool {
    suite: Some("trixie"),
    ..tool(
        "cosign",
        Probe::OnPath("cosign"),
        "cosign",
        "install cosign from your distribution or docs.sigstore.dev",
    )
};
/// `audit`: the Go vulnerability checker, 1.0 or newer (bookworm's 2023 snapshot lacks `-mode`):
/// trixie's, even where the host's suites have one.
pub const GOVULNCHECK: Tool = Tool {
    suite: Some("trixie"),
    suite_only: true,
    ..tool(
        "govulncheck",
        Probe::Runs("govulncheck", &["-version"]),
        "govulncheck",
        "install govulncheck from your distribution, or `go install golang.org/x/vuln/cmd/govulncheck@latest`",
    )
};

/// Everything the pipeline and its tests use, in install order.
pub const ALL: [Tool; 14] = [
    DOCKER,
    DOCKERD,
    GIT,
    MMDEBSTRAP,
    UIDMAP,
    HTTPROUTER_SRC,
    GO,
    GLIDE,
    BUILDX,
    UPX,
    SKOPEO,
    ORAS,
    COSIGN,
    GOVULNCHECK,
];
/// What only the tests use besides: a registry to push to, Podman serving the Docker API.
pub const TEST_ONLY: [Tool; 3] = [REGISTRY, HTPASSWD, PODMAN];
/// Podman, whose `podman system service` serves the Docker API (the tests' third engine).
pub const PODMAN: Tool = tool(
    "podman",
    Probe::OnPath("podman"),
    "podman",
    "install podman from your distribution",
);
/// htpasswd, for the registry with authentication.
pub const HTPASSWD: Tool = tool(
    "htpasswd",
    Probe::OnPath("htpasswd"),
    "apache2-utils",
    "install apache2-utils",
);
/// Debian's registry.
pub const REGISTRY: Tool = tool(
    "docker-registry",
    Probe::OnPath("docker-registry"),
    "docker-registry",
    "install the CNCF distribution registry",
);

impl Tool {
    /// What apt needs to know of it.
    pub fn debian(&self) -> apt::Package {
        apt::Package {
            name: self.name,
            package: self.package,
            suite: self.suite,
            companions: self.companions,
            suite_only: self.suite_only,
            elsewhere: self.elsewhere,
        }
    }

    pub fn present(&self) -> bool {
        match self.probe {
            Probe::OnPath(bin) => which::which(bin).is_ok(),
            Probe::File(path) => Utf8Path::new(path).exists(),
            Probe::Runs(bin, args) => std::process::Command::new(bin)
                .args(args.iter())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }

    /// What to tell a user who lacks the tool.
    pub fn install_hint(&self) -> String {
        format!(
            "run `cargo xtask setup` (Debian and Ubuntu; it uses sudo when you are not root), or {}",
            self.elsewhere
        )
    }
}

/// What apt needs to know of `tools`.
pub fn debian(tools: &[Tool]) -> Vec<apt::Package> {
    tools.iter().map(Tool::debian).collect()
}

/// Makes sure every tool in `tools` is there. Missing ones are installed (announced) when we may
/// (root on Debian/Ubuntu, not `--no-setup`); otherwise the first missing one is named with the fix.
pub fn require(ctx: &Ctx, tools: &[Tool]) -> Result<()> {
    let missing: Vec<Tool> = tools.iter().copied().filter(|t| !t.present()).collect();
    let Some(first) = missing.first().copied() else {
        return Ok(());
    };
    if !ctx.no_setup && apt::may_install_unasked() {
        ctx.announce(format!("{} missing: installing", names(&missing)));
        apt::install(ctx, &debian(&missing))?;
        if let Some(still) = missing.iter().find(|t| !t.present()) {
            bail!(
                "`{}` is still missing after installing {}",
                still.name,
                still.package
            );
        }
        return Ok(());
    }
    let looked = match first.probe {
        Probe::OnPath(_) => " on PATH".to_string(),
        Probe::File(path) => format!(" ({path} is missing)"),
        Probe::Runs(bin, args) => format!(" (`{bin} {}` must run: too old?)", args.join(" ")),
    };
    bail!(
        "`{}` not found{looked}: {}",
        first.name,
        first.install_hint()
    )
}

pub fn names(tools: &[Tool]) -> String {
    tools.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
}

/// The Go toolchain the host build (and glide, which asks `go` for its environment) uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Go {
    /// The directory holding `go` and `gofmt`: put first on PATH for every Go step.
    pub bin: Utf8PathBuf,
    /// `go1.27.4`.
    pub version: String,
}

impl Go {
    /// The Go to use: `go` on PATH when it is a supported line, else Debian's Go 1.27 (installed
    /// when missing and we may), else an old `go` on PATH with a warning.
    pub fn find(ctx: &Ctx) -> Result<Go> {
        let on_path = which::which("go")
            .ok()
            .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
            .and_then(|p| Go::at(ctx, &p));
        if let Some(go) = on_path.as_ref().filter(|g| g.supported()) {
            return Ok(go.clone());
        }
        let debian = Utf8PathBuf::from(project::GO_BIN);
        if !debian.exists() && (on_path.is_none() || (!ctx.no_setup && apt::may_install_unasked()))
        {
            require(ctx, &[GO])?;
        }
        if let Some(go) = Go::at(ctx, &debian) {
            return Ok(go);
        }
        let go = on_path.context("no Go found")?;
        ctx.warn(format!(
            "{} is out of support (supported: Go {}.{} and newer); builds use it, but `cargo xtask setup` \
             installs Go {}",
            go.version,
            project::OLDEST_SUPPORTED_GO.0,
            project::OLDEST_SUPPORTED_GO.1,
            project::GO_LINE
        ));
        Ok(go)
    }

    fn at(ctx: &Ctx, go: &Utf8Path) -> Option<Go> {
        // Resolve symlinks (/usr/bin/go → /usr/lib/go-1.19/bin/go): gofmt sits beside the real one.
        let real = go.canonicalize_utf8().ok()?;
        let bin = real.parent()?.to_path_buf();
        // The release's VERSION file, beside bin/, says what `go version` would, without running
        // Go (every build pins GOTOOLCHAIN=local: no other toolchain builds); else Go is asked.
        let version = match bin
            .parent()
            .map(|root| std::fs::read_to_string(root.join("VERSION")))
        {
            Some(Ok(file)) if file.starts_with("go") => file.lines().next()?.trim().to_string(),
            _ => ctx
                .try_read(cmd!("{go} version"))?
                .split_whitespace()
                .nth(2)?
                .to_string(),
        };
        Some(Go { bin, version })
    }

    /// (major, minor) of `go1.27.4`.
    pub fn line(&self) -> Option<(u32, u32)> {
        let mut parts = self.version.trim_start_matches("go").split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    pub fn supported(&self) -> bool {
        self.line()
            .is_some_and(|l| l >= project::OLDEST_SUPPORTED_GO)
    }

    /// PATH with this Go first.
    pub fn path_env(&self) -> String {
        let rest = std::env::var("PATH").unwrap_or_default();
        format!("{}:{rest}", self.bin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_lines() {
        let go = |v: &str| Go {
            bin: "/x".into(),
            version: v.into(),
        };
        assert_eq!(go("go1.27.4").line(), Some((1, 27)));
        assert!(go("go1.27.4").supported() && go("go1.26.0").supported());
        assert!(!go("go1.19.8").supported());
    }
}
