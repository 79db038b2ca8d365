//! Dependencies with Glide, in a GOPATH workspace under `target/` (the user never sets GOPATH).
//! Online, `glide install` follows the committed glide.lock. Air-gapped (GitHub unreachable, or
//! `--offline`), glide resolves glide.yaml against a local git mirror of httprouter made from
//! Debian's source, in the workspace copy: the committed lock pins upstream's commit, which the
//! mirror cannot have.

use std::{fs, net::ToSocketAddrs, time::Duration};

use anyhow::{Context, Result};
use camino::Utf8Path;
use xshell::cmd;

use crate::{ctx::Ctx, fsx, tools};

const HTTPROUTER_URL: &str = "https://github.com/julienschmidt/httprouter";
const HTTPROUTER_VERSION: &str = "v1.3.0";
const DEBIAN_HTTPROUTER: &str = "/usr/share/gocode/src/github.com/julienschmidt/httprouter";
/// Fixed dates make the mirror's commit the same on every machine.
const MIRROR_DATE: &str = "2019-09-29T00:00:00Z";
/// The files that define the app and its dependencies, copied into the GOPATH workspace.
const TRACKED: [&str; 2] = ["glide.yaml", "glide.lock"];

/// Stages the app in the GOPATH workspace and fills its vendor/ (and go-app/vendor/, the Docker
/// build context's) with glide. Skips glide (and needs none of its tools) when nothing it depends
/// on changed.
pub fn vendor(ctx: &Ctx) -> Result<()> {
    let stage = ctx.paths.stage();
    let go_app = ctx.paths.go_app();
    if ctx.global.dry_run {
        println!("[dry-run] copy {go_app}/{{*.go,glide.yaml,glide.lock}} to {stage}");
    } else {
        stage_sources(&go_app, &stage)?;
    }
    let stamp_path = ctx.paths.gopath().join(".vendor-stamp");
    // The same glide files give the same vendor/, whether it came from GitHub or the mirror.
    let stamp = format!(
        "{}\n{}",
        fs::read_to_string(go_app.join("glide.yaml")).context("reading go-app/glide.yaml")?,
        fs::read_to_string(go_app.join("glide.lock")).unwrap_or_default()
    );
    let fresh = stage.join("vendor").is_dir()
        && fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str());
    if fresh {
        ctx.announce("vendor/ is up to date with glide.yaml and glide.lock: glide skipped");
    } else {
        // Glide asks `go` for its version and environment: it needs Go on the host too.
        tools::require(ctx, &[tools::GO, tools::GLIDE, tools::GIT])?;
        let offline = ctx.global.offline || !github_reachable();
        if offline {
            let why = if ctx.global.offline {
                "--offline"
            } else {
                "GitHub is unreachable"
            };
            ctx.announce(format!(
                "{why}: glide resolves httprouter {HTTPROUTER_VERSION} from Debian's source (local mirror in target/glide)"
            ));
        }
        ctx.step("glide install", || {
            let home = ctx.paths.glide_home(offline);
            if offline {
                ensure_mirror(ctx, &home)?;
                if !ctx.global.dry_run {
                    let _ = fs::remove_file(stage.join("glide.lock"));
                }
            }
            let sh = &ctx.sh;
            let _dir = sh.push_dir(&stage);
            let env = [("GOPATH", ctx.paths.gopath().to_string())];
            ctx.run_env(&env, cmd!(sh, "glide --no-color --home {home} install"))?;
            if !ctx.global.dry_run {
                fs::write(&stamp_path, &stamp).with_context(|| format!("writing {stamp_path}"))?;
            }
            Ok(())
        })?;
    }
    if ctx.global.dry_run {
        println!("[dry-run] copy {stage}/vendor to {go_app}/vendor");
    } else if !fresh || !go_app.join("vendor").is_dir() {
        let tmp = fsx::TempDir::new(ctx.paths.scratch("vendor"))?;
        let copy = tmp.0.join("vendor");
        fsx::copy_dir(&stage.join("vendor"), &copy)?;
        fsx::replace_dir(&copy, &go_app.join("vendor"))?;
    }
    Ok(())
}

/// Copies the app's Go files and glide files into the GOPATH workspace, dropping stale Go files.
fn stage_sources(go_app: &Utf8Path, stage: &Utf8Path) -> Result<()> {
    fs::create_dir_all(stage).with_context(|| format!("creating {stage}"))?;
    for entry in stage.read_dir_utf8()? {
        let entry = entry?;
        if entry.file_name().ends_with(".go") {
            fs::remove_file(entry.path())?;
        }
    }
    for entry in go_app
        .read_dir_utf8()
        .with_context(|| format!("reading {go_app}"))?
    {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_file() && (name.ends_with(".go") || TRACKED.contains(&name)) {
            fs::copy(entry.path(), stage.join(name))
                .with_context(|| format!("staging {}", entry.path()))?;
        }
    }
    Ok(())
}

/// Can we open a TCP connection to GitHub within 3 s?
fn github_reachable() -> bool {
    let Ok(addrs) = ("github.com", 443).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok())
}

/// Makes the git mirror of httprouter from Debian's source (once) and points glide at it.
fn ensure_mirror(ctx: &Ctx, home: &Utf8Path) -> Result<()> {
    let mirror = ctx.paths.glide_mirror();
    let sh = &ctx.sh;
    if !mirror.join(".git").is_dir() {
        tools::require(ctx, &[tools::HTTPROUTER_SRC])?;
        ctx.announce(format!(
            "making the httprouter mirror from {DEBIAN_HTTPROUTER}"
        ));
        if !ctx.global.dry_run {
            fsx::fresh_dir(&mirror)?;
            fsx::copy_dir(Utf8Path::new(DEBIAN_HTTPROUTER), &mirror)?;
        }
        let _dir = sh.push_dir(&mirror);
        let git = [
            "-c",
            "init.defaultBranch=master",
            "-c",
            "user.name=xtask",
            "-c",
            "user.email=xtask@localhost",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ];
        let dates = [
            ("GIT_AUTHOR_DATE", MIRROR_DATE.to_string()),
            ("GIT_COMMITTER_DATE", MIRROR_DATE.to_string()),
        ];
        ctx.run(cmd!(sh, "git {git...} init -q"))?;
        ctx.run(cmd!(sh, "git {git...} add -A"))?;
        ctx.run_env(
            &dates,
            cmd!(sh, "git {git...} commit -q -m {HTTPROUTER_VERSION}"),
        )?;
        ctx.run(cmd!(sh, "git {git...} tag {HTTPROUTER_VERSION}"))?;
    }
    if !ctx.global.dry_run {
        fs::create_dir_all(home).with_context(|| format!("creating {home}"))?;
    }
    let url = format!("file://{mirror}");
    let mirrors = home.join("mirrors.yaml");
    if !fs::read_to_string(&mirrors).is_ok_and(|m| m.contains(&url)) {
        ctx.run(cmd!(
            sh,
            "glide --no-color --home {home} mirror set {HTTPROUTER_URL} {url} --vcs git"
        ))?;
    }
    Ok(())
}

/// What glide made, for `clean`: the GOPATH workspace, glide's homes and mirror, go-app/vendor.
pub fn clean_paths(ctx: &Ctx) -> Vec<camino::Utf8PathBuf> {
    vec![
        ctx.paths.gopath(),
        ctx.paths.target().join("glide"),
        ctx.paths.go_app().join("vendor"),
    ]
}
