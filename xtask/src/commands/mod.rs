//! The commands: one file each, `impl flags::X { fn run(self, ctx) }`. A command reads its flags,
//! decides, and calls pipeline steps; no command is used by another module.

mod base_images;
mod bench;
mod ci;
mod clean;
mod dist;
mod image;
mod publish;
mod setup;
mod verify;

use anyhow::Result;

use crate::{
    flags::{Xtask, XtaskCmd},
    infra::ctx::{Ctx, Global},
    project::Paths,
};

pub fn run(flags: Xtask) -> Result<()> {
    let global = Global {
        dry_run: flags.dry_run,
        no_setup: flags.no_setup,
        offline: flags.offline,
    };
    let paths = Paths::discover()?;
    let dist = paths.dist();
    if dist.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
        anyhow::bail!(
            "{dist} is not a directory: the xtask writes its builds there and would have to move it \
             aside. Move it yourself (`mv dist dist.mine`), then run again"
        );
    }
    let ctx = Ctx::new(global, paths)?;
    match flags.subcommand {
        XtaskCmd::Setup(cmd) => cmd.run(&ctx),
        XtaskCmd::Dist(cmd) => cmd.run(&ctx),
        XtaskCmd::Image(cmd) => cmd.run(&ctx),
        XtaskCmd::Publish(cmd) => cmd.run(&ctx),
        XtaskCmd::Verify(cmd) => cmd.run(&ctx),
        XtaskCmd::BaseImages(cmd) => cmd.run(&ctx),
        XtaskCmd::Clean(cmd) => cmd.run(&ctx),
        XtaskCmd::Ci(cmd) => cmd.run(&ctx),
        XtaskCmd::Bench(cmd) => cmd.run(&ctx),
    }
}
