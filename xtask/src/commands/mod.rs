//! The commands: one file each, `impl flags::X { fn run(self, ctx) }`. A command reads its flags,
//! decides, and calls pipeline steps; no command is used by another module.

mod audit;
mod base_images;
mod bench;
mod ci;
mod clean;
mod dev;
mod dist;
mod image;
mod init;
mod migrate;
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
        app: flags.app,
    };
    // A usage error, before any work: the time every image is stamped with.
    crate::pipeline::meta::source_date_epoch().map_err(|e| Exit::new(2, e))?;
    let paths = Paths::discover()?;
    let dist = paths.dist();
    if dist.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
        anyhow::bail!(
            "{dist} is not a directory: the xtask writes its builds there and would have to move it \
             aside. Move it yourself (`mv dist dist.mine`), then run again"
        );
    }
    let ctx = Ctx::new(global, paths)?;
    // What an interrupted `migrate` left beside go-app/, put right before anything reads it.
    crate::pipeline::migrate::recover(&ctx)?;
    match flags.subcommand {
        XtaskCmd::Setup(cmd) => cmd.run(&ctx),
        XtaskCmd::Init(cmd) => cmd.run(&ctx),
        XtaskCmd::Dist(cmd) => cmd.run(&ctx),
        XtaskCmd::Image(cmd) => cmd.run(&ctx),
        XtaskCmd::Publish(cmd) => cmd.run(&ctx),
        XtaskCmd::Verify(cmd) => cmd.run(&ctx),
        XtaskCmd::BaseImages(cmd) => cmd.run(&ctx),
        XtaskCmd::Clean(cmd) => cmd.run(&ctx),
        XtaskCmd::Dev(cmd) => cmd.run(&ctx),
        XtaskCmd::Migrate(cmd) => cmd.run(&ctx),
        XtaskCmd::Audit(cmd) => cmd.run(&ctx),
        XtaskCmd::Ci(cmd) => cmd.run(&ctx),
        XtaskCmd::Bench(cmd) => cmd.run(&ctx),
    }
}

/// How a command ends when it is neither a success nor an error of the usual kind: its exit code
/// and what it says (`audit`: 1 for findings, 2 when it could not check).
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    message: String,
}

impl Exit {
    pub fn new(code: u8, message: String) -> Exit {
        Exit { code, message }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}
