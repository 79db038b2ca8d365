//! One `docker build` invocation for every Dockerfile: builder, base images, the Go build args,
//! and the values of the labels every image we make carries (the Dockerfiles set them in one
//! LABEL instruction: the legacy builder would make a step of every `--label`).

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
/// The multi-stage Dockerfile's builder stage, and its `LABEL_STAGE` value.
pub const BUILDER_STAGE: &str = "builder";

/// What every build of one `cargo xtask image` (or `dist` fallback) shares.
#[derive(Debug, Clone)]
pub struct Plan {
    pub builder: Builder,
    pub builder_image: String,
    /// The production image's tag.
    pub tag: String,
    /// `--no-cache`: a cold build.
    pub no_cache: bool,
    /// `--build-arg` values: the Go build's, the base images', the labels'.
    build_args: Vec<String>,
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
        let mut build_args = gobuild::docker_build_args(version);
        let values = [
            ("BUILDER_IMAGE", builder_image.clone()),
            ("RUNTIME_IMAGE", runtime_image),
        ]
        .into_iter()
        .chain(label_values(ctx, version));
        for (key, value) in values {
            build_args.extend(["--build-arg".to_string(), format!("{key}={value}")]);
        }
        Ok(Plan {
            builder,
            builder_image,
            tag: opts.tag.clone(),
            no_cache: opts.no_cache,
            build_args,
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
            no_cache: false,
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
    pub fn build(&self, ctx: &Ctx, dockerfile: &str, tag: &str, context: &Utf8Path) -> Result<()> {
        let file = ctx.paths.docker_dir().join(dockerfile);
        let no_cache = if self.no_cache {
            Some("--no-cache")
        } else {
            None
        };
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
        let args = &self.build_args;
        let sh = &ctx.sh;
        ctx.run_env(
            &[("DOCKER_BUILDKIT", buildkit.to_string())],
            cmd!(
                sh,
                "docker build {rm...} {no_cache...} -t {tag} -f {file} {args...} {context}"
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

/// The label values the Dockerfiles take: the OCI labels (source and revision from git when
/// there is one; created is the commit's time, so an unchanged commit yields an unchanged image;
/// never a host path) and this checkout's id.
fn label_values(ctx: &Ctx, version: &str) -> Vec<(&'static str, String)> {
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
    let source = git(&["remote", "get-url", "origin"])
        .filter(|u| !u.starts_with('/') && !u.starts_with("file:"));
    let commit = git(&[
        "log",
        "-1",
        "--date=format-local:%Y-%m-%dT%H:%M:%SZ",
        "--format=%H %cd",
    ]);
    let (revision, created) = commit
        .as_deref()
        .and_then(|c| c.split_once(' '))
        .unwrap_or(("unknown", "1970-01-01T00:00:00Z"));
    vec![
        ("VERSION", version.to_string()),
        ("REVISION", revision.to_string()),
        ("CREATED", created.to_string()),
        ("SOURCE", source.unwrap_or_default()),
        ("CHECKOUT", ctx.paths.checkout_id()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Dockerfiles spell our label keys as `project` does, and label every stage from its
    /// first step on.
    #[test]
    fn dockerfiles_carry_our_labels() {
        let docker = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker");
        for (file, stages) in [(EX1, 1), (EX2, 1), (MULTISTAGE, 2)] {
            let text = std::fs::read_to_string(docker.join(file)).unwrap();
            let count = |needle: &str| text.matches(needle).count();
            // In each stage's first step, and with the other labels at its end.
            assert_eq!(
                count(&format!(
                    "LABEL {}={}\n",
                    project::LABEL_PROJECT,
                    project::APP
                )),
                stages,
                "{file}"
            );
            assert_eq!(
                count(&format!("{}={}", project::LABEL_PROJECT, project::APP)),
                2 * stages,
                "{file}"
            );
            assert_eq!(
                count(&format!("{}=$CHECKOUT", project::LABEL_CHECKOUT)),
                stages,
                "{file}"
            );
            assert_eq!(
                count(&format!("{}=", project::LABEL_STAGE)),
                stages,
                "{file}"
            );
            for key in ["VERSION", "REVISION", "CREATED", "SOURCE"] {
                assert!(
                    text.contains(&format!(
                        "org.opencontainers.image.{}=${key}",
                        key.to_lowercase()
                    )),
                    "{file}"
                );
            }
        }
    }
}
