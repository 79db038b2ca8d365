//! The external tools each step needs, how to find them, and how to install them.

use anyhow::{bail, Result};
use camino::Utf8Path;

use crate::{ctx::Ctx, setup};

/// How we tell that a tool is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A program on `PATH`.
    OnPath(&'static str),
    /// A file a package installs.
    File(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub probe: Probe,
    /// The Debian package that brings it, and the suite when it is not the host's own.
    pub package: &'static str,
    pub suite: Option<&'static str>,
}

pub const GO: Tool = Tool {
    name: "go",
    probe: Probe::OnPath("go"),
    package: "golang-go",
    suite: None,
};
pub const GIT: Tool = Tool {
    name: "git",
    probe: Probe::OnPath("git"),
    package: "git",
    suite: None,
};
pub const DOCKER: Tool = Tool {
    name: "docker",
    probe: Probe::OnPath("docker"),
    package: "docker.io",
    suite: None,
};
/// The engine itself: a docker client alone (some machines ship one) is not enough to start one.
pub const DOCKERD: Tool = Tool {
    name: "dockerd",
    probe: Probe::OnPath("dockerd"),
    package: "docker.io",
    suite: None,
};
pub const DEBOOTSTRAP: Tool = Tool {
    name: "debootstrap",
    probe: Probe::OnPath("debootstrap"),
    package: "debootstrap",
    suite: None,
};
/// httprouter's source, which Debian ships: the air-gapped glide mirror is made from it.
pub const HTTPROUTER_SRC: Tool = Tool {
    name: "httprouter source",
    probe: Probe::File("/usr/share/gocode/src/github.com/julienschmidt/httprouter/router.go"),
    package: "golang-github-julienschmidt-httprouter-dev",
    suite: None,
};
/// Glide left Debian after bullseye; its bullseye package installs alone on bookworm.
pub const GLIDE: Tool = Tool {
    name: "glide",
    probe: Probe::OnPath("glide"),
    package: "golang-glide",
    suite: Some("bullseye"),
};
/// BuildKit for Docker CLIs from 23 on; trixie's package installs alone on bookworm.
pub const BUILDX: Tool = Tool {
    name: "docker-buildx",
    probe: Probe::File("/usr/libexec/docker/cli-plugins/docker-buildx"),
    package: "docker-buildx",
    suite: Some("trixie"),
};
/// UPX 4 from bookworm-backports (trixie's would pull a newer libc6).
pub const UPX: Tool = Tool {
    name: "upx",
    probe: Probe::OnPath("upx"),
    package: "upx-ucl",
    suite: Some("bookworm-backports"),
};

impl Tool {
    pub fn present(&self) -> bool {
        match self.probe {
            Probe::OnPath(bin) => which::which(bin).is_ok(),
            Probe::File(path) => Utf8Path::new(path).exists(),
        }
    }

    /// The apt argument: `pkg` or `pkg/suite`.
    pub fn apt_spec(&self) -> String {
        match self.suite {
            Some(suite) => format!("{}/{suite}", self.package),
            None => self.package.to_string(),
        }
    }

    /// What to tell a user who lacks the tool.
    pub fn install_hint(&self) -> String {
        let apt = match self.suite {
            None => format!("apt-get install {}", self.package),
            Some(suite) => format!(
                "apt-get install {} (with Debian's {suite} suite added and pinned low)",
                self.apt_spec()
            ),
        };
        format!("run `cargo xtask setup` (as root on Debian/Ubuntu), or install it yourself: {apt}")
    }
}

/// Makes sure every tool in `tools` is there: missing ones are installed (announced) unless
/// `--no-setup` or the system cannot be provisioned, in which case the first missing one is named.
pub fn require(ctx: &Ctx, tools: &[Tool]) -> Result<()> {
    let missing: Vec<Tool> = tools.iter().copied().filter(|t| !t.present()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !ctx.global.no_setup && !ctx.global.dry_run {
        if let Some(reason) = setup::cannot_provision() {
            ctx.announce(format!("cannot install {} here: {reason}", names(&missing)));
        } else {
            setup::install(ctx, &missing)?;
            if let Some(still) = missing.iter().find(|t| !t.present()) {
                bail!(
                    "`{}` is still missing after installing {}",
                    still.name,
                    still.apt_spec()
                );
            }
            return Ok(());
        }
    }
    let first = missing[0];
    bail!(
        "`{}` not found{}: {}",
        first.name,
        where_looked(first),
        first.install_hint()
    )
}

/// Installs an optional tool when it is missing and we may; never fails.
pub fn offer(ctx: &Ctx, tool: Tool) {
    if !tool.present()
        && !ctx.global.no_setup
        && !ctx.global.dry_run
        && setup::cannot_provision().is_none()
    {
        if let Err(e) = setup::install(ctx, &[tool]) {
            ctx.announce(format!(
                "{} not installed ({e:#}): going on without it",
                tool.name
            ));
        }
    }
}

fn where_looked(tool: Tool) -> String {
    match tool.probe {
        Probe::OnPath(_) => " on PATH".to_string(),
        Probe::File(path) => format!(" ({path} is missing)"),
    }
}

pub fn names(tools: &[Tool]) -> String {
    tools.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
}
