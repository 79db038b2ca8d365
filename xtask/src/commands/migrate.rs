//! `cargo xtask migrate`: the app from Glide to Go modules, in place, proved first
//! (`pipeline::migrate`); says what changed and what to commit. A second run says there is
//! nothing to do.

use anyhow::Result;

use crate::{
    flags,
    infra::{ctx::Ctx, tools::Go},
    pipeline::{
        checkout::Checkout,
        migrate::{self, Outcome},
    },
};

impl flags::Migrate {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let mut checkout = Checkout::open(ctx, None)?;
        // Its proof runs the app and asks it: one image that serves HTTP.
        checkout.one_image("migrate's proof")?;
        if !checkout.app.serves_http() {
            anyhow::bail!(
                "migrate proves the move by asking the app's probes, and {} has none: pick an \
                 image that serves HTTP with --app NAME",
                checkout.app.name
            );
        }
        let go = Go::find(ctx)?;
        match migrate::migrate(ctx, &go, &checkout.app)? {
            Outcome::AlreadyModules { glide_left } => {
                println!("go-app/ is a Go module already (go-app/go.mod): nothing to do");
                if glide_left {
                    println!("glide.yaml or glide.lock is still in go-app/: module mode ignores them; remove them");
                }
            }
            Outcome::WouldWrite(files) => {
                for (path, text) in files {
                    println!("[dry-run] would write {path}:\n{text}");
                }
                println!("[dry-run] would remove go-app/glide.yaml and go-app/glide.lock");
            }
            Outcome::Migrated(done) => {
                println!("go-app/ is now the Go module {}:", done.module.path);
                for r in &done.module.requires {
                    println!(
                        "  require {} {} (glide.lock: {})",
                        r.path, r.version, r.commit
                    );
                }
                println!(
                    "proved: the app's tests pass in module mode; both builds answer {} routes \
                     alike; `go version -m` lists every dependency at its version",
                    done.answers
                );
                println!("vendor/ from {}", done.vendor_from);
                if !done.go_sum {
                    println!(
                        "go.sum is not written: its hashes must be the published modules'. Online, \
                         complete it (and replace vendor/ with the published code): \
                         (cd go-app && go mod tidy && go mod vendor)"
                    );
                }
                println!(
                    "commit it (go.mod, vendor/, .gitignore, glide's files gone): git add -A \
                     go-app && git commit -m 'Move the app from Glide to Go modules'"
                );
            }
        }
        Ok(())
    }
}
