//! What the pipeline asks git: the commit (its hash and time), a version to stamp, the source URL
//! for the image label, and throwaway worktrees.

use crate::cmd;
use anyhow::{Context, Result};
use camino::Utf8Path;

use crate::infra::ctx::Ctx;

/// The commit a checkout is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub hash: String,
    /// The committer's time, seconds since the epoch: the images' creation time.
    pub time: u64,
}

/// HEAD of the repository at `dir`, if it is one.
pub fn head(ctx: &Ctx, dir: &Utf8Path) -> Option<Commit> {
    let out = ctx.try_read(cmd!("git -C {dir} log -1 --format=%H%x20%ct"))?;
    let (hash, time) = out.split_once(' ')?;
    Some(Commit {
        hash: hash.to_string(),
        time: time.trim().parse().ok()?,
    })
}

/// `git describe --tags --always --dirty`, as git says it (outside a repository: None).
pub fn describe(ctx: &Ctx, dir: &Utf8Path) -> Option<String> {
    ctx.try_read(cmd!("git -C {dir} describe --tags --always --dirty"))
}

/// The `origin` remote as configured (never through `url.*.insteadOf`, which is where tokens
/// live), made safe to publish: an `https://` URL without user info, query or fragment; anything
/// else (scp-style `user@host:path`, `ssh://`, local paths) is left out.
pub fn public_source(ctx: &Ctx, dir: &Utf8Path) -> Option<String> {
    let raw = ctx.try_read(cmd!("git -C {dir} config --get remote.origin.url"))?;
    public_url(&raw)
}

pub fn public_url(raw: &str) -> Option<String> {
    let rest = raw.trim().strip_prefix("https://")?;
    let rest = rest.split(['?', '#']).next()?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    {
        return None;
    }
    Some(if path.is_empty() {
        format!("https://{host}")
    } else {
        format!("https://{host}/{path}")
    })
}

/// Checks `revision` out into `dir` (a new detached worktree of the repository at `repo`).
pub fn add_worktree(ctx: &Ctx, repo: &Utf8Path, dir: &Utf8Path, revision: &str) -> Result<()> {
    ctx.run(cmd!("git -C {repo} worktree add --detach --quiet {dir} {revision}").quiet())
        .map(drop)
        .with_context(|| format!("checking out {revision} into {dir}"))
}

/// Removes a worktree made by `add_worktree` (also after a signal).
pub fn remove_worktree(ctx: &Ctx, repo: &Utf8Path, dir: &Utf8Path) -> Result<()> {
    ctx.cleanup(cmd!("git -C {repo} worktree remove --force {dir}"))
}

#[cfg(test)]
mod tests {
    use super::public_url;

    #[test]
    fn only_clean_https_urls_are_published() {
        assert_eq!(
            public_url("https://oauth2:TOKEN@github.com/acme/app.git?x=1#frag").as_deref(),
            Some("https://github.com/acme/app.git")
        );
        assert_eq!(
            public_url("https://github.com/a/b").as_deref(),
            Some("https://github.com/a/b")
        );
        assert_eq!(public_url("git@github.com:acme/app.git"), None);
        assert_eq!(public_url("ssh://me@host/home/me/app"), None);
        assert_eq!(public_url("/home/me/app"), None);
        assert_eq!(public_url("http://host/x"), None);
    }
}
