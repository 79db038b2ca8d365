//! What we ship, checked for known vulnerabilities: the binary (`govulncheck -mode=binary
//! dist/main`) and, in module mode, the source (`govulncheck ./...`, which sees what the app
//! calls). In GOPATH mode neither sees a dependency: a GOPATH binary records none, and govulncheck
//! reads no GOPATH tree; that is said, with the fix (`migrate`). Then what a rebuild would change:
//! the Go release and the CA bundle against what the host's package source offers now.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use camino::Utf8Path;

use crate::{
    cmd,
    infra::{ctx::Ctx, process::ProcessError, tools::Go},
    pipeline::gobuild,
    project::Paths,
};

/// A known vulnerability govulncheck found in what we ship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `GO-2024-1234`.
    pub id: String,
    /// `github.com/julienschmidt/httprouter@v1.3.0`, or `stdlib@go1.27.4`.
    pub module: String,
    /// The first version without it, if there is one.
    pub fixed: Option<String>,
    /// Its summary, from the database.
    pub summary: String,
    /// What we ship calls the vulnerable code (else only a module or package of it is there).
    pub called: bool,
}

/// `--db`: a directory becomes a `file://` URL; a URL stays as it is.
pub fn db_url(db: &str) -> Result<String> {
    if db.contains("://") {
        return Ok(db.to_string());
    }
    let dir = std::fs::canonicalize(db).with_context(|| format!("--db {db}: no such directory"))?;
    Ok(format!("file://{}", dir.display()))
}

/// govulncheck's findings in `dist/main` (binary mode).
pub fn binary(ctx: &Ctx, db: Option<&str>, binary: &Utf8Path) -> Result<Vec<Finding>> {
    let db = db.map(|d| ["-db", d]).into_iter().flatten();
    let out = ctx.read(cmd!("govulncheck {db...} -mode=binary -json {binary}"))?;
    Ok(findings(&out))
}

/// govulncheck's findings in the app's source (module mode), as Go resolves it from vendor/.
pub fn source(ctx: &Ctx, go: &Go, paths: &Paths, db: Option<&str>) -> Result<Vec<Finding>> {
    let db = db.map(|d| ["-db", d]).into_iter().flatten();
    let env = gobuild::go_env(go, paths);
    // Module mode: the module is go-app/ itself, wherever GOPATH would put it.
    let app = paths.go_app();
    let out = ctx.read(cmd!("govulncheck {db...} -json ./...").envs(&env).dir(app))?;
    Ok(findings(&out))
}

/// Why the source check failed, in govulncheck's words (a govulncheck built with an older Go cannot
/// read a newer Go's standard library: it says so).
pub fn why_source_failed(e: &anyhow::Error) -> String {
    let said = ProcessError::of(e).map_or_else(|| format!("{e:#}"), ProcessError::stderr_text);
    match said
        .lines()
        .find(|l| l.contains("mismatch between the Go version"))
    {
        Some(_) => {
            "this govulncheck was built with an older Go and cannot read this Go's standard \
                    library (govulncheck: \"possibly due to a mismatch between the Go version used \
                    to build govulncheck and the Go version on PATH\")"
                .into()
        }
        None => said.lines().take(3).collect::<Vec<_>>().join(" "),
    }
}

/// The findings in govulncheck's `-json` stream (one JSON value after another), each OSV once.
fn findings(stream: &str) -> Vec<Finding> {
    let mut summaries = BTreeMap::new();
    let mut found: BTreeMap<String, Finding> = BTreeMap::new();
    for value in values(stream) {
        let osv = &value["osv"];
        if let Some(id) = osv["id"].as_str() {
            let summary = osv["summary"]
                .as_str()
                .or(osv["details"].as_str())
                .unwrap_or_default();
            summaries.insert(id.to_string(), summary.to_string());
        }
        let finding = &value["finding"];
        let Some(id) = finding["osv"].as_str() else {
            continue;
        };
        let frame = &finding["trace"][0];
        let module = format!(
            "{}@{}",
            frame["module"].as_str().unwrap_or("?"),
            frame["version"].as_str().unwrap_or("?")
        );
        let called = frame["function"].is_string();
        let entry = found.entry(id.to_string()).or_insert(Finding {
            id: id.to_string(),
            module,
            fixed: finding["fixed_version"].as_str().map(str::to_string),
            summary: String::new(),
            called,
        });
        entry.called |= called;
    }
    found
        .into_values()
        .map(|mut f| {
            f.summary = summaries.get(&f.id).cloned().unwrap_or_default();
            f
        })
        .collect()
}

/// The JSON values of a stream of them (govulncheck prints them one after another, indented).
fn values(stream: &str) -> Vec<jzon::JsonValue> {
    let (mut out, mut depth, mut start, mut in_string, mut escaped) =
        (Vec::new(), 0, 0, false, false);
    for (i, c) in stream.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => {
                if depth == 0 {
                    start = i;
                }
                depth += 1;
            }
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    if let Ok(v) = jzon::parse(&stream[start..=i]) {
                        out.push(v);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A Debian package's version here and the one the host's package source offers now (None: it
/// offers none).
pub fn candidate(ctx: &Ctx, package: &str) -> Option<String> {
    let policy = ctx.try_read(cmd!("apt-cache policy {package}"))?;
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(|v| v.trim().to_string())
        .filter(|v| v != "(none)")
}

/// Whether Debian version `a` is older than `b` (`dpkg --compare-versions`).
pub fn older(ctx: &Ctx, a: &str, b: &str) -> bool {
    ctx.read(cmd!("dpkg --compare-versions {a} lt {b}")).is_ok()
}

/// `1.27.4-1~bpo13+1` → `go1.27.4`.
pub fn go_release(debian_version: &str) -> String {
    let upstream = debian_version
        .split_once(':')
        .map_or(debian_version, |(_, v)| v);
    let upstream = upstream.split(['-', '~', '+']).next().unwrap_or(upstream);
    format!("go{upstream}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_are_read_from_the_stream_once_each() {
        let stream = r#"{"config": {"protocol_version": "v1.0.0"}}
{
  "osv": {"id": "GO-2099-0001", "summary": "A test vulnerability"}
}
{"finding": {"osv": "GO-2099-0001", "fixed_version": "v1.3.1",
  "trace": [{"module": "github.com/julienschmidt/httprouter", "version": "v1.3.0", "package": "x", "function": "ServeHTTP"}]}}
{"finding": {"osv": "GO-2099-0001", "trace": [{"module": "github.com/julienschmidt/httprouter", "version": "v1.3.0"}]}}
"#;
        let found = findings(stream);
        assert_eq!(
            found,
            [Finding {
                id: "GO-2099-0001".into(),
                module: "github.com/julienschmidt/httprouter@v1.3.0".into(),
                fixed: Some("v1.3.1".into()),
                summary: "A test vulnerability".into(),
                called: true,
            }]
        );
        assert!(findings("{\"config\": {}}").is_empty());
    }

    #[test]
    fn debian_versions_name_go_releases() {
        assert_eq!(go_release("1.27.4-1~bpo13+1"), "go1.27.4");
        assert_eq!(go_release("2:1.26.1-2"), "go1.26.1");
    }
}
