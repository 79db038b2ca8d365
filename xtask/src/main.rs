//! `cargo xtask`: the Go app in go-app/ to a lean, reproducible production image.
//! One module per command (dist, image, base_images, clean, ci, bench, setup), one per step they
//! share (glide, gobuild, dockerbuild, handoff, docker, smoke), and the facts in `project`.

mod base_images;
mod bench;
mod ci;
mod clean;
mod ctx;
mod dist;
mod docker;
mod dockerbuild;
mod flags;
mod fsx;
mod glide;
mod gobuild;
mod handoff;
mod http;
mod image;
mod interrupt;
mod project;
mod setup;
mod smoke;
mod tools;

use std::process::ExitCode;

use flags::Command;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (global, command) = match flags::parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Help = command {
        print!("{}", flags::USAGE);
        return ExitCode::SUCCESS;
    }
    interrupt::install();
    let result = ctx::Ctx::new(global).and_then(|ctx| match command {
        Command::Help => unreachable!("handled above"),
        Command::Setup => setup::run(&ctx),
        Command::Dist(opts) => dist::run(&ctx, &opts),
        Command::Image(opts) => image::run(&ctx, &opts),
        Command::BaseImages { mirror } => base_images::run(&ctx, mirror.as_deref()),
        Command::Clean { all } => clean::run(&ctx, all),
        Command::Ci => ci::run(&ctx),
        Command::Bench { quick, runs } => bench::run(&ctx, quick, runs),
    });
    match result {
        _ if interrupt::happened() => {
            eprintln!("interrupted: stopped, temporary containers and files removed");
            ExitCode::from(130)
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
