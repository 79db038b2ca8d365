//! From Glide to Go modules, proved before anything of the app changes. The new files are staged
//! in a copy of go-app/ under target/: `go.mod` (the module path from glide.yaml's `package`, a
//! `require` for each import of glide.lock: its release tag when glide.yaml asks for that tag,
//! else a pseudo-version from the pinned commit and its date), and `vendor/` with
//! `vendor/modules.txt`, made by `go mod vendor` when the module proxy answers, else from glide's
//! vendor/ (the only source offline, where go.sum stays unwritten: its hashes must be the
//! published modules'). Then the copy must pass the app's tests in module mode, serve what the
//! GOPATH build serves on every route, and `go version -m` must list each dependency at the
//! version that names glide.lock's commit. Only then is go-app/ changed.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::pipeline::app::{self, App};
use crate::{
    cmd,
    infra::{ctx::Ctx, fsx, http, net, tools::Go},
    pipeline::{
        deps::{self, Dependency},
        gobuild::{self, Mode},
    },
    project::Paths,
};

/// The `go` line of the new go.mod: the oldest Go this project supports (a newer line would make
/// an older Go want to download another toolchain).
pub const GO_LINE: &str = "1.26";

/// The routes both binaries must answer alike (the smoke test's and the app's others, and one
/// that is not there).
const ROUTES: [&str; 6] = ["/", "/about", "/hello/x", "/healthz", "/version", "/nope"];

/// What the module will require, from glide's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Require {
    pub path: String,
    /// `v1.3.0`, or a pseudo-version.
    pub version: String,
    /// The commit glide.lock pins.
    pub commit: String,
}

/// The new module: its path and what it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    pub requires: Vec<Require>,
}

impl Module {
    /// From go-app/'s glide files; `commit_time` gives a pinned commit's time (seconds) for a
    /// dependency glide.yaml pins by commit only.
    /// The module path is glide.yaml's `package`, else `fallback` (the app's name: glide.yaml
    /// may say `package: ""`).
    pub fn from_glide(
        go_app: &Utf8Path,
        fallback: &str,
        commit_time: impl Fn(&Dependency) -> Option<u64>,
    ) -> Result<Module> {
        let path = app::glide_package(go_app).unwrap_or_else(|| fallback.to_string());
        let mut requires = Vec::new();
        for dep in deps::dependencies(go_app)? {
            let commit = dep.commit.clone().unwrap_or_default();
            let version = match dep.version.as_deref().and_then(release) {
                Some(tag) => tag,
                None => {
                    let Some(time) = commit_time(&dep) else {
                        let asked = match dep.version.as_deref() {
                            Some(v) if is_short_tag(v) => format!(
                                "glide.yaml asks for `{v}`, a tag Go's modules do not take as a \
                                 version (they need vMAJOR.MINOR.PATCH)"
                            ),
                            Some(v) => format!("glide.yaml asks for `{v}`, not a release tag"),
                            None => "glide.yaml names no version".into(),
                        };
                        bail!(
                            "{} is pinned to commit {commit} and {asked}; Go's pseudo-version of \
                             that commit needs its date, which is unknown here: run migrate online \
                             (glide's clone has the date), or set glide.yaml's version to a \
                             three-part release tag of that commit (`v1.1.0`)",
                            dep.name
                        );
                    };
                    pseudo_version(&commit, time)
                }
            };
            requires.push(Require {
                path: dep.name,
                version,
                commit,
            });
        }
        Ok(Module { path, requires })
    }

    pub fn go_mod(&self) -> String {
        let mut text = format!("module {}\n\ngo {GO_LINE}\n", self.path);
        match self.requires.as_slice() {
            [] => {}
            [one] => text += &format!("\nrequire {} {}\n", one.path, one.version),
            many => {
                text += "\nrequire (\n";
                for r in many {
                    text += &format!("\t{} {}\n", r.path, r.version);
                }
                text += ")\n";
            }
        }
        text
    }

    /// `vendor/modules.txt` for `packages` (module path → its vendored packages), as Go writes it.
    pub fn modules_txt(&self, packages: &BTreeMap<String, Vec<String>>) -> String {
        let mut text = String::new();
        for r in &self.requires {
            text += &format!("# {} {}\n## explicit\n", r.path, r.version);
            for package in packages.get(&r.path).into_iter().flatten() {
                text += &format!("{package}\n");
            }
        }
        text
    }
}

/// A release tag as Go's module versions take it (`v1.3.0`; `1.3.0` gets its `v`), else None.
fn release(version: &str) -> Option<String> {
    let bare = version.trim_start_matches('v');
    let parts: Vec<&str> = bare.split('.').collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
    .then(|| format!("v{bare}"))
}

/// `v1.1`, `1.1`: a two-part tag.
fn is_short_tag(version: &str) -> bool {
    let parts: Vec<&str> = version.trim_start_matches('v').split('.').collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Go's pseudo-version for a commit with no tag: `v0.0.0-YYYYMMDDhhmmss-abcdefabcdef`.
pub fn pseudo_version(commit: &str, time: u64) -> String {
    let stamp = crate::pipeline::meta::rfc3339(time).replace(['-', ':', 'T', 'Z'], "");
    format!("v0.0.0-{stamp}-{}", &commit[..commit.len().min(12)])
}

/// What `migrate` did.
pub enum Outcome {
    /// go.mod was there already.
    AlreadyModules {
        glide_left: bool,
    },
    /// `--dry-run`: what it would write.
    WouldWrite(Vec<(Utf8PathBuf, String)>),
    Migrated(Migrated),
}

pub struct Migrated {
    pub module: Module,
    /// go.sum written (the proxy answered); else the command that completes it online.
    pub go_sum: bool,
    /// Where vendor/ came from.
    pub vendor_from: String,
    pub answers: usize,
}

/// Converts the checkout's app, proved first (see the module's doc).
pub fn migrate(ctx: &Ctx, go: &Go, app: &App) -> Result<Outcome> {
    let paths = &ctx.paths;
    let go_app = paths.go_app();
    if Mode::of(paths) == Mode::Modules {
        let glide_left = go_app.join("glide.yaml").exists() || go_app.join("glide.lock").exists();
        return Ok(Outcome::AlreadyModules { glide_left });
    }
    // Glide's vendor/ first: the GOPATH build to compare with, and the offline source.
    deps::vendor(ctx, paths, app, || Ok(go.clone()))?;
    let module = Module::from_glide(&go_app, &app.name, |dep| commit_time(ctx, paths, dep))?;
    if app::glide_package(&go_app).is_none() {
        ctx.announce(format!(
            "glide.yaml names no package: the module path is `{}`, the app's name (edit go.mod's \
             first line for another)",
            module.path
        ));
    }
    let glide_vendor = paths.gopath_app(&app.import_path).join("vendor");
    let packages = vendored_packages(&glide_vendor, &module)?;
    let go_mod = module.go_mod();
    let modules_txt = module.modules_txt(&packages);
    let planned = vec![
        (go_app.join("go.mod"), go_mod.clone()),
        (go_app.join("vendor/modules.txt"), modules_txt.clone()),
    ];
    let staging = ctx.change(
        "stage the module in a copy of go-app/ under target/",
        || fsx::Temp::dir_in(&paths.xtask_dir(), ".migrate-"),
    )?;
    let Some(stage) = staging else {
        return Ok(Outcome::WouldWrite(planned)); // --dry-run
    };
    let staged = Paths::at(stage.path().to_path_buf())?;
    ctx.step("stage go.mod and vendor/ in a copy of go-app/", || {
        copy_app(&go_app, &staged.go_app())?;
        std::fs::write(staged.go_app().join("go.mod"), &go_mod)?;
        Ok(())
    })?;
    let (go_sum, vendor_from) = ctx.step("vendor/ for the module", || {
        vendor_module(ctx, go, &staged, &glide_vendor, &module, &modules_txt)
    })?;
    let answers = ctx.step(
        "prove it: tests, the same answers, the pinned versions",
        || prove(ctx, go, paths, &staged, app, &module),
    )?;
    ctx.step("move go-app/ to module mode", || {
        apply(ctx, &staged.go_app(), &go_app)
    })?;
    Ok(Outcome::Migrated(Migrated {
        module,
        go_sum,
        vendor_from,
        answers,
    }))
}

/// A pinned commit's time, from glide's cached clone of it (online glide keeps one).
fn commit_time(ctx: &Ctx, paths: &Paths, dep: &Dependency) -> Option<u64> {
    let commit = dep.commit.as_deref()?;
    let cache = paths.glide_home(false).join("cache/src");
    let repos = cache.read_dir_utf8().ok()?;
    repos.filter_map(|e| e.ok()).find_map(|repo| {
        let dir = repo.path();
        ctx.try_read(cmd!("git -C {dir} show -s --format=%ct {commit}"))
            .and_then(|t| t.trim().parse().ok())
    })
}

/// The Go packages glide vendored for each required module.
fn vendored_packages(vendor: &Utf8Path, module: &Module) -> Result<BTreeMap<String, Vec<String>>> {
    let mut packages = BTreeMap::new();
    for r in &module.requires {
        let root = vendor.join(&r.path);
        let mut found = Vec::new();
        if root.is_dir() {
            collect_packages(&root, &r.path, &mut found)?;
        } else {
            // Not vendored yet (--dry-run on a fresh checkout): the module's root package.
            found.push(r.path.clone());
        }
        found.sort();
        packages.insert(r.path.clone(), found);
    }
    Ok(packages)
}

fn collect_packages(dir: &Utf8Path, import: &str, found: &mut Vec<String>) -> Result<()> {
    let mut has_go = false;
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
    {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_dir() {
            if !["testdata", "vendor"].contains(&name) && !name.starts_with(['.', '_']) {
                collect_packages(entry.path(), &format!("{import}/{name}"), found)?;
            }
        } else if name.ends_with(".go") && !name.ends_with("_test.go") {
            has_go = true;
        }
    }
    if has_go {
        found.push(import.to_string());
    }
    Ok(())
}

/// go-app/ without vendor/ (glide's, made again for the module).
fn copy_app(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    // Names need not be UTF-8 (`fsx::copy_tree`).
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {from}"))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "vendor" || name.as_encoded_bytes().starts_with(b".vendor.old-") {
            continue;
        }
        let target = to.as_std_path().join(&name);
        if entry.file_type()?.is_dir() {
            fsx::copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// vendor/ in the staged app: `go mod vendor` (and go.sum) when the module proxy answers, else
/// glide's vendored files with `modules_txt`. Whether go.sum was written, and the source said.
fn vendor_module(
    ctx: &Ctx,
    go: &Go,
    staged: &Paths,
    glide_vendor: &Utf8Path,
    module: &Module,
    modules_txt: &str,
) -> Result<(bool, String)> {
    let app = staged.go_app();
    let online = !ctx.offline && net::https_reachable("proxy.golang.org", Duration::from_secs(3));
    if online && !module.requires.is_empty() {
        // Go itself, from the published modules, with their real hashes in go.sum.
        let env = [("PATH", go.path_env()), ("GOFLAGS", "-mod=mod".into())];
        let vendored = ctx
            .run(cmd!("go mod vendor").envs(&env).dir(&app))
            .and_then(|_| ctx.run(cmd!("go mod verify").envs(&env).dir(&app)));
        match vendored {
            Ok(_) => return Ok((true, "the published modules (`go mod vendor`)".into())),
            Err(e) => ctx.announce(format!(
                "`go mod vendor` failed ({e:#}): vendor/ comes from glide's copy, go.sum stays \
                 unwritten"
            )),
        }
        let _ = std::fs::remove_file(app.join("go.sum"));
        let _ = fsx::remove_dir(&app.join("vendor"));
    } else if !module.requires.is_empty() {
        let why = if ctx.offline {
            "--offline"
        } else {
            "the module proxy is unreachable"
        };
        ctx.announce(format!(
            "{why}: vendor/ comes from glide's copy of the dependencies, and go.sum stays \
             unwritten (its hashes must be the published modules', which are not here)"
        ));
    }
    let vendor = app.join("vendor");
    for r in &module.requires {
        fsx::copy_dir(&glide_vendor.join(&r.path), &vendor.join(&r.path))?;
    }
    std::fs::create_dir_all(&vendor)?;
    std::fs::write(vendor.join("modules.txt"), modules_txt)?;
    Ok((
        false,
        "glide's vendor/ (where GitHub was unreachable, Debian's source of it: not byte-identical \
         to the published module)"
            .into(),
    ))
}

/// The staged module passes the app's tests, its binary answers every route as the GOPATH
/// build's does, and lists each dependency at its required version: how many answers matched.
fn prove(
    ctx: &Ctx,
    go: &Go,
    paths: &Paths,
    staged: &Paths,
    contract: &App,
    module: &Module,
) -> Result<usize> {
    let env = gobuild::go_env(go, staged);
    let app = staged.go_app();
    ctx.run(cmd!("go test -count=1 ./...").envs(&env).dir(&app).kept())
        .context("the app's tests fail in module mode: nothing was changed")?;
    let dir = staged.target();
    std::fs::create_dir_all(&dir)?;
    let (modules_dir, gopath_dir) = (dir.join("modules"), dir.join("gopath"));
    let version = "migrate";
    gobuild::start(ctx, go, staged, contract, &modules_dir, None, version)?.wait()?;
    gobuild::start(ctx, go, paths, contract, &gopath_dir, None, version)?.wait()?;
    let (modules_bin, gopath_bin) = (
        modules_dir.join(contract.entrypoint()),
        gopath_dir.join(contract.entrypoint()),
    );
    let listed = ctx.read(cmd!("go version -m {modules_bin}").env("PATH", go.path_env()))?;
    for r in &module.requires {
        let line = format!("dep\t{}\t{}", r.path, r.version);
        if !listed.lines().any(|l| l.trim_start().starts_with(&line)) {
            bail!(
                "`go version -m` does not list {} {} (glide.lock's {}):\n{listed}",
                r.path,
                r.version,
                r.commit
            );
        }
        if let Some(named) = deps::pseudo_commit(&r.version) {
            if !r.commit.starts_with(&named) {
                bail!(
                    "{} {} names commit {named}, not glide.lock's {}",
                    r.path,
                    r.version,
                    r.commit
                );
            }
        }
    }
    let theirs = answers(ctx, contract, &gopath_bin)?;
    let ours = answers(ctx, contract, &modules_bin)?;
    for ((route, a), (_, b)) in theirs.iter().zip(&ours) {
        if a != b {
            bail!("GET {route}: the GOPATH build answers {a:?}, the module build {b:?}: nothing was changed");
        }
    }
    Ok(ours.len())
}

/// What the binary at `bin`, serving on a free loopback port, answers on each of `ROUTES`.
fn answers(ctx: &Ctx, app: &App, bin: &Utf8Path) -> Result<Vec<(String, (u16, String))>> {
    // On a free port where the app takes one; else on its own, which must be free.
    let port = match &app.port_env {
        Some(_) => net::free_port()?,
        None => app.port,
    };
    let addr = format!("127.0.0.1:{port}");
    // Dies with the xtask: a `kill -9` during the comparison leaves no server behind.
    let mut cmd = crate::infra::process::Cmd::new(bin)
        .kept()
        .dies_with_xtask();
    for (key, value) in &app.env {
        cmd = cmd.env(key, value);
    }
    if let Some(var) = &app.port_env {
        cmd = cmd.env(var, port.to_string());
    }
    let server = ctx.start(cmd)?;
    let probe = &app.probes[0];
    let accept = |status, body: &str| probe.accepts(status, body);
    if !http::wait_for(&addr, &probe.path, accept, Duration::from_secs(10)) {
        bail!(
            "{bin} does not answer GET {} with {} on {addr}{}",
            probe.path,
            probe.expected(),
            if app.port_env.is_none() {
                " (its fixed port: is it free?)"
            } else {
                ""
            }
        );
    }
    let routes = ROUTES
        .iter()
        .map(|r| r.to_string())
        .chain(app.probes.iter().map(|p| p.path.clone()));
    let got = routes
        .map(|route| {
            let answer = http::get(&addr, &route)?;
            Ok((route, answer))
        })
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("asking {bin}"));
    drop(server); // stopped
    got
}

/// Makes go-app/ the module: the staged copy (its files, go.mod, go.sum when written, the
/// module's vendor/), less glide's files and with git seeing vendor/, copied beside go-app/ and
/// swapped in whole: at every instant go-app/ is the Glide app or the module, and no scratch is
/// ever inside it. What a crash leaves beside it the next run removes (`recover`).
fn apply(ctx: &Ctx, staged: &Utf8Path, go_app: &Utf8Path) -> Result<()> {
    ctx.change(
        format!("make the module beside {go_app}, then swap it in whole"),
        || {
            let next = fsx::scratch_beside(go_app)?;
            let new = next.path();
            fsx::copy_dir(staged, new)?;
            for name in ["glide.yaml", "glide.lock"] {
                match std::fs::remove_file(new.join(name)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).with_context(|| format!("removing {name} from {new}"))
                    }
                    _ => {}
                }
            }
            let ignore = new.join(".gitignore");
            if let Ok(text) = std::fs::read_to_string(&ignore) {
                // `vendor`, `/vendor`, `vendor/`, `/vendor/`: each hides the module's vendor/.
                let kept: String = text
                    .lines()
                    .filter(|l| l.trim().trim_matches('/') != "vendor")
                    .map(|l| format!("{l}\n"))
                    .collect();
                std::fs::write(&ignore, kept).with_context(|| format!("writing {ignore}"))?;
            }
            // After the swap `next` holds the Glide app, removed when it drops.
            fsx::exchange(new, go_app)
        },
    )
    .map(drop)
}

/// What an interrupted `migrate` left beside go-app/, put right: the Glide app put back where
/// the crash came between two renames (a filesystem without RENAME_EXCHANGE), the scratch and
/// the old app of a swap that completed removed. Run before any command reads go-app/.
pub fn recover(ctx: &Ctx) -> Result<()> {
    let go_app = ctx.paths.go_app();
    let left = fsx::leftovers_beside(&go_app);
    if left.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = left.iter().filter_map(|l| l.file_name()).collect();
    let what = format!(
        "put right what a stopped `migrate` left beside {go_app}: {}",
        names.join(", ")
    );
    if ctx.change(what, || fsx::restore_beside(&go_app))? == Some(true) {
        ctx.announce("go-app/ was put back: a `migrate` had been stopped between two renames");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module() -> Module {
        Module {
            path: "go-docker-prod".into(),
            requires: vec![Require {
                path: "github.com/julienschmidt/httprouter".into(),
                version: "v1.3.0".into(),
                commit: "4eec211fa4e8df74ed978dc5681612131854144f".into(),
            }],
        }
    }

    #[test]
    fn go_mod_requires_each_import() {
        assert_eq!(
            module().go_mod(),
            format!(
                "module go-docker-prod\n\ngo {GO_LINE}\n\nrequire github.com/julienschmidt/httprouter v1.3.0\n"
            )
        );
        let packages = BTreeMap::from([(
            "github.com/julienschmidt/httprouter".to_string(),
            vec!["github.com/julienschmidt/httprouter".to_string()],
        )]);
        assert_eq!(
            module().modules_txt(&packages),
            "# github.com/julienschmidt/httprouter v1.3.0\n## explicit\ngithub.com/julienschmidt/httprouter\n"
        );
    }

    #[test]
    fn a_tag_is_kept_and_a_bare_commit_gets_a_pseudo_version() {
        assert_eq!(release("v1.3.0").as_deref(), Some("v1.3.0"));
        assert_eq!(release("1.3.0").as_deref(), Some("v1.3.0"));
        assert_eq!(release("^1.3.0"), None);
        assert_eq!(release("master"), None);
        assert_eq!(
            pseudo_version("4eec211fa4e8df74ed978dc5681612131854144f", 1_569_715_200),
            "v0.0.0-20190929000000-4eec211fa4e8"
        );
        assert_eq!(
            deps::pseudo_commit(&pseudo_version("4eec211fa4e8df74", 1_569_715_200)).as_deref(),
            Some("4eec211fa4e8")
        );
    }
}
