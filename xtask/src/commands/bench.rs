//! `cargo xtask bench`: our strategies against the tutorial's own flow, a `docker init`-style
//! Dockerfile and the physical limit (a host `go build`), measured side by side in one run,
//! reported as medians and ratios. It drives the same pipeline (paths, enums, Dockerfile plans,
//! the Go build) as the commands, in a scratch copy of the app under target/bench/ws (the user's
//! sources are never edited), and touches only its own images.

use std::{fs, time::Instant};

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use jzon::object;

use crate::pipeline::app::App;
use crate::{
    cmd,
    domain::{Builder, Strategy},
    flags,
    infra::{
        ctx::{human_size, Ctx},
        docker::{self, BuildKit, Engine},
        fsx,
        tools::Go,
    },
    pipeline::{base, dockerfile::Plan, gobuild},
    project::Paths,
};

/// How often the dev row asks the port for the new text. Each request costs about 0.8 ms of CPU
/// (ours, the engine's port proxy, the app): at 5 ms the polling alone slowed the paired Go build
/// by 45 ms on this project's 2-core machine, at 10 ms by 9–20 ms (docs/performance.md).
const DEV_POLL: std::time::Duration = std::time::Duration::from_millis(10);
/// The bench's image name; its tags name the contenders.
const BENCH_IMAGE: &str = "go-docker-prod-bench";
/// The format of `/hello/:name`'s answer in main.go, which the `dev` row edits.
const HELLO: &str = "Hello, %s!";
/// The label each stage of the fixtures sets first: the bench's own images, to remove.
const BENCH_LABEL: &str = "dev.go-docker-prod.bench=fixture";
/// Edit+build cycles for the disk-growth metric.
const DISK_CYCLES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    /// A host `go build` with our flags: nothing can be faster.
    Limit,
    /// The tutorial's multi-stage Dockerfile (`go build -a`).
    SeedMultistage(Builder),
    /// The tutorial's two Dockerfiles with `docker run -v …:/dist … cp` between them.
    SeedTwoDockerfiles(Builder),
    /// What `docker init` generates for Go (cache mounts), adapted to GOPATH: BuildKit only.
    DockerInit,
    /// `cargo xtask image --strategy direct` on the engine given by `--remote`.
    DirectRemote,
    /// `cargo xtask dev`: from saving an edit to the new answer on its port.
    Dev,
    /// `cargo xtask image`.
    Ours {
        strategy: Strategy,
        builder: Option<Builder>,
        compress: bool,
    },
}

impl Contender {
    fn name(self) -> String {
        match self {
            Contender::Limit => "limit: host go build".into(),
            Contender::SeedMultistage(b) => format!("seed multistage ({b})"),
            Contender::SeedTwoDockerfiles(b) => format!("seed two-Dockerfile ({b})"),
            Contender::DockerInit => "peer: docker init Go Dockerfile (buildkit)".into(),
            Contender::DirectRemote => format!("ours {} (remote engine)", Strategy::Direct),
            Contender::Dev => "ours dev: save → new answer on the port".into(),
            Contender::Ours {
                strategy,
                builder,
                compress,
            } => {
                let s = if compress {
                    "compress".to_string()
                } else {
                    strategy.to_string()
                };
                match builder {
                    Some(b) => format!("ours {s} ({b})"),
                    None => format!("ours {s}"),
                }
            }
        }
    }
    fn tag(self) -> String {
        let slug: String = self
            .name()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let slug = slug
            .split('-')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        format!("{BENCH_IMAGE}:{slug}")
    }
    /// The seed row an "ours" row is compared with.
    fn seed(self) -> Option<Contender> {
        match self {
            Contender::Ours {
                strategy: Strategy::Handoff,
                builder: Some(b),
                ..
            } => Some(Contender::SeedTwoDockerfiles(b)),
            Contender::Ours {
                builder: Some(b), ..
            } => Some(Contender::SeedMultistage(b)),
            Contender::Ours { builder: None, .. } | Contender::DirectRemote => {
                Some(Contender::SeedMultistage(Builder::BuildKit))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Row {
    name: String,
    cold: Option<f64>,
    noop: Option<f64>,
    edit: Option<f64>,
    size: Option<u64>,
    disk_per_cycle: Option<f64>,
    dangling: Option<usize>,
    edit_vs_seed: Option<f64>,
    edit_vs_limit: Option<f64>,
    cold_vs_limit: Option<f64>,
}

#[derive(Clone)]
struct Bench<'a> {
    ctx: &'a Ctx,
    /// The scratch copy of the workspace.
    ws: Paths,
    exe: Utf8PathBuf,
    go: Go,
    builder_image: String,
    buildkit: Option<BuildKit>,
    original_main: String,
    edits: std::cell::Cell<usize>,
    quick: bool,
    runs: usize,
    /// `--remote`: DOCKER_HOST of the second engine.
    remote: Option<String>,
}

impl flags::Bench {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let quick = self.quick;
        let runs = self.runs.unwrap_or(if quick { 1 } else { 5 }).max(1);
        Engine::ensure(ctx)?;
        let go = Go::find(ctx)?;
        let buildkit = BuildKit::detect(ctx);
        let glide = gobuild::Mode::of(&ctx.paths) == gobuild::Mode::Gopath;
        if !glide {
            ctx.announce(
                "module mode: the tutorial's rows and docker init's (Glide, GOPATH) are left out",
            );
        }
        let mut contenders = contenders(quick, buildkit.is_some(), self.remote.is_some(), glide);
        if let Some(only) = &self.only {
            contenders.retain(|c| *c == Contender::Limit || c.name().contains(only.as_str()));
        }
        let bench = Bench::prepare(ctx, go, buildkit, quick, runs, self.remote)?;
        let result = bench.measure_all(&contenders);
        bench.cleanup();
        let mut rows = result?;
        if rows.is_empty() {
            return Ok(()); // --dry-run
        }
        ratios(&mut rows, &contenders);
        let mut table = render(&rows, runs, quick);
        let compile = if quick {
            None
        } else {
            Some(cold_compile(ctx)?)
        };
        if let Some(secs) = compile {
            table += &format!("\nxtask cold compile (cargo build, empty target dir): {secs:.2}s\n");
        }
        println!("{table}");
        save(ctx, &rows, &table, quick, runs, compile)
    }
}

/// What one run measures: the limit, direct and dev always; our Dockerfile strategies and, for a
/// Glide app (`glide`), the seed's, on each builder the engine serves (all of them unless
/// `quick`); the remote row when asked.
fn contenders(quick: bool, buildkit: bool, remote: bool, glide: bool) -> Vec<Contender> {
    let mut builders = vec![Builder::Legacy];
    if buildkit {
        builders.insert(0, Builder::BuildKit);
    }
    let ours = |strategy, builder, compress| Contender::Ours {
        strategy,
        builder,
        compress,
    };
    let mut contenders = vec![
        Contender::Limit,
        ours(Strategy::Direct, None, false),
        Contender::Dev,
    ];
    for &b in &builders {
        if glide {
            contenders.push(Contender::SeedMultistage(b));
        }
        contenders.push(ours(Strategy::Multistage, Some(b), false));
        if !quick {
            if glide {
                contenders.push(Contender::SeedTwoDockerfiles(b));
            }
            contenders.push(ours(Strategy::Handoff, Some(b), false));
            contenders.push(ours(Strategy::Single, Some(b), false));
            contenders.push(ours(Strategy::Handoff, Some(b), true));
        }
    }
    if buildkit && !quick && glide {
        contenders.push(Contender::DockerInit);
    }
    if remote {
        contenders.push(Contender::DirectRemote);
    }
    contenders
}

/// Each row's ratios to its seed and to the limit (edit ÷ limit is measured pair by pair).
fn ratios(rows: &mut [Row], contenders: &[Contender]) {
    for i in 0..rows.len() {
        let find = |c: Contender| {
            contenders
                .iter()
                .position(|x| *x == c)
                .map(|j| rows[j].clone())
        };
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        let seed = contenders[i].seed().and_then(find);
        let limit = find(Contender::Limit);
        rows[i].edit_vs_seed = ratio(rows[i].edit, seed.and_then(|s| s.edit));
        if contenders[i] == Contender::Limit {
            rows[i].edit_vs_limit = Some(1.0);
        }
        rows[i].cold_vs_limit = ratio(rows[i].cold, limit.and_then(|l| l.cold));
    }
}

/// The results, as JSON and as the table, in target/bench/.
fn save(
    ctx: &Ctx,
    rows: &[Row],
    table: &str,
    quick: bool,
    runs: usize,
    compile: Option<f64>,
) -> Result<()> {
    let out = ctx.paths.bench_dir();
    fs::create_dir_all(&out)?;
    let json = object! {
        "quick": quick,
        "runs": runs,
        "xtask_cold_compile_s": compile,
        "rows": rows.iter().map(|r| object! {
            "contender": r.name.as_str(), "cold_s": r.cold, "noop_s": r.noop, "edit_s": r.edit,
            "image_bytes": r.size, "disk_per_cycle_bytes": r.disk_per_cycle, "dangling": r.dangling,
            "edit_vs_seed": r.edit_vs_seed, "edit_vs_limit": r.edit_vs_limit, "cold_vs_limit": r.cold_vs_limit,
        }).collect::<Vec<_>>(),
    };
    fs::write(out.join("results.json"), json.pretty(2) + "\n")?;
    fs::write(out.join("results.md"), table)?;
    println!("saved: {out}/results.json, {out}/results.md");
    Ok(())
}

impl<'a> Bench<'a> {
    /// A scratch copy of the app (go-app/, docker/, an xtask/ marker) with vendor/ filled.
    fn prepare(
        ctx: &'a Ctx,
        go: Go,
        buildkit: Option<BuildKit>,
        quick: bool,
        runs: usize,
        remote: Option<String>,
    ) -> Result<Bench<'a>> {
        let root = ctx.paths.bench_dir().join("ws");
        let ws = Paths::at(root.clone())?;
        let from = &ctx.paths;
        ctx.change(format!("copy the app to {root}"), || {
            fsx::remove_dir(&root)?;
            fsx::copy_dir(&from.go_app(), &ws.go_app())?;
            // GOPATH mode: glide makes vendor/ in the copy; a module's vendor/ is its source.
            if gobuild::Mode::of(from) == gobuild::Mode::Gopath {
                fsx::remove_dir(&ws.vendor())?;
            }
            fsx::copy_dir(&from.docker_dir(), &ws.docker_dir())?;
            let contract = crate::pipeline::app::file(&from.root);
            if contract.is_file() {
                fs::copy(&contract, crate::pipeline::app::file(&ws.root))
                    .with_context(|| format!("copying {contract}"))?;
            }
            fs::create_dir_all(ws.root.join("xtask")).context("creating the bench copy")
        })?;
        let exe = Utf8PathBuf::try_from(std::env::current_exe()?)
            .context("the xtask's path is not UTF-8")?;
        let builder_image = base::builder_base(ctx, &Engine::ensure(ctx)?, None)?.image;
        if let Some(host) = &remote {
            if docker::image_id(&ctx.with_env("DOCKER_HOST", host), &builder_image).is_none() {
                anyhow::bail!(
                    "the engine at {host} has no {builder_image}: copy it there with \
                     `docker save {builder_image} | DOCKER_HOST={host} docker load`"
                );
            }
        }
        let original_main = fs::read_to_string(from.go_app().join("main.go"))?;
        let bench = Bench {
            ctx,
            ws,
            exe,
            go,
            builder_image,
            buildkit,
            original_main,
            edits: 0.into(),
            quick,
            runs,
            remote,
        };
        bench.xtask(&["dist"])?; // glide fills vendor/; the GOPATH copy is ready for the limit
        Ok(bench)
    }

    fn measure_all(&self, contenders: &[Contender]) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for &c in contenders {
            if let Some(row) = self.ctx.change(format!("bench: {}", c.name()), || {
                self.ctx
                    .step(&format!("bench: {}", c.name()), || self.measure(c))
            })? {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    fn measure(&self, who: Contender) -> Result<Row> {
        // The remote row: every command and query of it goes to the other engine.
        if let (Contender::DirectRemote, Some(host)) = (who, &self.remote) {
            let remote = self.ctx.with_env("DOCKER_HOST", host);
            return Bench {
                ctx: &remote,
                remote: None,
                ..self.clone()
            }
            .measure_here(who);
        }
        self.measure_here(who)
    }

    /// `measure` on this bench's engine.
    fn measure_here(&self, who: Contender) -> Result<Row> {
        if who == Contender::Dev {
            return self.measure_dev();
        }
        let mut row = Row {
            name: who.name(),
            ..Row::default()
        };
        let dangling_before = self.dangling()?;
        if !self.quick {
            row.cold = Some(self.median(|| self.build(who, true))?);
            row.noop = Some(self.median(|| self.build(who, false))?);
        } else {
            self.build(who, false)?; // warm the caches once
        }
        // Each edit build beside a host build of an edit of its own, just before: the ratio of
        // the two, whatever the machine is doing in between, is what the table's edit ÷ limit
        // reports (the median of them).
        let (mut edits, mut vs_limit) = (Vec::new(), Vec::new());
        for _ in 0..self.runs {
            let limit = match who {
                Contender::Limit => None,
                _ => {
                    self.edit()?;
                    Some(self.build(Contender::Limit, false)?)
                }
            };
            self.edit()?;
            let secs = self.build(who, false)?;
            edits.push(secs);
            vs_limit.extend(limit.map(|l| secs / l));
        }
        row.edit = median(edits);
        row.edit_vs_limit = median(vs_limit);
        if who != Contender::Limit {
            row.size =
                docker::inspect(self.ctx, &who.tag(), "{{.Size}}").and_then(|s| s.parse().ok());
            if !self.quick {
                let disk = || docker::disk_usage(self.ctx, &["Images", "Build Cache"]) as f64;
                let before = disk();
                for _ in 0..DISK_CYCLES {
                    self.edit()?;
                    self.build(who, false)?;
                }
                row.disk_per_cycle = Some((disk() - before) / DISK_CYCLES as f64);
            }
            let after = self.dangling()?;
            row.dangling = Some(
                after
                    .iter()
                    .filter(|d| !dangling_before.contains(d))
                    .count(),
            );
            self.remove_own_dangling()?;
        }
        Ok(row)
    }

    /// `dev` running in the bench's copy: each edit of main.go timed from the save until the port
    /// serves the new text, beside a host `go build` of an edit of its own (in the GOPATH copy,
    /// which `dev` does not watch) while `dev` is idle.
    fn measure_dev(&self) -> Result<Row> {
        let ctx = self.ctx;
        let port = crate::infra::net::free_port()?.to_string();
        let tag = Contender::Dev.tag();
        let mut args = vec!["dev", "--port", port.as_str(), "--tag", tag.as_str()];
        if ctx.offline {
            args.push("--offline");
        }
        let (reader, writer) = os_pipe::pipe()?;
        let exe = &self.exe;
        let session = ctx.start(cmd!("{exe} {args...}").dir(&self.ws.root).output_to(writer))?;
        let (lines, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(reader)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send(line);
            }
        });
        let wait_line = |marker: &str| -> Result<()> {
            let deadline = Instant::now() + std::time::Duration::from_secs(300);
            while Instant::now() < deadline {
                ctx.check_signal("the bench's dev session")?;
                if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
                    if line.contains(marker) {
                        return Ok(());
                    }
                }
            }
            anyhow::bail!("dev did not say `{marker}` within 300 s")
        };
        wait_line("dev: http://127.0.0.1:")?;
        let addr = format!("127.0.0.1:{port}");
        let (mut edits, mut vs_limit) = (Vec::new(), Vec::new());
        for _ in 0..self.runs {
            let limit = self.limit_without_dev()?;
            let text = self.edit_hello()?;
            let saved = Instant::now();
            loop {
                let body = crate::infra::http::get(&addr, "/hello/x")
                    .map(|(_, b)| b)
                    .unwrap_or_default();
                if body.contains(&text) {
                    break;
                }
                if saved.elapsed() > std::time::Duration::from_secs(300) {
                    anyhow::bail!("dev never served the edit");
                }
                std::thread::sleep(DEV_POLL);
            }
            let secs = saved.elapsed().as_secs_f64();
            edits.push(secs);
            vs_limit.push(secs / limit);
            // Idle again: its one line for this change is out.
            wait_line("the new code answers")?;
        }
        drop(session); // SIGTERM: dev stops its container, the app exits 0
        Ok(Row {
            name: Contender::Dev.name(),
            edit: median(edits),
            edit_vs_limit: median(vs_limit),
            ..Row::default()
        })
    }

    /// `/hello/:name`'s answer edited in main.go (what `dev`'s row measures): the new text.
    fn edit_hello(&self) -> Result<String> {
        let n = self.edits.get() + 1;
        self.edits.set(n);
        let text = format!("Hello #{n}");
        let edited = self.original_main.replace(HELLO, &format!("{text}, %s!"));
        fs::write(self.ws.go_app().join("main.go"), edited)
            .context("editing the bench copy of main.go")?;
        Ok(text)
    }

    /// A host `go build` of an edit of its own, made where `dev` does not watch (GOPATH mode: the
    /// workspace's copy; module mode: a copy of the app under target/): its wall time.
    fn limit_without_dev(&self) -> Result<f64> {
        let n = self.edits.get() + 1;
        self.edits.set(n);
        let edited = self
            .original_main
            .replace(HELLO, &format!("Hello from the limit #{n}, %s!"));
        let paths = match gobuild::Mode::of(&self.ws) {
            gobuild::Mode::Gopath => self.ws.clone(),
            gobuild::Mode::Modules => {
                let aside = Paths::at(self.ws.target().join("limit-ws"))?;
                if !aside.go_app().is_dir() {
                    fsx::copy_dir(&self.ws.go_app(), &aside.go_app())?;
                }
                aside
            }
        };
        let contract = App::load(&paths.root, None)?;
        let app = gobuild::Mode::of(&paths).app_dir(&paths, &contract);
        fs::write(app.join("main.go"), edited)?;
        let out = self.ws.target().join("limit");
        let started = Instant::now();
        gobuild::start(self.ctx, &self.go, &paths, &contract, &out, None, "bench")?.wait()?;
        Ok(started.elapsed().as_secs_f64())
    }

    fn median(&self, mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
        let times = (0..self.runs).map(|_| f()).collect::<Result<Vec<f64>>>()?;
        median(times).context("no run")
    }

    /// A one-line edit to main.go: a welcome text never built before (the builders' caches are
    /// content-addressed: a text seen in an earlier run would be a cache hit).
    fn edit(&self) -> Result<String> {
        let n = self.edits.get() + 1;
        self.edits.set(n);
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let text = format!("Welcome to go-docker-prod! #{n}.{nonce}");
        let edited = self
            .original_main
            .replace("Welcome to go-docker-prod!", &text);
        fs::write(self.ws.go_app().join("main.go"), edited)
            .context("editing the bench copy of main.go")?;
        Ok(text)
    }

    /// Builds `who` once; the wall time in seconds.
    fn build(&self, who: Contender, cold: bool) -> Result<f64> {
        let ctx = self.ctx;
        let ws = &self.ws;
        let started = Instant::now();
        let tag = who.tag();
        match who {
            Contender::Limit => {
                // The host build as `dist` runs it (GOPATH mode: from the workspace's copy); cold:
                // an empty GOCACHE.
                let contract = App::load(&ws.root, None)?;
                if gobuild::Mode::of(ws) == gobuild::Mode::Gopath {
                    let app = ws.gopath_app(&contract.import_path);
                    fs::copy(ws.go_app().join("main.go"), app.join("main.go"))?;
                }
                let cache = ws.target().join("bench-gocache");
                if cold {
                    fsx::remove_dir(&cache)?;
                }
                let out = ws.target().join("limit");
                let cached = ctx.with_env("GOCACHE", cache.as_str());
                gobuild::start(&cached, &self.go, ws, &contract, &out, None, "bench")?.wait()?;
            }
            Contender::Ours {
                strategy,
                builder,
                compress,
            } => self.image(&tag, strategy, builder, compress, cold)?,
            Contender::DirectRemote => self.image(&tag, Strategy::Direct, None, false, cold)?,
            Contender::Dev => unreachable!("dev is measured by measure_dev"),
            Contender::SeedMultistage(builder) => {
                self.fixture(
                    builder,
                    "seed-multistage.Dockerfile",
                    &tag,
                    &ws.go_app(),
                    cold,
                )?;
            }
            Contender::SeedTwoDockerfiles(builder) => {
                let fat = format!("{tag}-builder");
                self.fixture(builder, "seed-ex1.Dockerfile", &fat, &ws.go_app(), cold)?;
                let dist = ws.target().join("dist-seed");
                fs::create_dir_all(&dist)?;
                let volume = format!("{dist}:/dist");
                ctx.run(cmd!("docker run --rm -v {volume} {fat} cp ./main /dist/").kept())?;
                self.fixture(builder, "seed-ex2.Dockerfile", &tag, &dist, cold)?;
            }
            Contender::DockerInit => {
                self.fixture(
                    Builder::BuildKit,
                    "docker-init.Dockerfile",
                    &tag,
                    &ws.go_app(),
                    cold,
                )?;
            }
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// `cargo xtask image` with our flags, tagged `tag`.
    fn image(
        &self,
        tag: &str,
        strategy: Strategy,
        builder: Option<Builder>,
        compress: bool,
        cold: bool,
    ) -> Result<()> {
        let strategy = strategy.to_string();
        let mut args = vec![
            "image",
            "--strategy",
            &strategy,
            "--tag",
            tag,
            "--builder-image",
            &self.builder_image,
        ];
        let builder = builder.map(|b| b.to_string());
        if let Some(b) = &builder {
            args.extend(["--builder", b]);
        }
        if compress {
            args.push("--compress");
        }
        if cold {
            args.push("--no-cache");
        }
        self.xtask(&args)
    }

    fn fixture(
        &self,
        builder: Builder,
        file: &str,
        tag: &str,
        context: &camino::Utf8Path,
        cold: bool,
    ) -> Result<()> {
        let plan = Plan::fixture(builder, self.buildkit, cold, &self.builder_image);
        let dockerfile = self.ctx.paths.bench_fixtures().join(file);
        plan.build_fixture(self.ctx, &self.ws.xtask_dir(), &dockerfile, tag, context)
    }

    /// Runs this xtask in the bench copy, with the global flags the bench was given.
    fn xtask(&self, args: &[&str]) -> Result<()> {
        let mut all: Vec<&str> = args.to_vec();
        if self.ctx.offline {
            all.push("--offline");
        }
        if self.ctx.no_setup {
            all.push("--no-setup");
        }
        let exe = &self.exe;
        self.ctx
            .run(cmd!("{exe} {all...}").kept().dir(&self.ws.root))
            .map(drop)
    }

    fn dangling(&self) -> Result<Vec<String>> {
        docker::images(self.ctx, &["dangling=true".to_string()])
    }

    /// The fixtures' dangling images (ours go by the record: `clean` in the copy).
    fn remove_own_dangling(&self) -> Result<()> {
        for id in docker::images(self.ctx, &[fixture_filter(), "dangling=true".into()])? {
            let _ = docker::remove_image(self.ctx, &id);
        }
        Ok(())
    }

    /// Removes the bench's images (also after a signal): ours by the copy's record (`clean` in
    /// the copy), the fixtures' by their tags and label.
    fn cleanup(&self) {
        if let Some(host) = &self.remote {
            let remote = self.ctx.with_env("DOCKER_HOST", host);
            let _ = docker::remove_image(&remote, &Contender::DirectRemote.tag());
        }
        let exe = &self.exe;
        let _ = self.ctx.cleanup(cmd!("{exe} clean").dir(&self.ws.root));
        let ids = docker::images(self.ctx, &[fixture_filter()]).unwrap_or_default();
        for id in ids {
            let tags =
                docker::inspect(self.ctx, &id, "{{join .RepoTags \" \"}}").unwrap_or_default();
            for tag in tags
                .split_whitespace()
                .filter(|t| t.starts_with(BENCH_IMAGE))
            {
                let _ = docker::remove_image(self.ctx, tag);
            }
            let _ = docker::remove_image(self.ctx, &id);
        }
        let _ = self.ctx.change(format!("rm -rf {}", self.ws.root), || {
            fsx::remove_dir(&self.ws.root)
        });
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// The filter for the fixtures' images.
fn fixture_filter() -> String {
    format!("label={BENCH_LABEL}")
}

/// The xtask's own cost: a cold `cargo build` of it, in a target dir of its own.
fn cold_compile(ctx: &Ctx) -> Result<f64> {
    let target = ctx.paths.bench_dir().join("cargo-cold");
    ctx.change(format!("rm -rf {target}"), || fsx::remove_dir(&target))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    ctx.run(cmd!("{cargo} build -q -p xtask --target-dir {target}").kept())?;
    let secs = started.elapsed().as_secs_f64();
    ctx.change(format!("rm -rf {target}"), || fsx::remove_dir(&target))?;
    Ok(secs)
}

fn render(rows: &[Row], runs: usize, quick: bool) -> String {
    use std::fmt::Write as _;
    let s = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}s"));
    let x = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}x"));
    let mut out = String::new();
    let kind = if quick {
        "quick, one-line-edit rebuild only"
    } else {
        "full"
    };
    let _ = writeln!(
        out,
        "bench: {kind} (median of {runs} run{})\n",
        if runs == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "| contender | cold | no change | 1-line edit | image | disk/cycle | dangling | edit ÷ seed | edit ÷ limit | cold ÷ limit |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            s(r.cold),
            s(r.noop),
            s(r.edit),
            r.size.map_or("-".into(), human_size),
            r.disk_per_cycle
                .map_or("-".into(), |d| human_size(d.max(0.0) as u64)),
            r.dangling.map_or("-".into(), |d| d.to_string()),
            x(r.edit_vs_seed),
            x(r.edit_vs_limit),
            x(r.cold_vs_limit),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stage of every fixture labels its images as the bench's from its first step on.
    #[test]
    fn fixtures_label_their_images() {
        let dir = camino::Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("bench");
        for entry in dir.read_dir_utf8().unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
            assert!(stages > 0);
            assert_eq!(
                text.matches(&format!("\nLABEL {BENCH_LABEL}\n")).count(),
                stages,
                "{text}"
            );
        }
    }

    #[test]
    fn contender_names_come_from_the_enums() {
        let c = Contender::Ours {
            strategy: Strategy::Handoff,
            builder: Some(Builder::Legacy),
            compress: false,
        };
        assert_eq!(c.name(), "ours handoff (legacy)");
        assert_eq!(c.tag(), "go-docker-prod-bench:ours-handoff-legacy");
        assert_eq!(
            c.seed(),
            Some(Contender::SeedTwoDockerfiles(Builder::Legacy))
        );
    }
}
