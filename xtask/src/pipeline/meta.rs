//! What an image says about itself: the OCI labels and ours, from values that are the same on
//! every machine (the commit, its time, the version, the Go and builder base used). Never a host
//! path, a checkout id or a build time.

use crate::project;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub version: String,
    /// The commit's hash, or "unknown" outside git.
    pub revision: String,
    /// Seconds since the epoch: SOURCE_DATE_EPOCH when set, else the commit's time, else 0.
    pub epoch: u64,
    /// An `https://` URL safe to publish, or "" (see `git::public_source`).
    pub source: String,
    /// The Go that built the binary: `go1.27.4`.
    pub go: String,
    /// The builder base image (Go toolchain, CA bundle).
    pub builder_base: String,
    /// How the app's dependencies are managed (the Go build's environment follows it).
    pub mode: crate::pipeline::gobuild::Mode,
    /// The app's contract: its name, binaries, port, health check (the image's settings).
    pub app: crate::pipeline::app::App,
}

impl Meta {
    /// The image's creation time, RFC 3339 in UTC.
    pub fn created(&self) -> String {
        rfc3339(self.epoch)
    }

    /// Every label of an image of `stage` (`project::STAGE_*`), keys as `project` spells them.
    pub fn labels(&self, stage: &str) -> Vec<(&'static str, String)> {
        vec![
            (project::OCI_TITLE, self.app.name.clone()),
            (project::OCI_VERSION, self.version.clone()),
            (project::OCI_REVISION, self.revision.clone()),
            (project::OCI_CREATED, self.created()),
            (project::OCI_SOURCE, self.source.clone()),
            (project::LABEL_PROJECT, project::TOOL.to_string()),
            (project::LABEL_STAGE, stage.to_string()),
            (project::LABEL_GO, self.go.clone()),
            (project::LABEL_BUILDER_BASE, self.builder_base.clone()),
        ]
    }

    /// The build args the Dockerfiles' LABEL instruction takes (`stage` is spelled there).
    pub fn build_args(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TITLE", self.app.name.clone()),
            ("VERSION", self.version.clone()),
            ("REVISION", self.revision.clone()),
            ("CREATED", self.created()),
            ("SOURCE", self.source.clone()),
            ("GO_VERSION", self.go.clone()),
        ]
    }
}

/// The time to stamp: SOURCE_DATE_EPOCH when set (reproducible-builds.org), else `commit_time`.
pub fn epoch(commit_time: Option<u64>) -> u64 {
    source_date_epoch()
        .ok()
        .flatten()
        .or(commit_time)
        .unwrap_or(0)
}

/// The latest time an image's RFC 3339 stamps can say: 9999-12-31T23:59:59Z.
const LATEST_EPOCH: u64 = 253_402_300_799;

/// SOURCE_DATE_EPOCH, when set: a whole number of seconds an image can carry, else what is wrong
/// with it (checked before any work: `commands::run`).
pub fn source_date_epoch() -> Result<Option<u64>, String> {
    let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") else {
        return Ok(None);
    };
    match value.trim().parse::<u64>() {
        Ok(epoch) if epoch <= LATEST_EPOCH => Ok(Some(epoch)),
        _ => Err(format!(
            "SOURCE_DATE_EPOCH={value:?} is not a time an image can carry: set it to a whole number \
             of seconds since 1970 from 0 to {LATEST_EPOCH} (9999-12-31), or unset it to stamp the \
             commit's time"
        )),
    }
}

/// 1735689600 → "2025-01-01T00:00:00Z".
pub fn rfc3339(epoch: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    humantime::format_rfc3339_seconds(time).to_string()
}

impl Meta {
    /// The metadata of the checkout at `root`: its commit (or "unknown"), the commit's time (or
    /// SOURCE_DATE_EPOCH), its public source URL; `app` its contract.
    pub fn of_checkout(
        ctx: &crate::infra::ctx::Ctx,
        root: &camino::Utf8Path,
        app: &crate::pipeline::app::App,
        version: &str,
        go: &str,
        builder_base: &str,
    ) -> Meta {
        let commit = crate::infra::git::head(ctx, root);
        Meta {
            version: version.to_string(),
            revision: commit
                .as_ref()
                .map_or_else(|| "unknown".into(), |c| c.hash.clone()),
            epoch: epoch(commit.map(|c| c.time)),
            source: crate::infra::git::public_source(ctx, root).unwrap_or_default(),
            go: go.to_string(),
            builder_base: builder_base.to_string(),
            mode: crate::pipeline::gobuild::Mode::at(root),
            app: app.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_827_696), "2000-02-29T12:34:56Z");
        assert_eq!(rfc3339(1_795_867_200), "2026-11-28T12:00:00Z");
    }
}
