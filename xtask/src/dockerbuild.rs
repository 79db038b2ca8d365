//! One `docker build` invocation for every Dockerfile: builder, base images, the Go build args,
//! and the labels every image we make carries.

use anyhow::{Context, Result};
use camino::Utf8Path;
use xshell::cmd;

use crate::{
    base_images,
    ctx::Ctx,
    docker::{self, Engine},
    flags::{self, Builder},
    gobuild, project,
};

/// The Dockerfiles, in `docker/`.
pub const EX1: &str = "ex1.Dockerfile";
pub const EX2: &str = "ex2.Dockerfile";
pub const MULTISTAGE: &str = "Dockerfile";
/// The multi-stage Dockerfile's builder stage.
pub const BUILDER_STAGE: &str = "builder";

/// What every build of one `cargo xtask image` (or `dist` fallback) shares.
#[derive(Debug, Clone)]
pub struct Plan {
    pub builder: Builder,
    pub builder_image: String,
    pub runtime_image: String,
    pub version: String,
    /// The production image's tag.
    pub tag: String,
    labels: Vec<String>,
}

impl Plan {
    pub fn new(ctx: &Ctx, engine: &Engine, opts: &flags::Image, version: &str) -> Result<Plan> {
        let builder = opts.builder.unwrap_or(if engine.buildkit {
            Builder::BuildKit
        } else {
            Builder::Legacy
        });
        docker::check_builder(engine, builder)?;
        let builder_image = base_images::builder_base(ctx, opts.builder_image.as_deref())?;
        let runtime_image = base_images::runtime_base(ctx, opts.runtime_image.as_deref())?;
        let mut labels = docker::ownership_labels(ctx);
        labels.extend(oci_labels(ctx, version));
        Ok(Plan {
            builder,
            builder_image,
            runtime_image,
            version: version.to_string(),
            tag: opts.tag.clone(),
            labels,
        })
    }

    /// The plan `dist` uses when the host has no Go: defaults everywhere.
    pub fn for_dist(ctx: &Ctx, engine: &Engine, version: &str) -> Result<Plan> {
        let opts = flags::Image {
            strategy: flags::Strategy::Handoff,
            tag: project::DEFAULT_TAG.to_string(),
            builder: None,
            builder_image: None,
            runtime_image: None,
            compress: false,
            smoke: false,
            app_version: None,
        };
        Plan::new(ctx, engine, &opts, version)
    }

    /// The builder image's tag, beside the production tag: `go-docker-prod-builder:latest`.
    pub fn builder_tag(&self) -> String {
        let (name, tag) = self.tag.rsplit_once(':').unwrap_or((&self.tag, "latest"));
        format!("{name}-builder:{tag}")
    }

    /// `docker build` of `dockerfile` (in docker/) from `context`, tagged `tag`.
    pub fn build(
        &self,
        ctx: &Ctx,
        dockerfile: &str,
        target: Option<&str>,
        tag: &str,
        context: &Utf8Path,
    ) -> Result<()> {
        let file = ctx.paths.docker_dir().join(dockerfile);
        let target: Vec<&str> = target.map(|t| vec!["--target", t]).unwrap_or_default();
        let mut args = gobuild::docker_build_args(&self.version);
        for (key, value) in [
            ("BUILDER_IMAGE", &self.builder_image),
            ("RUNTIME_IMAGE", &self.runtime_image),
        ] {
            args.extend(["--build-arg".to_string(), format!("{key}={value}")]);
        }
        for label in &self.labels {
            args.extend(["--label".to_string(), label.clone()]);
        }
        let rm = if self.builder == Builder::Legacy {
            Some("--force-rm")
        } else {
            None
        };
        let buildkit = if self.builder == Builder::BuildKit {
            "1"
        } else {
            "0"
        };
        let sh = &ctx.sh;
        ctx.run_env(
            &[("DOCKER_BUILDKIT", buildkit.to_string())],
            cmd!(
                sh,
                "docker build {rm...} {target...} -t {tag} -f {file} {args...} {context}"
            ),
        )
        .with_context(|| {
            format!(
                "building {tag} from docker/{dockerfile} ({} builder)",
                self.builder
            )
        })
    }
}

/// OCI labels: source and revision from git when there is one; created is the commit's time, so
/// an unchanged commit yields an unchanged image. Never a host path.
fn oci_labels(ctx: &Ctx, version: &str) -> Vec<String> {
    let sh = &ctx.sh;
    let git = |args: &[&str]| {
        cmd!(sh, "git {args...}")
            .env("TZ", "UTC")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()
            .filter(|s| !s.is_empty())
    };
    let mut labels = vec![format!("org.opencontainers.image.version={version}")];
    labels.push(format!("org.opencontainers.image.title={}", project::APP));
    if let Some(url) = git(&["remote", "get-url", "origin"])
        .filter(|u| !u.starts_with('/') && !u.starts_with("file:"))
    {
        labels.push(format!("org.opencontainers.image.source={url}"));
    }
    labels.push(format!(
        "org.opencontainers.image.revision={}",
        git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into())
    ));
    labels.push(format!(
        "org.opencontainers.image.created={}",
        git(&[
            "log",
            "-1",
            "--date=format-local:%Y-%m-%dT%H:%M:%SZ",
            "--format=%cd"
        ])
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
    ));
    labels
}
