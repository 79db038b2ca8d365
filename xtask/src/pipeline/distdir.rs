//! `dist/`: built aside (next to it, so that the final rename never crosses filesystems), with
//! SHA256SUMS, then swapped in whole: a failure leaves the previous `dist/` exactly as it was.

use std::fs;

use anyhow::{Context, Result};
use camino::Utf8Path;

use crate::{
    domain::Platform,
    infra::{
        ctx::{human_size, Ctx, Step},
        fsx,
        process::Running,
        tools::Go,
    },
    pipeline::{app::App, gobuild},
    project::Paths,
};

/// In `dist/`, after a handoff: the builder image it came from, and whether UPX ran.
pub const ORIGIN: &str = ".handoff";

/// A scratch directory for the next `dist/`; what a killed run left beside `dist/` goes first (the
/// checkout's lock is held: no other run of ours is using it).
pub fn scratch(paths: &Paths) -> Result<fsx::Temp> {
    let dist = paths.dist();
    for stale in fsx::leftovers_beside(&dist) {
        fsx::remove_dir(&stale)?;
    }
    fsx::scratch_beside(&dist)
}

/// Writes SHA256SUMS for every file in `dir` (dotfiles aside), then makes `dir` the new `dist/`.
pub fn publish(ctx: &Ctx, paths: &Paths, dir: fsx::Temp) -> Result<()> {
    Staged::new(dir).publish(ctx, paths)
}

/// The next `dist/`, built aside; its SHA256SUMS computed on another thread meanwhile.
pub struct Staged {
    sums: std::thread::JoinHandle<Result<String>>,
    dir: fsx::Temp,
}

impl Staged {
    /// `dir` holds every file it will: its sums start now.
    pub fn new(dir: fsx::Temp) -> Staged {
        let path = dir.path().to_path_buf();
        Staged {
            sums: std::thread::spawn(move || sums(&path)),
            dir,
        }
    }

    pub fn path(&self) -> &Utf8Path {
        self.dir.path()
    }

    /// Writes SHA256SUMS, then makes the directory the new `dist/`.
    pub fn publish(self, ctx: &Ctx, paths: &Paths) -> Result<()> {
        let dist = paths.dist();
        let Staged { sums, dir } = self;
        ctx.change(
            format!("write SHA256SUMS; replace {dist} with the new build"),
            || {
                let sums = sums
                    .join()
                    .map_err(|_| anyhow::anyhow!("computing SHA256SUMS failed"))??;
                let staged = dir.path();
                fs::write(staged.join("SHA256SUMS"), sums).context("writing SHA256SUMS")?;
                fsx::replace_dir(staged, &dist)?;
                dir.keep(); // moved into place: nothing left to remove
                Ok(())
            },
        )
        .map(drop)
    }
}

/// `sha256sum`'s format for the files in `dir`.
fn sums(dir: &Utf8Path) -> Result<String> {
    let mut out = String::new();
    for file in fsx::files_in(dir)? {
        let bytes = fs::read(&file).with_context(|| format!("reading {file}"))?;
        out += &format!(
            "{}  {}\n",
            fsx::sha256_hex(&bytes),
            file.file_name().unwrap_or_default()
        );
    }
    Ok(out)
}

/// The host build: `dist/main` for the host's architecture, plus one binary per `platforms`.
pub fn build_on_host(
    ctx: &Ctx,
    paths: &Paths,
    app: &App,
    go: &Go,
    platforms: &[Platform],
    version: &str,
) -> Result<()> {
    HostBuild::start(ctx, paths, app, go, version)?
        .wait(ctx, paths, app, go, platforms, version)?
        .publish(ctx, paths)
}

/// A host build under way: `dist/main` (and the HTTP health check, when the app has one) being
/// built aside while the xtask does other work.
pub struct HostBuild {
    step: Step,
    /// Dropped first: the builds stop before their directory goes. One `go build` per
    /// `App::builds`.
    main: Vec<Running>,
    healthcheck: Option<Running>,
    tmp: fsx::Temp,
}

impl HostBuild {
    /// Starts `go build` of `dist/main` in the background.
    pub fn start(ctx: &Ctx, paths: &Paths, app: &App, go: &Go, version: &str) -> Result<HostBuild> {
        let step = ctx.begin("go build");
        let start = || {
            let tmp = scratch(paths)?;
            let main = app
                .builds()
                .iter()
                .map(|one| gobuild::start(ctx, go, paths, one, tmp.path(), None, version))
                .collect::<Result<Vec<_>>>()?;
            let healthcheck = app
                .ships_healthcheck()
                .then(|| gobuild::start_healthcheck(ctx, go, paths, tmp.path(), None))
                .transpose()?;
            Ok((tmp, main, healthcheck))
        };
        match start() {
            Ok((tmp, main, healthcheck)) => Ok(HostBuild {
                step,
                main,
                healthcheck,
                tmp,
            }),
            Err(e) => step.end(Err(e)),
        }
    }

    /// Returns once Go links `main` (or has ended, or a signal came).
    pub fn until_linking(&self) {
        for build in &self.main {
            build.until_child("link");
        }
    }

    /// Waits for `main`, builds one binary per `platforms`: the next `dist/`, to publish.
    pub fn wait(
        self,
        ctx: &Ctx,
        paths: &Paths,
        app: &App,
        go: &Go,
        platforms: &[Platform],
        version: &str,
    ) -> Result<Staged> {
        let HostBuild {
            step,
            main,
            healthcheck,
            tmp,
        } = self;
        let result = (|| {
            for build in main {
                build.wait()?;
            }
            healthcheck.map(Running::wait).transpose()?;
            for &platform in platforms {
                let out = tmp.path();
                for one in app.each_main() {
                    gobuild::start(ctx, go, paths, &one, out, Some(platform), version)?.wait()?;
                }
                if app.ships_healthcheck() {
                    gobuild::start_healthcheck(ctx, go, paths, out, Some(platform))?.wait()?;
                }
            }
            Ok(())
        })();
        step.end(result).map(|()| Staged::new(tmp))
    }
}

/// What `dist/` holds, with sizes and checksums.
pub fn print(paths: &Paths) -> Result<()> {
    let dist = paths.dist();
    let sums = fs::read_to_string(dist.join("SHA256SUMS")).context("reading dist/SHA256SUMS")?;
    println!("dist/ ({dist}):");
    for line in sums.lines() {
        if let Some((hash, name)) = line.split_once("  ") {
            let size = fs::metadata(dist.join(name)).map(|m| m.len()).unwrap_or(0);
            println!("  {name:<24} {:>9}  sha256 {hash}", human_size(size));
        }
    }
    Ok(())
}
