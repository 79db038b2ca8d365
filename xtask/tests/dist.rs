//! `cargo xtask dist` end to end: real glide (air-gapped mirror), real Go, in copies of the
//! workspace at odd paths. They need Go and glide installed: `cargo xtask ci` runs them.

mod common;

use std::{fs, process::Stdio, time::Duration};

use common::{elf, free_port, http, sha256, Workspace};

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

fn sums(ws: &Workspace) -> String {
    fs::read_to_string(ws.path("dist/SHA256SUMS")).unwrap()
}

#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn dist_is_static_reproducible_and_leaves_git_clean() {
    let ws = Workspace::copy();
    let run = ws.xtask(&["dist", "--offline"]).ok();
    for step in [
        "==> glide install",
        "glide install: done in",
        "==> go build",
        "go build: done in",
    ] {
        assert!(run.stderr.contains(step), "no `{step}` in:\n{}", run.stderr);
    }
    let main = ws.path("dist/main");
    let e = elf(&main);
    assert_eq!(e.machine, EM_X86_64);
    assert!(!e.dynamic, "dist/main is dynamically linked");
    let first = sha256(&main);
    assert_eq!(sums(&ws), format!("{first}  main\n"));
    // Nothing tracked changed: no rewritten glide.lock, no vendor/ outside ignored paths.
    assert_eq!(
        ws.git(&["status", "--porcelain"]),
        "",
        "git status not clean after dist"
    );
    // A supported Go built it.
    let out = std::process::Command::new(common::project::GO_BIN)
        .args(["version"])
        .arg(&main)
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.contains(&format!("go{}.", common::project::GO_LINE)),
        "{version}"
    );

    // Again, and from another checkout of the same commit: the same bytes.
    ws.xtask(&["dist", "--offline"]).ok();
    assert_eq!(sha256(&main), first, "a second build differs");
    let other = Workspace::clone_of(&ws);
    other.xtask(&["dist", "--offline"]).ok();
    assert_eq!(
        sha256(&other.path("dist/main")),
        first,
        "a build in another checkout differs"
    );
    // The shell's Go settings do not change the target: the same bytes, for this host.
    let env = [
        ("GOARCH", "arm64"),
        ("GOAMD64", "v4"),
        ("GOEXPERIMENT", "fieldtrack"),
    ];
    other.xtask_env(&["dist", "--offline"], &env).ok();
    assert_eq!(
        sha256(&other.path("dist/main")),
        first,
        "GOARCH, GOAMD64 or GOEXPERIMENT in the environment changed dist/main"
    );
}

#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn dist_binary_serves_and_stops_on_sigterm() {
    let ws = Workspace::copy();
    ws.xtask(&["dist", "--offline", "--app-version", "v9.9.9-test"])
        .ok();
    let port = free_port();
    let child = std::process::Command::new(ws.path("dist/main"))
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    assert!(
        http::wait_ok(&addr, "/healthz", Duration::from_secs(10)),
        "no answer on {addr}"
    );
    assert_eq!(
        http::get(&addr, "/hello/x").unwrap(),
        (200, "Hello, x!\n".to_string())
    );
    assert_eq!(
        http::get(&addr, "/version").unwrap(),
        (200, "v9.9.9-test\n".to_string())
    );
    // The health check the images use: the binary probes its own /healthz.
    let probe = std::process::Command::new(ws.path("dist/main"))
        .arg("-healthcheck")
        .env("PORT", port.to_string())
        .status()
        .unwrap();
    assert!(
        probe.success(),
        "-healthcheck against a serving server failed"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "exit after SIGTERM");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!("Starting Server (with httprouter) on Port {port}")),
        "{log}"
    );
    let probe = std::process::Command::new(ws.path("dist/main"))
        .arg("-healthcheck")
        .env("PORT", port.to_string())
        .output()
        .unwrap();
    assert_eq!(
        probe.status.code(),
        Some(1),
        "-healthcheck with no server must fail"
    );
}

#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn dist_cross_builds_arm64_from_a_subdirectory() {
    let ws = Workspace::copy();
    let run = ws
        .command(&["dist", "--offline", "--platform", "linux/arm64"])
        .current_dir(ws.path("go-app"))
        .output()
        .unwrap();
    let run = common::Run::from(run).ok();
    assert!(run.stdout.contains("main-linux-arm64"), "{}", run.stdout);
    let arm = ws.path("dist/main-linux-arm64");
    let e = elf(&arm);
    assert_eq!(e.machine, EM_AARCH64);
    assert!(!e.dynamic);
    assert_eq!(elf(&ws.path("dist/main")).machine, EM_X86_64);
    assert!(sums(&ws).contains(&format!("{}  main-linux-arm64", sha256(&arm))));
}

#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn compile_error_leaves_previous_dist_untouched() {
    let ws = Workspace::copy();
    ws.xtask(&["dist", "--offline"]).ok();
    let before = fs::read(ws.path("dist/main")).unwrap();
    let before_sums = sums(&ws);
    let main_go = ws.path("go-app/main.go");
    let source = fs::read_to_string(&main_go).unwrap();
    fs::write(
        &main_go,
        source.replace("func healthz(", "func healthz(undefinedType, "),
    )
    .unwrap();
    let run = ws.xtask(&["dist", "--offline"]).failed();
    assert!(
        run.stderr.contains("main.go"),
        "go's error is not shown:\n{}",
        run.stderr
    );
    assert_eq!(
        fs::read(ws.path("dist/main")).unwrap(),
        before,
        "dist/main changed"
    );
    assert_eq!(sums(&ws), before_sums);
    let names: Vec<_> = fs::read_dir(ws.path("dist"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "stray files in dist/: {names:?}");
    let beside: Vec<_> = fs::read_dir(&ws.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".dist"))
        .collect();
    assert!(beside.is_empty(), "scratch left beside dist/: {beside:?}");
}

#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn missing_glide_is_named_with_the_fix() {
    let ws = Workspace::copy();
    let path = ws.path_without(&["glide", "docker"]);
    let run = ws
        .xtask_env(&["dist", "--offline", "--no-setup"], &[("PATH", &path)])
        .failed();
    assert!(
        run.stderr.contains("`glide` not found on PATH")
            && run.stderr.contains("cargo xtask setup"),
        "{}",
        run.stderr
    );
    assert!(!ws.path("dist").exists(), "dist/ made without glide");
}

/// Go off PATH and Debian's Go hidden (an empty tmpfs over it), no docker either: named, with the fix.
#[test]
#[ignore = "needs root (a mount namespace), Go and glide: cargo xtask ci"]
fn missing_go_is_named_with_the_fix() {
    let ws = Workspace::copy();
    let path = ws.path_without(&["go", "docker"]);
    let mut cmd = ws.command(&["dist", "--offline", "--no-setup"]);
    cmd.env("PATH", &path);
    let run = common::with_tmpfs_over(&[&common::go_root()], &cmd).failed();
    assert!(
        run.stderr.contains("`go` not found") && run.stderr.contains("cargo xtask setup"),
        "{}",
        run.stderr
    );
    assert!(!ws.path("dist").exists(), "dist/ made without Go");
}

/// target/ on another filesystem than dist/ (a devcontainer volume): the swap still works, since
/// the new dist/ is built next to the old one.
#[test]
#[ignore = "needs root (a mount namespace), Go and glide: cargo xtask ci"]
fn target_on_another_filesystem() {
    let ws = Workspace::copy();
    let cmd = ws.command(&["dist", "--offline"]);
    let run = common::with_tmpfs_over(&[&ws.path("target")], &cmd).ok();
    assert!(run.stdout.contains("dist/"), "{}", run.stdout);
    assert!(ws.path("dist/main").is_file());
}

/// A file whose name is not UTF-8, which Go never reads, stops no build.
#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn a_file_name_that_is_not_utf8_stops_no_build() {
    use std::os::unix::ffi::OsStrExt;
    let ws = Workspace::copy();
    let name = std::ffi::OsStr::from_bytes(b"notes-\xff.txt");
    fs::create_dir_all(ws.path("go-app/docs")).unwrap();
    fs::write(ws.path("go-app").join(name), "x").unwrap();
    fs::write(ws.path("go-app/docs").join(name), "x").unwrap();
    ws.xtask(&["dist", "--offline"]).ok();
    assert!(ws.path("dist/main").is_file());
}
