//! The app's dependencies, in whichever mode the app is (`gobuild::Mode`): Glide fills vendor/ in
//! GOPATH mode (`glide`); in module mode vendor/ is the module's, committed with go.mod, and is
//! only checked. Also what they are, for the SBOM: glide.lock with glide.yaml's versions, or
//! go.mod with vendor/modules.txt.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use crate::{
    infra::{ctx::Ctx, tools::Go},
    pipeline::{app::App, glide, gobuild::Mode},
    project::Paths,
};

/// vendor/, ready for the build: made by glide (GOPATH mode; `go` is asked for only when glide
/// must run), or checked (module mode).
pub fn vendor(ctx: &Ctx, paths: &Paths, app: &App, go: impl FnOnce() -> Result<Go>) -> Result<()> {
    match Mode::of(paths) {
        Mode::Gopath => glide::vendor(ctx, paths, app, go),
        Mode::Modules => {
            let modules = paths.vendor().join("modules.txt");
            // A module that requires nothing has nothing to vendor: `go mod vendor` writes nothing.
            if !modules.is_file() && requires_any(&paths.go_app())? {
                bail!(
                    "go-app/go.mod is there but not {modules}: module mode builds from the \
                     committed vendor/. Run `go mod vendor` in go-app/ (online), or check out the \
                     vendor/ that `cargo xtask migrate` wrote"
                );
            }
            Ok(())
        }
    }
}

/// Whether go.mod requires any module (a `require` directive, alone or as a block).
fn requires_any(go_app: &Utf8Path) -> Result<bool> {
    let text = std::fs::read_to_string(go_app.join("go.mod")).context("reading go-app/go.mod")?;
    Ok(text.lines().any(|l| {
        let l = l.trim();
        l == "require" || l.starts_with("require ") || l.starts_with("require(")
    }))
}

/// What the xtask made that `clean` removes: glide's workspace, and vendor/ in GOPATH mode only
/// (in module mode vendor/ is the user's, committed).
pub fn made_paths(paths: &Paths) -> Vec<camino::Utf8PathBuf> {
    let mut made = vec![paths.gopath(), paths.glide_dir()];
    if Mode::of(paths) == Mode::Gopath {
        made.push(paths.vendor());
    }
    made
}

/// A dependency the binary is built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The import path (`github.com/julienschmidt/httprouter`).
    pub name: String,
    /// The release (`v1.3.0`) or pseudo-version, when known.
    pub version: Option<String>,
    /// The pinned commit, when known (glide.lock pins one; a pseudo-version names one).
    pub commit: Option<String>,
}

/// The app's dependencies, from the files of its mode.
pub fn dependencies(go_app: &Utf8Path) -> Result<Vec<Dependency>> {
    if go_app.join("go.mod").is_file() {
        let modules = go_app.join("vendor/modules.txt");
        if !modules.is_file() && !requires_any(go_app)? {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(modules).context("reading go-app/vendor/modules.txt")?;
        return Ok(modules_txt(&text));
    }
    let read = |name: &str| {
        std::fs::read_to_string(go_app.join(name)).with_context(|| format!("reading go-app/{name}"))
    };
    let (yaml, lock) = (read("glide.yaml")?, read("glide.lock")?);
    let wanted: BTreeMap<String, String> = glide::pairs(&yaml, "import:", "package", "version")
        .into_iter()
        .collect();
    Ok(glide::pairs(&lock, "imports:", "name", "version")
        .into_iter()
        .map(|(name, commit)| Dependency {
            version: wanted.get(&name).cloned(),
            commit: Some(commit),
            name,
        })
        .collect())
}

/// The modules `vendor/modules.txt` lists (`# PATH VERSION` lines; a replaced module's
/// `# PATH VERSION => …` keeps the version it replaces).
fn modules_txt(text: &str) -> Vec<Dependency> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            let (name, version) = (words.next()?, words.next()?);
            Some(Dependency {
                name: name.to_string(),
                commit: pseudo_commit(version),
                version: Some(version.to_string()),
            })
        })
        .collect()
}

/// The commit a pseudo-version names (`v0.0.0-20190929000000-4eec211fa4e8` → `4eec211fa4e8`).
pub fn pseudo_commit(version: &str) -> Option<String> {
    let last = version.rsplit('-').next()?;
    let stamp = version.rsplit('-').nth(1)?;
    let stamp = stamp.rsplit('.').next()?;
    (last.len() == 12
        && last.chars().all(|c| c.is_ascii_hexdigit())
        && stamp.len() == 14
        && stamp.chars().all(|c| c.is_ascii_digit()))
    .then(|| last.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_txt_gives_each_module_and_its_version() {
        let text = "# github.com/julienschmidt/httprouter v1.3.0\n## explicit\n\
                    github.com/julienschmidt/httprouter\n\
                    # example.com/x v0.0.0-20190929000000-4eec211fa4e8\n## explicit; go 1.12\nexample.com/x\n";
        let deps = modules_txt(text);
        assert_eq!(deps.len(), 2);
        assert_eq!(deps[0].name, "github.com/julienschmidt/httprouter");
        assert_eq!(deps[0].version.as_deref(), Some("v1.3.0"));
        assert_eq!(deps[0].commit, None);
        assert_eq!(deps[1].commit.as_deref(), Some("4eec211fa4e8"));
    }

    #[test]
    fn only_a_pseudo_version_names_a_commit() {
        assert_eq!(pseudo_commit("v1.3.0"), None);
        assert_eq!(
            pseudo_commit("v1.3.1-0.20190929000000-4eec211fa4e8").as_deref(),
            Some("4eec211fa4e8")
        );
        assert_eq!(pseudo_commit("v2.0.0-beta-1"), None);
    }
}
