//! `cargo xtask init [--force]`: the app's contract as the xtask reads it (app.json where there is
//! one, the rest detected from go-app/'s code), printed and written to app.json, as `docker init`
//! asks, without asking.

use anyhow::Result;

use crate::{
    flags,
    infra::{ctx::Ctx, fsx},
    pipeline::app::{self, App},
};

impl flags::Init {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let root = &ctx.paths.root;
        let (images, exists) = App::for_init(root)?;
        let text = app::to_json(&images).pretty(2) + "\n";
        let file = app::file(root);
        let what = if exists {
            "read from app.json and the code"
        } else {
            "detected from go-app/'s code"
        };
        println!(
            "The app's contract, {what} (docs/app-contract.md says what each field means):\n{text}"
        );
        for image in images.iter() {
            if let Some(path) = image.suggested_health() {
                println!(
                    "hint: {} declares no health check; `\"health\": {{\"http\": \"{path}\"}}` \
                     gives its image one that asks {path} (no shell or curl added)",
                    image.name
                );
            }
        }
        if exists && !self.force {
            println!("{file} is there already: left as it is (--force writes the above in full)");
            return Ok(());
        }
        ctx.change(format!("write {file}"), || {
            fsx::write_atomic(&file, text.as_bytes())
        })?;
        ctx.after_real_run(|| {
            let tags: Vec<String> = images.iter().map(|a| a.default_tag().into_string()).collect();
            println!(
                "wrote {file}: edit it, commit it; then `cargo xtask image --smoke` builds {} and checks it",
                tags.join(" and ")
            );
            Ok(())
        })
    }
}
