//! One `docker build` for every Dockerfile: the builder (BuildKit or legacy, `--load` for a buildx
//! builder of its own), the base images, the Go build args and the label values (the Dockerfiles
//! set them in one LABEL instruction: the legacy builder would make a step of every `--label`).
//! The image ID comes back through `--iidfile`; no build tags: the caller moves a tag once the image
//! is wanted (`record`).

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::{
    cmd,
    domain::{Builder, Digest},
    infra::{
        apt,
        ctx::Ctx,
        docker::{self, BuildKit, Engine},
        fsx, tools,
    },
    pipeline::{
        app::{self, App},
        gobuild,
        meta::Meta,
        record::{self, Record},
    },
    project::{self, Paths},
};

/// The product's Dockerfiles, in `docker/`.
pub const EX1: &str = "ex1.Dockerfile";
pub const EX2: &str = "ex2.Dockerfile";
pub const MULTISTAGE: &str = "Dockerfile";

/// The line of our Dockerfiles that the app's settings replace, then the root of its binaries.
const SETTINGS: &str = "#xtask:settings ";
/// Where an app's build context holds the HTTP health check's source, when its image ships it
/// (Go passes over a directory whose name starts with `.`).
const HEALTHCHECK_SOURCE: &str = ".xtask/healthcheck";

/// What every `docker build` of one run shares.
#[derive(Debug, Clone)]
pub struct Plan {
    pub builder: Builder,
    buildkit: Option<BuildKit>,
    pub no_cache: bool,
    /// `--build-arg` values.
    args: Vec<(String, String)>,
    /// The app our Dockerfiles are rendered for (None: the bench's fixtures, taken as they are).
    app: Option<App>,
}

/// What a build sends: go-app/ (copied without the app's own .dockerignore, which might hide
/// vendor/ or sources the build needs), the runtime files the dist handoff left in dist/ (its
/// binaries, etc/ and the app's files, without SHA256SUMS), or a directory as it is.
pub enum BuildContext<'a> {
    App,
    Runtime,
    Dir(&'a Utf8Path),
}

impl Plan {
    /// Our Dockerfiles: the Go build's args, the base images, the labels' values.
    pub fn new(
        builder: Builder,
        buildkit: Option<BuildKit>,
        no_cache: bool,
        meta: &Meta,
        runtime_image: &str,
    ) -> Plan {
        let args = gobuild::docker_build_args(meta.mode, &meta.app, &meta.version)
            .into_iter()
            .chain([
                ("BUILDER_IMAGE", meta.builder_base.clone()),
                ("RUNTIME_IMAGE", runtime_image.to_string()),
            ])
            .chain(meta.build_args())
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        Plan {
            builder,
            buildkit,
            no_cache,
            args,
            app: Some(meta.app.clone()),
        }
    }

    /// A Dockerfile that takes only the builder base (the bench's fixtures, which label their
    /// images themselves).
    pub fn fixture(
        builder: Builder,
        buildkit: Option<BuildKit>,
        no_cache: bool,
        base: &str,
    ) -> Plan {
        let args = vec![("BUILDER_IMAGE".into(), base.into())];
        Plan {
            builder,
            buildkit,
            no_cache,
            args,
            app: None,
        }
    }

    /// One of our Dockerfiles, by name.
    pub fn dockerfile(paths: &Paths, name: &str) -> camino::Utf8PathBuf {
        paths.docker_dir().join(name)
    }

    /// `docker build` of `dockerfile` (its stage `target`, else the last) from `context`: the new
    /// image's ID (None under `--dry-run`), untagged and on `record`. The record notes the build
    /// before it starts, and the build labels its images with that note (`record::build_label`).
    pub fn build(
        &self,
        ctx: &Ctx,
        record: &mut Record,
        dockerfile: &Utf8Path,
        target: Option<&str>,
        context: BuildContext,
    ) -> Result<Option<String>> {
        let paths = &ctx.paths;
        let (dockerfile, context) = self.prepare(ctx, dockerfile, context)?;
        let (build, heartbeat) = record.intend_build(ctx)?;
        let mut extra = vec!["--label".to_string(), record::build_label(&build)];
        if let Some(target) = target {
            extra.extend(["--target".to_string(), target.to_string()]);
        }
        let built = self.docker_build(ctx, &paths.xtask_dir(), &dockerfile, &extra, &context);
        record.build_ended(ctx, &build)?;
        drop(heartbeat);
        let id = built?;
        record.note_image(ctx, id.as_deref())?;
        Ok(id)
    }

    /// The Dockerfile rendered for the app (in target/xtask/contexts/) and the context made, or
    /// both as they are.
    fn prepare(
        &self,
        ctx: &Ctx,
        dockerfile: &Utf8Path,
        context: BuildContext,
    ) -> Result<(Utf8PathBuf, Utf8PathBuf)> {
        let paths = &ctx.paths;
        let dir = paths.contexts();
        let Some(app) = &self.app else {
            let BuildContext::Dir(context) = context else {
                anyhow::bail!("a fixture's build takes a directory as its context");
            };
            return Ok((dockerfile.to_path_buf(), context.to_path_buf()));
        };
        let name = dockerfile.file_name().unwrap_or("Dockerfile");
        let rendered = dir.join(name);
        ctx.change(
            format!("write {rendered}: {dockerfile} with the app's settings"),
            || {
                let text = std::fs::read_to_string(dockerfile)
                    .with_context(|| format!("reading {dockerfile}"))?;
                fsx::write_atomic(&rendered, render(&text, app).as_bytes())
            },
        )?;
        let (from, to) = match context {
            BuildContext::Dir(context) => return Ok((rendered, context.to_path_buf())),
            BuildContext::App => (paths.go_app(), dir.join("go-app")),
            BuildContext::Runtime => (paths.dist(), dir.join("runtime")),
        };
        ctx.change(format!("make the build context {to} from {from}"), || {
            // Our own .dockerignore, not the app's: it names itself (the CLI appends the name of
            // a Dockerfile from outside the context to it, which `COPY . .` must not take) and
            // what no build reads.
            let ignore = match context {
                BuildContext::Runtime => {
                    fsx::mirror(&from, &to, |name| {
                        name == "etc"
                            || name == app::DATA_DIR
                            || app.shipped_binaries().any(|b| b == name)
                    })?;
                    ".dockerignore\n"
                }
                _ => {
                    fsx::mirror(&from, &to, |name| {
                        ![".dockerignore", ".containerignore", ".git"].contains(&name)
                    })?;
                    // The Dockerfiles copy vendor/ first: an app with no dependencies has none.
                    let vendor = to.join("vendor");
                    std::fs::create_dir_all(&vendor)
                        .with_context(|| format!("creating {vendor}"))?;
                    if app.ships_healthcheck() {
                        let source = paths.healthcheck_source().join("main.go");
                        let dir = to.join(HEALTHCHECK_SOURCE);
                        std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
                        std::fs::copy(&source, dir.join("main.go"))
                            .with_context(|| format!("copying {source} to {dir}"))?;
                    }
                    ".dockerignore\n*_test.go\n"
                }
            };
            std::fs::write(to.join(".dockerignore"), ignore)
                .with_context(|| format!("writing {to}/.dockerignore"))
        })?;
        Ok((rendered, to))
    }

    /// A bench fixture's build (the seed's Dockerfiles), tagged `tag` as the seed's flow does;
    /// `scratch` holds the iidfile.
    pub fn build_fixture(
        &self,
        ctx: &Ctx,
        scratch: &Utf8Path,
        dockerfile: &Utf8Path,
        tag: &str,
        context: &Utf8Path,
    ) -> Result<()> {
        let extra = ["-t".to_string(), tag.to_string()];
        self.docker_build(ctx, scratch, dockerfile, &extra, context)
            .map(drop)
    }

    /// `docker build` with the plan's builder, cache and args, `extra` flags: the image's ID (None
    /// under `--dry-run`).
    fn docker_build(
        &self,
        ctx: &Ctx,
        scratch: &Utf8Path,
        dockerfile: &Utf8Path,
        extra: &[String],
        context: &Utf8Path,
    ) -> Result<Option<String>> {
        let iid = fsx::Temp::file_in(scratch, ".iid-")?;
        let iidfile = iid.path();
        let no_cache = self.no_cache.then_some("--no-cache");
        let legacy = self.builder == Builder::Legacy;
        let force_rm = legacy.then_some("--force-rm");
        let load = (!legacy && self.buildkit.is_some_and(|b| b.load)).then_some("--load");
        let buildkit = if legacy { "0" } else { "1" };
        let args: Vec<String> = self
            .args
            .iter()
            .flat_map(|(k, v)| ["--build-arg".to_string(), format!("{k}={v}")])
            .collect();
        ctx.run(
            cmd!("docker build {force_rm...} {no_cache...} {load...} {extra...} --iidfile {iidfile} -f {dockerfile} {args...} {context}")
                .env("DOCKER_BUILDKIT", buildkit)
                // Killed with us: a killed build's window ends soon after its last heartbeat.
                .dies_with_xtask(),
        )
        .with_context(|| format!("building {dockerfile} ({} builder)", self.builder))?;
        let id = ctx.change("read the image ID", || {
            std::fs::read_to_string(iidfile).with_context(|| format!("reading {iidfile}"))
        })?;
        // Podman writes the bare hex; every listing says `sha256:…`.
        let Some(id) = id else {
            return Ok(None); // --dry-run
        };
        Digest::parse(&id)
            .map(|d| Some(d.into_string()))
            .with_context(|| format!("{iidfile} holds no image ID: {id:?}"))
    }

    /// `build`, then `tag` moved onto the image (not smoke-tested: a builder image).
    pub fn build_tagged(
        &self,
        ctx: &Ctx,
        record: &mut Record,
        dockerfile: &Utf8Path,
        target: Option<&str>,
        tag: &str,
        context: BuildContext,
    ) -> Result<Option<String>> {
        let previous = docker::image_id(ctx, tag);
        let id = self.build(ctx, record, dockerfile, target, context)?;
        if let Some(id) = &id {
            record.place(ctx, tag, id, previous.as_deref(), false)?;
        }
        Ok(id)
    }
}

/// A Dockerfile of ours with the app's settings in place of its settings line: the port, the
/// environment, the working directory (when the image has extra files), the entrypoint and the
/// health check, each binary under the line's root (`/`, or the builder stage's `/out/`).
pub fn render(text: &str, app: &App) -> String {
    let json = |items: Vec<String>| jzon::JsonValue::from(items).dump();
    text.lines()
        .map(|line| {
            let Some(root) = line.strip_prefix(SETTINGS) else {
                return format!("{line}\n");
            };
            let root = root.trim();
            let mut out = String::new();
            if root != "/" && app.ships_healthcheck() {
                // A builder stage: the health check first, a layer no edit of the app reruns.
                let env: Vec<String> = gobuild::HEALTHCHECK_ENV
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect();
                let binary = format!("{root}{}", app::HEALTHCHECK_BINARY);
                out += &format!(
                    "COPY {HEALTHCHECK_SOURCE}/main.go /tmp/healthcheck/\n\
                     RUN cd /tmp/healthcheck && {} go build -ldflags \"{}\" -o {binary} main.go \
                     && chmod 0555 {binary}\n",
                    env.join(" "),
                    gobuild::STRIP
                );
            }
            if app.serves_http() {
                out += &format!("EXPOSE {}\n", app.port);
            }
            for (key, value) in &app.env {
                out += &format!(
                    "ENV {key}={}\n",
                    jzon::JsonValue::from(value.as_str()).dump()
                );
            }
            if root == "/" && !app.files.is_empty() {
                out += &format!("WORKDIR {}\n", app.workdir());
            }
            out += &format!(
                "ENTRYPOINT {}\n",
                json(vec![format!("{root}{}", app.entrypoint())])
            );
            out += &match app.health_command(root) {
                Some(command) => format!(
                    "HEALTHCHECK --interval={}s --timeout={}s --retries={} CMD {}\n",
                    project::HEALTHCHECK_INTERVAL_S,
                    project::HEALTHCHECK_TIMEOUT_S,
                    project::HEALTHCHECK_RETRIES,
                    json(command)
                ),
                None => "HEALTHCHECK NONE\n".to_string(),
            };
            out
        })
        .collect()
}

/// The builder to use: the one asked for, else BuildKit when this client has it, else the legacy
/// builder (announced; optional tools are never installed behind the user's back).
pub fn choose_builder(
    ctx: &Ctx,
    engine: &Engine,
    requested: Option<Builder>,
) -> Result<(Builder, Option<BuildKit>)> {
    // What the engine can serve decides first: the client may have BuildKit that it cannot use.
    let store = engine.store;
    if !store.serves_buildkit() {
        if requested == Some(Builder::BuildKit) {
            anyhow::bail!("the engine ({store}) serves no BuildKit builds: use `--builder legacy`");
        }
        if requested.is_none() {
            ctx.announce(format!(
                "the engine ({store}) serves no BuildKit builds: using the legacy builder"
            ));
        }
        return Ok((Builder::Legacy, None));
    }
    let mut buildkit = BuildKit::detect(ctx);
    // The default is BuildKit: where the xtask installs what it needs (root on Debian), it
    // installs the plugin that brings it, as `setup` would.
    if buildkit.is_none() && requested.is_none() && !ctx.no_setup && apt::may_install_unasked() {
        tools::require(ctx, &[tools::BUILDX])?;
        buildkit = BuildKit::detect(ctx);
    }
    match (requested, buildkit) {
        (Some(Builder::BuildKit), None) => anyhow::bail!(
            "BuildKit is not available from this docker client: {}; or use `--builder legacy`",
            tools::BUILDX.install_hint()
        ),
        (Some(b), bk) => Ok((b, bk)),
        (None, Some(bk)) => Ok((Builder::BuildKit, Some(bk))),
        (None, None) => {
            ctx.announce(
                "no BuildKit in this docker client (docker-buildx is missing): using the legacy builder \
                 (`cargo xtask setup` installs docker-buildx)",
            );
            Ok((Builder::Legacy, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project;

    fn read(name: &str) -> String {
        let docker = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker");
        std::fs::read_to_string(docker.join(name)).unwrap()
    }

    /// The Dockerfiles take every Go flag as a build arg and hard-code none.
    #[test]
    fn dockerfiles_take_the_build_args() {
        for file in [EX1, MULTISTAGE] {
            let text = read(file);
            for key in gobuild::GO_VARIABLES {
                assert!(text.contains(key), "{file} does not declare {key}");
            }
            for mode in [gobuild::Mode::Gopath, gobuild::Mode::Modules] {
                for (key, value) in mode.env().into_iter().chain(mode.prebuild()) {
                    assert!(
                        !text.contains(&format!("{key}={value}")),
                        "{file} hard-codes {key}"
                    );
                }
            }
            for arg in ["\"$LDFLAGS\"", "\"$PASSWD\"", "\"$GROUP\"", "$APP_UID"] {
                assert!(text.contains(arg), "{file} does not use {arg}");
            }
            assert!(
                !text.contains(" -a "),
                "{file} uses -a, which defeats Go's build cache"
            );
        }
    }

    /// The Dockerfiles spell our label keys as `project` does, and label every stage from its
    /// first step on; no checkout id, no host value.
    #[test]
    fn dockerfiles_carry_our_labels() {
        for (file, stages) in [(EX1, 1), (EX2, 1), (MULTISTAGE, 2)] {
            let text = read(file);
            let count = |needle: &str| text.matches(needle).count();
            let first = format!("LABEL {}={}\n", project::LABEL_PROJECT, project::TOOL);
            assert!(
                text.contains("title=\"$TITLE\""),
                "{file}: the title is the app's name"
            );
            assert_eq!(count(&first), stages, "{file}");
            for key in [
                project::LABEL_STAGE,
                project::LABEL_GO,
                project::LABEL_BUILDER_BASE,
            ] {
                assert_eq!(count(&format!("{key}=")), stages, "{file} lacks {key}");
            }
            for (key, arg) in [
                (project::OCI_VERSION, "$VERSION"),
                (project::OCI_REVISION, "$REVISION"),
                (project::OCI_CREATED, "$CREATED"),
                (project::OCI_SOURCE, "$SOURCE"),
                (project::LABEL_GO, "$GO_VERSION"),
                (project::LABEL_BUILDER_BASE, "$BUILDER_IMAGE"),
            ] {
                assert!(text.contains(&format!("{key}=\"{arg}\"")), "{file}: {key}");
            }
            assert!(!text.contains("checkout"), "{file} labels the checkout");
        }
    }

    /// The instructions of a Dockerfile, comments and blank lines aside, continuations joined.
    fn steps(text: &str) -> Vec<String> {
        let mut steps = Vec::new();
        let mut current = String::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            current.push_str(line.trim_end_matches('\\').trim());
            current.push(' ');
            if !line.ends_with('\\') {
                steps.push(current.trim().to_string());
                current.clear();
            }
        }
        steps
    }

    /// ex1 is the multi-stage builder stage and ex2 its production stage, step for step: the
    /// handoff and the multi-stage build make the same files.
    #[test]
    fn ex1_and_ex2_are_the_multistage_stages() {
        let multi = steps(&read(MULTISTAGE));
        let is_from = |s: &String| s.starts_with("FROM ");
        let starts: Vec<usize> = multi
            .iter()
            .enumerate()
            .filter(|(_, s)| is_from(s))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(starts.len(), 2, "two stages");
        let body = |s: &[String]| {
            s.iter()
                .skip_while(|l| !is_from(l))
                .skip(1)
                .cloned()
                .collect::<Vec<_>>()
        };
        let builder = body(&multi[starts[0]..starts[1]]);
        let production = body(&multi[starts[1]..]);
        assert_eq!(
            body(&steps(&read(EX1))),
            builder,
            "ex1.Dockerfile differs from the builder stage"
        );
        // ex2 copies from dist/ what the production stage copies from the builder's /out.
        let ex2 = body(&steps(&read(EX2)));
        let not_copy = |s: &[String]| {
            s.iter()
                .filter(|l| !l.starts_with("COPY "))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            not_copy(&ex2),
            not_copy(&production),
            "ex2.Dockerfile differs from the production stage"
        );
        assert!(production.contains(&"COPY --chown=0:0 --from=builder /out/ /".to_string()));
        let ex2_copies: Vec<&String> = ex2.iter().filter(|l| l.starts_with("COPY ")).collect();
        assert_eq!(ex2_copies, ["COPY --chown=0:0 . /"]);
        // The app's settings: one line, rendered from the contract as `direct` writes them.
        for (file, lines) in [(MULTISTAGE, 2), (EX1, 1), (EX2, 1)] {
            assert_eq!(read(file).matches(SETTINGS).count(), lines, "{file}");
        }
        assert!(read(MULTISTAGE).contains(&format!("{SETTINGS}/out/\n")));
        assert!(read(EX2).contains(&format!("{SETTINGS}/\n")));
    }

    /// The settings line becomes the contract's port, environment, working directory,
    /// entrypoint and health check, each binary under the line's root.
    #[test]
    fn the_settings_are_rendered_from_the_contract() {
        let demo = crate::pipeline::app::App::demo();
        let text = render(&read(MULTISTAGE), &demo);
        assert!(!text.contains(SETTINGS));
        let check = format!(
            "HEALTHCHECK --interval={}s --timeout={}s --retries={} CMD [\"/main\",\"-healthcheck\"]",
            project::HEALTHCHECK_INTERVAL_S,
            project::HEALTHCHECK_TIMEOUT_S,
            project::HEALTHCHECK_RETRIES,
        );
        assert!(text.contains(&check), "{text}");
        assert!(
            text.contains("ENTRYPOINT [\"/out/main\"]\n")
                && text.contains("ENTRYPOINT [\"/main\"]\n")
        );
        assert!(text.contains("EXPOSE 8080\n") && !text.contains("WORKDIR /srv"));
        let other = crate::pipeline::app::App {
            port: 3000,
            env: [("GIN_MODE".to_string(), "re\"lease".to_string())].into(),
            files: vec!["templates".into()],
            health: crate::pipeline::app::Health::None,
            ..demo.clone()
        };
        let http = crate::pipeline::app::App {
            health: crate::pipeline::app::Health::Http("/healthz".into()),
            ..demo.clone()
        };
        let text = render(&read(MULTISTAGE), &http);
        assert_eq!(
            text.matches("go build -ldflags \"-s -w -buildid=\" -o /out/healthcheck main.go")
                .count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("CMD [\"/healthcheck\",\"http://127.0.0.1:8080/healthz\",\"PORT\"]\n")
        );
        let text = render(&read(EX2), &other);
        for line in [
            "EXPOSE 3000\n",
            "ENV GIN_MODE=\"re\\\"lease\"\n",
            "WORKDIR /srv\n",
            "HEALTHCHECK NONE\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
