//! Dependencies with Glide, in a GOPATH workspace under `target/` (the user never sets GOPATH).
//! Online, `glide install` follows the committed glide.lock. Air-gapped (GitHub unreachable,
//! `--offline`, or online glide failing), glide resolves glide.yaml against a local git mirror of
//! httprouter made from Debian's source, in the workspace copy: the committed lock pins upstream's
//! commit, which the mirror cannot have.

use std::{fs, time::Duration};

use anyhow::{Context, Result};
use camino::Utf8Path;

use crate::{
    cmd,
    infra::{ctx::Ctx, fsx, net, tools, tools::Go},
    pipeline::app::App,
    project::Paths,
};

const HTTPROUTER_URL: &str = "https://github.com/julienschmidt/httprouter";
const HTTPROUTER_VERSION: &str = "v1.3.0";
const DEBIAN_HTTPROUTER: &str = "/usr/share/gocode/src/github.com/julienschmidt/httprouter";
/// Fixed dates make the mirror's commit the same on every machine.
const MIRROR_DATE: &str = "2019-09-29T00:00:00Z";

/// Copies the app into the GOPATH workspace and fills its vendor/ (and go-app/vendor/, the Docker
/// build context's) with glide. Skips glide (and needs none of its tools) when glide.yaml and
/// glide.lock did not change since it last ran. `go` is looked up only when glide must run.
pub fn vendor(
    ctx: &Ctx,
    paths: &Paths,
    contract: &App,
    go: impl FnOnce() -> Result<Go>,
) -> Result<()> {
    let app = paths.gopath_app(&contract.import_path);
    let go_app = paths.go_app();
    ctx.change(format!("copy {go_app} (but vendor/) to {app}"), || {
        copy_sources(&go_app, &app)
    })?;
    let stamp_path = paths.gopath().join(".vendor-stamp");
    // The same glide files give the same vendor/, whether it came from GitHub or the mirror.
    let stamp = format!(
        "{}\n{}",
        fs::read_to_string(go_app.join("glide.yaml")).context("reading go-app/glide.yaml")?,
        fs::read_to_string(go_app.join("glide.lock")).unwrap_or_default()
    );
    // Fresh: glide ran for these glide files, and vendor/ still holds what it made (the digest of
    // its content is in the stamp too).
    let made = || fsx::tree_digest(&app.join("vendor")).ok();
    let fresh = app.join("vendor").is_dir()
        && made().is_some_and(|digest| {
            fs::read_to_string(&stamp_path).ok() == Some(format!("{stamp}\n{digest}"))
        });
    if fresh {
        ctx.announce("vendor/ is up to date with glide.yaml and glide.lock: glide skipped");
    } else {
        let go = go()?;
        tools::require(ctx, &[tools::GLIDE, tools::GIT])?;
        ctx.step("glide install", || {
            let online = !ctx.offline
                && net::https_reachable("github.com", Duration::from_secs(3));
            if online {
                match install(ctx, paths, &app, &go, false) {
                    Ok(()) => return Ok(()),
                    Err(e) => ctx.announce(format!(
                        "glide failed online ({e:#}): trying the local mirror of Debian's httprouter"
                    )),
                }
            } else {
                let why = if ctx.offline { "--offline" } else { "GitHub is unreachable" };
                ctx.announce(format!(
                    "{why}: glide resolves httprouter {HTTPROUTER_VERSION} from Debian's source (local mirror in target/glide)"
                ));
            }
            install(ctx, paths, &app, &go, true)
        })?;
        ctx.change(format!("write {stamp_path}"), || {
            let digest = fsx::tree_digest(&app.join("vendor"))?;
            fsx::write_atomic(&stamp_path, format!("{stamp}\n{digest}").as_bytes())
        })?;
    }
    // go-app/vendor/ (what the Dockerfile builds take) holds the same files, by content.
    let vendor = paths.vendor();
    let same = || {
        fsx::tree_digest(&vendor)
            .ok()
            .is_some_and(|d| Some(d) == made())
    };
    if !fresh || !vendor.is_dir() || !same() {
        ctx.change(format!("copy {app}/vendor to {vendor}"), || {
            fsx::replace_with_copy(&app.join("vendor"), &vendor)
        })?;
    }
    Ok(())
}

fn install(ctx: &Ctx, paths: &Paths, app: &Utf8Path, go: &Go, offline: bool) -> Result<()> {
    let home = paths.glide_home(offline);
    if offline {
        ensure_mirror(ctx, paths, go, &home)?;
        // The committed lock pins upstream's commit: resolve glide.yaml against the mirror.
        ctx.change(format!("rm {app}/glide.lock"), || {
            let _ = fs::remove_file(app.join("glide.lock"));
            Ok(())
        })?;
    }
    // Glide asks `go` for its version and environment.
    let env = [
        ("GOPATH", paths.gopath().to_string()),
        ("PATH", go.path_env()),
    ];
    ctx.run(
        cmd!("glide --no-color --home {home} install")
            .envs(&env)
            .dir(app),
    )?;
    // An app without dependencies gets no vendor/ from glide: the builds take an empty one.
    let vendor = app.join("vendor");
    ctx.change(format!("mkdir -p {vendor}"), || {
        fs::create_dir_all(&vendor).with_context(|| format!("creating {vendor}"))
    })
    .map(drop)
}

/// Copies the app's tree into the GOPATH workspace (its sub-packages import each other by the
/// import path), but vendor/ (glide's, there) and dotfiles; what is gone from go-app/ goes there.
fn copy_sources(go_app: &Utf8Path, app: &Utf8Path) -> Result<()> {
    fs::create_dir_all(app).with_context(|| format!("creating {app}"))?;
    for entry in fs::read_dir(app).with_context(|| format!("reading {app}"))? {
        let entry = entry?;
        if entry.file_name() != "vendor" {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    // Names need not be UTF-8: a file Go never reads may have any name.
    for entry in fs::read_dir(go_app).with_context(|| format!("reading {go_app}"))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "vendor" || name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let (from, to) = (entry.path(), app.as_std_path().join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            fsx::copy_tree(&from, &to)?;
        } else if kind.is_file() {
            fs::copy(&from, &to)
                .with_context(|| format!("copying {} into the GOPATH workspace", from.display()))?;
        }
    }
    Ok(())
}

/// Makes the git mirror of httprouter from Debian's source (once) and points glide at it.
fn ensure_mirror(ctx: &Ctx, paths: &Paths, go: &Go, home: &Utf8Path) -> Result<()> {
    let mirror = paths.glide_mirror();
    if !mirror.join(".git").is_dir() {
        tools::require(ctx, &[tools::HTTPROUTER_SRC])?;
        ctx.announce(format!(
            "making the httprouter mirror from {DEBIAN_HTTPROUTER}"
        ));
        ctx.change(format!("copy {DEBIAN_HTTPROUTER} to {mirror}"), || {
            fsx::remove_dir(&mirror)?;
            fsx::copy_dir(Utf8Path::new(DEBIAN_HTTPROUTER), &mirror)
        })?;
        let git = [
            "-C",
            mirror.as_str(),
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
        ctx.run(cmd!("git {git...} init -q").quiet())?;
        ctx.run(cmd!("git {git...} add -A").quiet())?;
        ctx.run(cmd!("git {git...} commit -q -m {HTTPROUTER_VERSION}").envs(&dates))?;
        ctx.run(cmd!("git {git...} tag {HTTPROUTER_VERSION}").quiet())?;
    }
    ctx.change(format!("mkdir -p {home}"), || {
        fs::create_dir_all(home).with_context(|| format!("creating {home}"))
    })?;
    // Percent-encoded: glide parses the URL, and a checkout path may hold ` `, `#`, `%` or `'`.
    let url = format!("file://{}", percent_encode(mirror.as_str()));
    let mirrors = home.join("mirrors.yaml");
    if !fs::read_to_string(&mirrors).is_ok_and(|m| m.contains(&url)) {
        // Glide asks `go` for its version before anything else.
        let set =
            cmd!("glide --no-color --home {home} mirror set {HTTPROUTER_URL} {url} --vcs git");
        ctx.run(set.env("PATH", go.path_env()))?;
    }
    Ok(())
}

/// A path as a URL path: unreserved characters and `/` stay, every other byte is `%XX`.
fn percent_encode(path: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    // RFC 3986's unreserved characters, and `/` between segments, stay as they are.
    const PATH: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'/');
    utf8_percent_encode(path, PATH).to_string()
}

/// In glide's YAML: the list under `section`, each item's `key` and `value` fields.
pub fn pairs(text: &str, section: &str, key: &str, value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if !line.starts_with([' ', '-']) {
            inside = line.trim() == section;
            continue;
        }
        if !inside {
            continue;
        }
        let item = line.trim_start_matches(['-', ' ']);
        let starts_item = line.trim_start().starts_with('-');
        if starts_item {
            out.extend(current.take());
            current = Some(Default::default());
        }
        if let (Some((k, v)), Some(entry)) = (item.split_once(':'), current.as_mut()) {
            let v = v.trim().trim_matches('"').to_string();
            if k.trim() == key {
                entry.0 = v;
            } else if k.trim() == value {
                entry.1 = v;
            }
        }
    }
    out.extend(current);
    out.retain(|(k, _)| !k.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::pairs;

    #[test]
    fn glide_files_are_read() {
        let lock = "hash: x\nupdated: y\nimports:\n- name: github.com/a/b\n  version: 4eec211\n- name: c.org/d\n  version: abc\n  subpackages:\n  - e\ntestImports: []\n";
        assert_eq!(
            pairs(lock, "imports:", "name", "version"),
            [
                ("github.com/a/b".to_string(), "4eec211".to_string()),
                ("c.org/d".to_string(), "abc".to_string())
            ]
        );
        let yaml = "package: app\nimport:\n- package: github.com/a/b\n  version: v1.3.0\n";
        assert_eq!(
            pairs(yaml, "import:", "package", "version"),
            [("github.com/a/b".to_string(), "v1.3.0".to_string())]
        );
    }

    #[test]
    fn file_urls_take_any_path() {
        assert_eq!(
            super::percent_encode("/home/a b/x#1%'é"),
            "/home/a%20b/x%231%25%27%C3%A9"
        );
    }
}
