//! `cargo xtask`: the Go app in go-app/ to a lean, reproducible production image.
//!
//! The house has three floors, and calls only go down:
//! - `commands`: one file per command, `impl flags::X { fn run(self, ctx) }`: what the user asked.
//! - `pipeline`: the steps (the checkout's prelude, the image built four ways, the image's bytes,
//!   glide, the Go build, Dockerfile builds, the handoff, `dist/`, base images, the smoke test, the
//!   record of what we built, publishing): plain functions and types that take plain values, never
//!   a CLI struct.
//! - `infra`: `Ctx` and `process` (the only door to a process: a `Cmd` value run in four verbs,
//!   echoed, honouring `--dry-run` and signals, failing with a typed `ProcessError`), the docker
//!   CLI, tools and apt, files, git, network, signals.
//!
//! `project` holds the facts (names, paths, labels, the Go line) every floor reads; `domain` the
//! values they speak of (`Strategy`, `Builder`, `Platform`, `Version`, `ImageRef`), which `flags`
//! parses and the pipeline takes.

pub mod commands;
pub mod domain;
pub mod flags;
pub mod infra;
pub mod pipeline;
pub mod project;

use std::process::ExitCode;

pub fn main() -> ExitCode {
    let flags = match flags::Xtask::from_env() {
        Ok(flags) => flags,
        Err(e) if e.is_help() => {
            println!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\nRun `cargo xtask --help` for every command and flag.");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = infra::signals::install() {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = commands::run(flags);
    if let Some(signal) = infra::signals::received() {
        eprintln!(
            "interrupted by {}: the running step was stopped, temporary containers and files removed",
            infra::signals::name(signal)
        );
        return ExitCode::from(128 + signal as u8);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<commands::Exit>() {
                Some(exit) => ExitCode::from(exit.code),
                None => ExitCode::FAILURE,
            }
        }
    }
}
