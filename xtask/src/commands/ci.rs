//! `cargo xtask ci`, the test command: provisions what the tests need (tools, engine, the local
//! base image), then checks that Debian's Rust (1.85) builds the xtask, Rust fmt and clippy, Go vet,
//! gofmt and go test, the quick bench (so that it cannot rot), and every Rust test, those that need
//! an engine, root or a second user included (plain `cargo test` skips them).

use anyhow::{bail, Context, Result};

use crate::{
    cmd, flags,
    infra::{
        apt,
        ctx::Ctx,
        docker::Engine,
        process::Running,
        tools::{self, Go},
    },
    pipeline::{base, deps, gobuild},
    project,
};

/// The test binaries that, after a short use of the host's engine (locked, as every test locks
/// it: `xtask/tests/common`), work on engines of their own: run beside the others.
const BESIDE: [&str; 3] = ["engines", "remote", "hosts"];

/// Debian 13's rustc: the oldest Rust the xtask must build with (`rust-version` in Cargo.toml).
const DEBIAN_RUST: &str = "1.85.0";

impl flags::Ci {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        ctx.step("setup", || provision(ctx))?;
        // The tests' Docker with the containerd image store: trixie's, unpacked, not installed.
        let docker_root = camino::Utf8Path::new(project::TEST_DOCKER_ROOT);
        if !docker_root.join("usr/sbin/dockerd").exists() {
            ctx.step("the tests' Docker (containerd image store)", || {
                apt::unpack(
                    ctx,
                    project::TEST_DOCKER_SUITE,
                    &project::TEST_DOCKER_PACKAGES,
                    docker_root,
                )
            })?;
        }
        // The image tests build offline: make the local builder base now, once.
        ctx.step("local builder base image", || {
            base::ensure_local(ctx, None).map(drop)
        })?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // The tests that work on engines of their own start now, beside the checks: the longer
        // of the two lanes. Stopped if a check fails.
        ctx.run(cmd!("{cargo} test --workspace --no-run --quiet"))?;
        let beside = start_beside(ctx, &cargo)?;
        ctx.step("cargo fmt --check", || {
            ctx.run(cmd!("{cargo} fmt --all -- --check"))
        })?;
        ctx.step("cargo clippy", || {
            ctx.run(cmd!(
                "{cargo} clippy --workspace --all-targets --quiet -- -D warnings"
            ))
        })?;
        ctx.step("go vet, gofmt, go test", || go_checks(ctx))?;
        // The checks below use the host's engine (and the bench counts what it leaves there):
        // the tests that use it wait meanwhile.
        let target = ctx
            .var("CARGO_TARGET_DIR")
            .map_or_else(|| ctx.paths.target(), camino::Utf8PathBuf::from);
        let lock = target.join("tmp").join(project::TESTS_HOST_ENGINE_LOCK);
        let host_engine = ctx.lock_at(&lock, "a test uses the host's engine")?;
        if which::which("rustup").is_ok() {
            let step = format!("Debian's Rust ({DEBIAN_RUST}) builds the xtask");
            ctx.step(&step, || debian_rust_builds(ctx))?;
        } else {
            ctx.announce(format!(
                "no rustup: the build with Rust {DEBIAN_RUST} is not checked"
            ));
        }
        ctx.step("cargo xtask bench --quick", || {
            let exe = std::env::current_exe()?;
            ctx.run(cmd!("{exe} bench --quick"))
        })?;
        drop(host_engine);
        let all = "cargo test (all, engine and second-user tests included)";
        ctx.step(all, || all_tests(ctx, &cargo, beside))
    }
}

/// The second `cargo test`: the tests of `BESIDE`, their output kept for the end.
fn start_beside(ctx: &Ctx, cargo: &str) -> Result<Running> {
    let beside: Vec<&str> = BESIDE.iter().flat_map(|t| ["--test", t]).collect();
    ctx.announce(format!(
        "tests {} start now and run beside the rest; their output comes at the end",
        BESIDE.join(", ")
    ));
    ctx.start(cmd!("{cargo} test --workspace {beside...} -- --include-ignored").kept())
}

/// Every test: the rest, while `beside` runs (both wait whenever the other uses the host's
/// engine); then `beside`'s output.
fn all_tests(ctx: &Ctx, cargo: &str, beside: Running) -> Result<()> {
    let dir = ctx.paths.integration_tests();
    let mut rest = Vec::new();
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
    {
        let name = entry?.file_name().to_string();
        match name.strip_suffix(".rs") {
            Some(test) if !BESIDE.contains(&test) => {
                rest.extend(["--test".to_string(), test.into()])
            }
            _ => {}
        }
    }
    let first = ctx
        .run(cmd!(
            "{cargo} test --workspace --lib --bins {rest...} -- --include-ignored"
        ))
        .and_then(|_| ctx.run(cmd!("{cargo} test --workspace --doc")));
    let second = beside
        .wait()
        .map(|out| print!("{}", String::from_utf8_lossy(&out)));
    first.map(drop).and(second)
}

/// Every tool the tests need, installed when missing; an engine answering.
fn provision(ctx: &Ctx) -> Result<()> {
    let missing: Vec<tools::Tool> = tools::ALL
        .iter()
        .chain(&tools::TEST_ONLY)
        .copied()
        .filter(|t| !t.present())
        .collect();
    if !missing.is_empty() {
        if ctx.no_setup {
            tools::require(ctx, &missing)?;
        }
        apt::install(ctx, &tools::debian(&missing))?;
    }
    Engine::ensure(ctx).map(drop)
}

/// Built with Debian's Rust, the xtask runs a whole build: the direct image, smoke-tested.
fn debian_rust_builds(ctx: &Ctx) -> Result<()> {
    ctx.run(cmd!("rustup toolchain install {DEBIAN_RUST} --profile minimal").quiet())?;
    let target = ctx.paths.target().join("rust-1.85");
    let run = |args: &[&str]| {
        ctx.run(cmd!("rustup run {DEBIAN_RUST} cargo run --quiet --locked -p xtask --target-dir {target} -- {args...}"))
    };
    run(&["--help"])?;
    let tag = format!("{}-rust-{DEBIAN_RUST}:check", project::TOOL);
    run(&[
        "image",
        "--offline",
        "--strategy",
        "direct",
        "--smoke",
        "--tag",
        &tag,
    ])?;
    run(&["clean"]).map(drop)
}

/// The Go app: vet, gofmt and its own tests.
fn go_checks(ctx: &Ctx) -> Result<()> {
    let paths = &ctx.paths;
    let go = Go::find(ctx)?;
    let contract = crate::pipeline::app::App::load(&paths.root, None)?;
    deps::vendor(ctx, paths, &contract, || Ok(go.clone()))?;
    let app = gobuild::Mode::of(paths).app_dir(paths, &contract);
    let env = gobuild::go_env(&go, paths);
    ctx.run(cmd!("go vet .").envs(&env).dir(&app))?;
    // Ours too: the HTTP health check some images ship.
    let healthcheck = paths.healthcheck_source();
    let healthcheck_env = gobuild::healthcheck_env(&go, paths);
    ctx.run(
        cmd!("go vet main.go")
            .envs(&healthcheck_env)
            .dir(&healthcheck),
    )?;
    let sources: Vec<String> = [paths.go_app(), healthcheck]
        .iter()
        .flat_map(|dir| dir.read_dir_utf8().into_iter().flatten())
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().ends_with(".go"))
        .map(|e| e.path().to_string())
        .collect();
    let gofmt = go.bin.join("gofmt");
    let unformatted = ctx.read(cmd!("{gofmt} -l {sources...}"))?;
    if !unformatted.is_empty() {
        bail!("not gofmt-clean (run `gofmt -w` on them):\n{unformatted}");
    }
    ctx.run(cmd!("go test -count=1 .").envs(&env).dir(&app))
        .map(drop)
}
