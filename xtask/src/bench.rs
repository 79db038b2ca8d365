//! `cargo xtask bench`: our strategies against the tutorial's own flow and against the physical
//! limit (a host `go build`), measured side by side in one run, reported as medians and ratios.
//! Everything runs in a scratch copy of the app (target/bench/ws): the user's sources are never
//! edited. The seed's flow is a bench fixture (xtask/bench/), not a product Dockerfile.

use std::{fmt::Write as _, fs, time::Instant};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::{
    base_images,
    ctx::{human_size, Ctx},
    docker, fsx, gobuild, tools,
};

/// The bench's image name; its tags name the contenders.
const BENCH_IMAGE: &str = "go-docker-prod-bench";
/// Edit+build cycles for the disk-growth metric.
const DISK_CYCLES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// The tutorial's multi-stage Dockerfile (`go build -a`), on a builder.
    SeedMultistage(&'static str),
    /// The tutorial's two Dockerfiles with `docker run -v …:/dist … cp` between them.
    SeedHandoff(&'static str),
    /// `cargo xtask image --strategy S --builder B` ("compress": the handoff with `--compress`).
    Ours(&'static str, &'static str),
    /// A host `go build` with our flags: nothing can be faster.
    Limit,
}

impl Who {
    fn name(self) -> String {
        match self {
            Who::SeedMultistage(b) => format!("seed multistage ({b})"),
            Who::SeedHandoff(b) => format!("seed two-Dockerfile ({b})"),
            Who::Ours(s, b) => format!("ours {s} ({b})"),
            Who::Limit => "limit: host go build".into(),
        }
    }
    fn tag(self) -> String {
        let slug = self
            .name()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            .replace("--", "-");
        format!("{BENCH_IMAGE}:{}", slug.trim_matches('-'))
    }
    /// The seed row an "ours" row is compared with.
    fn seed(self) -> Option<Who> {
        match self {
            Who::Ours("handoff" | "compress", b) => Some(Who::SeedHandoff(b)),
            Who::Ours(_, b) => Some(Who::SeedMultistage(b)),
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
    context: Option<u64>,
    disk_per_cycle: Option<f64>,
    dangling: Option<usize>,
    edit_vs_seed: Option<f64>,
    edit_vs_limit: Option<f64>,
    cold_vs_limit: Option<f64>,
}

struct Bench<'a> {
    ctx: &'a Ctx,
    ws: Utf8PathBuf,
    exe: Utf8PathBuf,
    builder_image: String,
    original_main: String,
    edits: std::cell::Cell<usize>,
    quick: bool,
    runs: usize,
}

pub fn run(ctx: &Ctx, quick: bool, runs: usize) -> Result<()> {
    let runs = if quick { 1 } else { runs };
    if ctx.global.dry_run {
        println!("[dry-run] bench: {runs} run(s) per measurement in a copy of the app under target/bench/ws");
        return Ok(());
    }
    tools::require(ctx, &[tools::GO, tools::GLIDE, tools::GIT])?;
    let engine = crate::setup::ensure_engine(ctx)?;
    let builders: Vec<&'static str> = if engine.buildkit {
        vec!["buildkit", "legacy"]
    } else {
        vec!["legacy"]
    };
    let mut contenders = vec![Who::Limit];
    for &b in &builders {
        contenders.push(Who::SeedMultistage(b));
        contenders.push(Who::Ours("multistage", b));
        if !quick {
            contenders.push(Who::SeedHandoff(b));
            contenders.push(Who::Ours("handoff", b));
            contenders.push(Who::Ours("single", b));
            contenders.push(Who::Ours("compress", b));
        }
    }
    let bench = Bench::prepare(ctx, quick, runs)?;
    let result = bench.measure_all(&contenders);
    bench.cleanup();
    let mut rows = result?;
    for i in 0..rows.len() {
        let who = contenders[i];
        let find = |w: Who| {
            contenders
                .iter()
                .position(|c| *c == w)
                .map(|j| rows[j].clone())
        };
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        let seed = who.seed().and_then(find);
        let limit = find(Who::Limit);
        rows[i].edit_vs_seed = ratio(rows[i].edit, seed.and_then(|s| s.edit));
        rows[i].edit_vs_limit = ratio(rows[i].edit, limit.as_ref().and_then(|l| l.edit));
        rows[i].cold_vs_limit = ratio(rows[i].cold, limit.and_then(|l| l.cold));
    }
    let extra = if quick {
        Vec::new()
    } else {
        bench.xtask_metrics()?
    };
    let table = render(&rows, &extra, runs, quick);
    println!("{table}");
    let out = ctx.paths.target().join("bench");
    fs::create_dir_all(&out)?;
    fs::write(
        out.join("results.json"),
        to_json(&rows, &extra, runs, quick),
    )?;
    fs::write(out.join("results.md"), table)?;
    println!("saved: {out}/results.json, {out}/results.md");
    Ok(())
}

impl<'a> Bench<'a> {
    /// A scratch copy of the app (go-app, docker/, an `xtask/` marker) with vendor/ filled.
    fn prepare(ctx: &'a Ctx, quick: bool, runs: usize) -> Result<Bench<'a>> {
        let ws = ctx.paths.target().join("bench/ws");
        fsx::fresh_dir(&ws)?;
        for dir in ["go-app", "docker"] {
            let from = ctx.paths.root.join(dir);
            fsx::copy_dir(&from, &ws.join(dir))?;
        }
        fsx::remove_dir(&ws.join("go-app/vendor"))?;
        fs::create_dir_all(ws.join("xtask"))?;
        let exe = Utf8PathBuf::try_from(std::env::current_exe()?)
            .context("the xtask's path is not UTF-8")?;
        let builder_image = base_images::builder_base(ctx, None)?;
        let original_main = fs::read_to_string(ws.join("go-app/main.go"))?;
        let bench = Bench {
            ctx,
            ws,
            exe,
            builder_image,
            original_main,
            edits: 0.into(),
            quick,
            runs,
        };
        bench.xtask(&["dist"])?; // glide fills vendor/; the GOPATH stage is ready for the limit
        Ok(bench)
    }

    fn measure_all(&self, contenders: &[Who]) -> Result<Vec<Row>> {
        contenders
            .iter()
            .map(|w| {
                self.ctx
                    .step(&format!("bench: {}", w.name()), || self.measure(*w))
            })
            .collect()
    }

    fn measure(&self, who: Who) -> Result<Row> {
        let dangling_before = self.dangling()?;
        let mut row = Row {
            name: who.name(),
            ..Row::default()
        };
        if !self.quick {
            row.cold = Some(self.median(|| self.build(who, true))?);
            row.noop = Some(self.median(|| self.build(who, false))?);
        } else {
            self.build(who, false)?; // warm the caches once
        }
        row.edit = Some(self.median(|| {
            self.edit()?;
            self.build(who, false)
        })?);
        if who != Who::Limit {
            row.size = docker::image_size(self.ctx, &who.tag());
            row.context = Some(self.context_bytes(who)?);
            if !self.quick {
                let before = self.docker_disk();
                for _ in 0..DISK_CYCLES {
                    self.edit()?;
                    self.build(who, false)?;
                }
                row.disk_per_cycle = Some((self.docker_disk() - before) / DISK_CYCLES as f64);
            }
            let dangling_after = self.dangling()?;
            row.dangling = Some(
                dangling_after
                    .iter()
                    .filter(|d| !dangling_before.contains(d))
                    .count(),
            );
            self.remove_new_dangling(&dangling_before)?;
        }
        Ok(row)
    }

    fn median(&self, mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
        let mut times = (0..self.runs).map(|_| f()).collect::<Result<Vec<f64>>>()?;
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    /// One-line edit to main.go: a welcome text never built before (the builders' caches are
    /// content-addressed: a text seen in an earlier run would be a cache hit).
    fn edit(&self) -> Result<()> {
        let n = self.edits.get() + 1;
        self.edits.set(n);
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let edited = self.original_main.replace(
            "Welcome to go-docker-prod!",
            &format!("Welcome to go-docker-prod! #{n}.{nonce}"),
        );
        fs::write(self.ws.join("go-app/main.go"), edited)
            .context("editing the bench copy of main.go")
    }

    /// Builds `who` once; returns the wall time in seconds.
    fn build(&self, who: Who, cold: bool) -> Result<f64> {
        let started = Instant::now();
        match who {
            Who::Limit => self.host_build(cold)?,
            Who::Ours(strategy, builder) => {
                let tag = who.tag();
                // "compress" is the handoff with UPX.
                let (strategy, compress) = match strategy {
                    "compress" => ("handoff", Some("--compress")),
                    other => (other, None),
                };
                let mut args = vec![
                    "image",
                    "--strategy",
                    strategy,
                    "--builder",
                    builder,
                    "--tag",
                    &tag,
                ];
                args.extend(["--builder-image", &self.builder_image]);
                args.extend(compress);
                if cold {
                    args.push("--no-cache");
                }
                self.xtask(&args)?;
            }
            Who::SeedMultistage(builder) => self.seed_build(
                builder,
                "seed-multistage.Dockerfile",
                &who.tag(),
                &self.ws.join("go-app"),
                cold,
            )?,
            Who::SeedHandoff(builder) => {
                let fat = format!("{}-builder", who.tag());
                let go_app = self.ws.join("go-app");
                self.seed_build(builder, "seed-ex1.Dockerfile", &fat, &go_app, cold)?;
                let dist = self.ws.join("dist-seed");
                fs::create_dir_all(&dist)?;
                let volume = format!("{dist}:/dist");
                run_quiet(duct::cmd(
                    "docker",
                    ["run", "--rm", "-v", &volume, &fat, "cp", "./main", "/dist/"],
                ))?;
                self.seed_build(builder, "seed-ex2.Dockerfile", &who.tag(), &dist, cold)?;
            }
        }
        Ok(started.elapsed().as_secs_f64())
    }

    fn seed_build(
        &self,
        builder: &str,
        file: &str,
        tag: &str,
        context: &Utf8Path,
        cold: bool,
    ) -> Result<()> {
        let dockerfile = self.ctx.paths.root.join("xtask/bench").join(file);
        let base = format!("BUILDER_IMAGE={}", self.builder_image);
        let mut args = vec![
            "build",
            "-q",
            "-t",
            tag,
            "-f",
            dockerfile.as_str(),
            "--build-arg",
            &base,
        ];
        if cold {
            args.push("--no-cache");
        }
        args.push(context.as_str());
        let buildkit = if builder == "buildkit" { "1" } else { "0" };
        run_quiet(duct::cmd("docker", args).env("DOCKER_BUILDKIT", buildkit))
    }

    /// `go build` in the bench's GOPATH stage, with our flags; cold means an empty GOCACHE.
    fn host_build(&self, cold: bool) -> Result<()> {
        let stage = self.ws.join("target/gopath/src").join(crate::project::APP);
        fs::copy(self.ws.join("go-app/main.go"), stage.join("main.go"))?;
        let cache = self.ws.join("target/bench-gocache");
        if cold {
            fsx::remove_dir(&cache)?;
        }
        let out = self.ws.join("target/limit-main");
        let mut cmd = duct::cmd(
            "go",
            [
                "build",
                "-ldflags",
                &gobuild::ldflags("bench"),
                "-o",
                out.as_str(),
                ".",
            ],
        )
        .dir(&stage)
        .env("GOPATH", self.ws.join("target/gopath"))
        .env("GOCACHE", &cache);
        for (k, v) in gobuild::ENV {
            cmd = cmd.env(k, v);
        }
        run_quiet(cmd)
    }

    /// Runs this xtask in the bench copy, with the global flags the bench was given.
    fn xtask(&self, args: &[&str]) -> Result<()> {
        let mut all: Vec<&str> = args.to_vec();
        if self.ctx.global.offline {
            all.push("--offline");
        }
        if self.ctx.global.no_setup {
            all.push("--no-setup");
        }
        run_quiet(duct::cmd(self.exe.as_std_path(), all).dir(&self.ws))
    }

    /// Bytes the client sends as build context: the context directory less what .dockerignore drops.
    fn context_bytes(&self, who: Who) -> Result<u64> {
        let go_app = dir_bytes(&self.ws.join("go-app"), &ignored(&self.ws.join("go-app"))?)?;
        Ok(match who {
            Who::Ours("handoff" | "compress", _) => go_app + dir_bytes(&self.ws.join("dist"), &[])?,
            Who::SeedHandoff(_) => go_app + dir_bytes(&self.ws.join("dist-seed"), &[])?,
            _ => go_app,
        })
    }

    /// `docker system df`: images plus build cache, in bytes.
    fn docker_disk(&self) -> f64 {
        docker::disk_usage(self.ctx, &["Images", "Build Cache"]) as f64
    }

    fn dangling(&self) -> Result<Vec<String>> {
        let out = duct::cmd(
            "docker",
            [
                "image",
                "ls",
                "-q",
                "--no-trunc",
                "--filter",
                "dangling=true",
            ],
        )
        .read()?;
        Ok(out.lines().map(str::to_string).collect())
    }

    fn remove_new_dangling(&self, before: &[String]) -> Result<()> {
        let new: Vec<String> = self
            .dangling()?
            .into_iter()
            .filter(|d| !before.contains(d))
            .collect();
        if !new.is_empty() {
            let mut args = vec!["image".to_string(), "rm".to_string(), "-f".to_string()];
            args.extend(new);
            run_quiet(duct::cmd("docker", args))?;
        }
        Ok(())
    }

    /// The xtask's own cost: a cold compile, and `cargo xtask --help` once compiled.
    fn xtask_metrics(&self) -> Result<Vec<(String, f64)>> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target = self.ctx.paths.target().join("bench/cargo-cold");
        fsx::remove_dir(&target)?;
        let root = &self.ctx.paths.root;
        let started = Instant::now();
        run_quiet(
            duct::cmd(
                &cargo,
                [
                    "build",
                    "-q",
                    "-p",
                    "xtask",
                    "--target-dir",
                    target.as_str(),
                ],
            )
            .dir(root),
        )?;
        let compile = started.elapsed().as_secs_f64();
        fsx::remove_dir(&target)?;
        let help = self.median(|| {
            let started = Instant::now();
            run_quiet(duct::cmd(&cargo, ["xtask", "--help"]).dir(root))?;
            Ok(started.elapsed().as_secs_f64())
        })?;
        Ok(vec![
            ("xtask cold compile (s)".into(), compile),
            ("cargo xtask --help, compiled (s)".into(), help),
        ])
    }

    /// Removes the bench's images (its tags and the builder tags beside them) and its copy.
    fn cleanup(&self) {
        let mut args: Vec<String> = ["image", "ls", "-q"].map(String::from).into();
        for name in [BENCH_IMAGE, &format!("{BENCH_IMAGE}-builder")] {
            args.extend(["--filter".to_string(), format!("reference={name}")]);
        }
        let out = duct::cmd("docker", args).read().unwrap_or_default();
        let mut ids: Vec<String> = out.lines().map(str::to_string).collect();
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let mut args = vec!["image".to_string(), "rm".to_string(), "-f".to_string()];
            args.extend(ids);
            let _ = run_quiet(duct::cmd("docker", args));
        }
        let _ = fsx::remove_dir(&self.ws);
    }
}

/// Runs a command with its output captured; on failure, says what failed with its stderr.
fn run_quiet(cmd: duct::Expression) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.stdout_capture().stderr_capture().unchecked().run()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        bail!(
            "{shown} failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// The simple patterns of a .dockerignore (`name`, `*suffix`), enough for ours.
fn ignored(context: &Utf8Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(context.join(".dockerignore")).unwrap_or_default();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

fn dir_bytes(dir: &Utf8Path, ignore: &[String]) -> Result<u64> {
    let mut total = 0;
    let matches = |name: &str| {
        ignore.iter().any(|p| {
            p == name
                || p.strip_prefix('*')
                    .is_some_and(|suffix| name.ends_with(suffix))
        })
    };
    for entry in dir.read_dir_utf8()? {
        let entry = entry?;
        if matches(entry.file_name()) {
            continue;
        }
        total += if entry.file_type()?.is_dir() {
            dir_bytes(entry.path(), &[])?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(total)
}

fn render(rows: &[Row], extra: &[(String, f64)], runs: usize, quick: bool) -> String {
    let s = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}s"));
    let x = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}x"));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bench: {} (median of {runs} run{})\n",
        if quick {
            "quick, one-line-edit rebuild only"
        } else {
            "full"
        },
        if runs == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "| contender | cold | no change | 1-line edit | image | context | disk/cycle | dangling | edit ÷ seed | edit ÷ limit | cold ÷ limit |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            s(r.cold),
            s(r.noop),
            s(r.edit),
            r.size.map_or("-".into(), human_size),
            r.context.map_or("-".into(), human_size),
            r.disk_per_cycle
                .map_or("-".into(), |d| human_size(d.max(0.0) as u64)),
            r.dangling.map_or("-".into(), |d| d.to_string()),
            x(r.edit_vs_seed),
            x(r.edit_vs_limit),
            x(r.cold_vs_limit),
        );
    }
    for (name, value) in extra {
        let _ = writeln!(out, "\n{name}: {value:.2}");
    }
    out
}

fn to_json(rows: &[Row], extra: &[(String, f64)], runs: usize, quick: bool) -> String {
    let num = |v: Option<f64>| v.map_or("null".into(), |v| format!("{v:.4}"));
    let int = |v: Option<u64>| v.map_or("null".into(), |v| v.to_string());
    let rows: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "    {{\"contender\": {:?}, \"cold_s\": {}, \"noop_s\": {}, \"edit_s\": {}, \"image_bytes\": {}, \"context_bytes\": {}, \"disk_per_cycle_bytes\": {}, \"dangling\": {}, \"edit_vs_seed\": {}, \"edit_vs_limit\": {}, \"cold_vs_limit\": {}}}",
                r.name,
                num(r.cold),
                num(r.noop),
                num(r.edit),
                int(r.size),
                int(r.context),
                num(r.disk_per_cycle),
                int(r.dangling.map(|d| d as u64)),
                num(r.edit_vs_seed),
                num(r.edit_vs_limit),
                num(r.cold_vs_limit),
            )
        })
        .collect();
    let extra: Vec<String> = extra
        .iter()
        .map(|(k, v)| format!("    {k:?}: {v:.4}"))
        .collect();
    format!(
        "{{\n  \"quick\": {quick},\n  \"runs\": {runs},\n  \"rows\": [\n{}\n  ],\n  \"xtask\": {{\n{}\n  }}\n}}\n",
        rows.join(",\n"),
        extra.join(",\n")
    )
}
