//! `cargo xtask audit [--db DIR|URL]`: known vulnerabilities of what we ship
//! (`pipeline::audit`), and what a rebuild would update. Exit 0: none found; 1: findings; 2: could
//! not check.

use anyhow::Result;

use crate::{
    commands::Exit,
    flags,
    infra::{
        ctx::Ctx,
        docker,
        tools::{self, Go},
    },
    pipeline::{
        audit::{self, Finding},
        checkout::Checkout,
        distdir,
        gobuild::Mode,
    },
    project,
};

impl flags::Audit {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let paths = &ctx.paths;
        let hint = match self.db {
            Some(_) => "",
            None => " (the public Go vulnerability database must answer: else pass --db with a local copy)",
        };
        let cannot = |e: anyhow::Error| Exit::new(2, format!("could not check: {e:#}{hint}"));
        tools::require(ctx, &[tools::GOVULNCHECK]).map_err(cannot)?;
        let db = self
            .db
            .as_deref()
            .map(audit::db_url)
            .transpose()
            .map_err(cannot)?;
        let checkout = Checkout::open(ctx, None).map_err(cannot)?;
        let go = checkout.go(ctx).map_err(cannot)?;
        let binaries: Vec<_> = checkout
            .app
            .shipped_binaries()
            .map(|b| paths.dist().join(b))
            .collect();
        if !binaries.iter().all(|b| b.is_file()) {
            distdir::build_on_host(ctx, paths, &checkout.app, &go, &[], &checkout.version)
                .map_err(cannot)?;
        }
        let mut found = Vec::new();
        for binary in &binaries {
            let name = binary.file_name().unwrap_or_default();
            found.extend(
                ctx.step(&format!("govulncheck: dist/{name} (binary)"), || {
                    audit::binary(ctx, db.as_deref(), binary)
                })
                .map_err(cannot)?,
            );
        }
        let mode = Mode::of(paths);
        match mode {
            Mode::Modules => found_in_source(ctx, &go, db.as_deref(), &mut found),
            Mode::Gopath => println!(
                "GOPATH mode: govulncheck sees only the standard library. A GOPATH binary records \
                 no dependencies, and govulncheck reads no GOPATH source tree, so httprouter and \
                 the rest are not checked. `cargo xtask migrate` moves the app to Go modules; then \
                 audit sees them."
            ),
        }
        rebuild_would_change(ctx, &checkout);
        report(&found, mode);
        let called = found.iter().filter(|f| f.called).count();
        if called == 0 {
            Ok(())
        } else {
            let message = format!("{called} known vulnerabilities in code we ship and call");
            Err(Exit::new(1, message).into())
        }
    }
}

/// Adds what govulncheck finds in the source (module mode) to `found`. The binary is what we ship;
/// the source says more (what the app calls), when this govulncheck can read this Go's standard
/// library: else a warning says why not.
fn found_in_source(ctx: &Ctx, go: &Go, db: Option<&str>, found: &mut Vec<Finding>) {
    let source = ctx.step("govulncheck: go-app/ (source)", || {
        audit::source(ctx, go, &ctx.paths, db)
    });
    match source {
        Ok(source) => {
            for f in source {
                if !found.iter().any(|g| g.id == f.id) {
                    found.push(f);
                }
            }
        }
        Err(e) => ctx.warn(format!(
            "the source was not checked, the binary was: {}",
            audit::why_source_failed(&e)
        )),
    }
}

fn report(found: &[Finding], mode: Mode) {
    if !found.iter().any(|f| f.called) {
        println!("no known vulnerabilities in code we ship and call ({mode})");
    }
    for f in found {
        let fixed = f
            .fixed
            .as_deref()
            .map_or("no fix yet".into(), |v| format!("fixed in {v}"));
        let how = if f.called {
            "called"
        } else {
            "not called (informational)"
        };
        println!("{}  {}  {fixed}, {how}: {}", f.id, f.module, f.summary);
    }
}

/// The Go release and the CA bundle of what we ship, against what the host's package source
/// offers now.
fn rebuild_would_change(ctx: &Ctx, checkout: &Checkout) {
    let image = &checkout.app.default_tag().into_string();
    let go = docker::label(ctx, image, project::LABEL_GO);
    match (go, audit::candidate(ctx, project::GO_PACKAGE)) {
        (Some(shipped), Some(offered)) => {
            let offered_go = audit::go_release(&offered);
            if shipped == offered_go {
                println!(
                    "Go: {image} has {shipped}, the newest {} the package source offers",
                    project::GO_PACKAGE
                );
            } else {
                println!("Go: {image} has {shipped}; the package source offers {offered_go} ({} {offered}): a rebuild with it takes it", project::GO_PACKAGE);
            }
        }
        (None, _) => println!("Go: no {image} to compare (build it first)"),
        (_, None) => println!(
            "Go: the host's package source offers no {}",
            project::GO_PACKAGE
        ),
    }
    let engine = docker::Engine::find(ctx).ok();
    let bundle = engine.and_then(|engine| checkout.builder(ctx, &engine, None).ok());
    match (bundle, audit::candidate(ctx, "ca-certificates")) {
        (Some(b), Some(offered)) if audit::older(ctx, &b.files.ca_version, &offered) => println!(
            "CA bundle: the builder base {} has ca-certificates {}; the package source offers \
             {offered}: a new base (`cargo xtask base-images` for the local one) takes it",
            b.base.image, b.files.ca_version
        ),
        (Some(b), _) => println!(
            "CA bundle: ca-certificates {} in {}, as new as the package source offers",
            b.files.ca_version, b.base.image
        ),
        (None, _) => println!("CA bundle: no engine or builder base to read it from"),
    }
}
