//! `cargo xtask dist` end to end: real glide (air-gapped mirror), real Go, in copies of the
//! workspace at paths with spaces and non-ASCII characters.

mod common;

use std::{fs, process::Stdio, time::Duration};

use common::{elf, free_port, http, sha256, Workspace};

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

fn sums(ws: &Workspace) -> String {
    fs::read_to_string(ws.path("dist/SHA256SUMS")).unwrap()
}

#[test]
fn dist_is_static_reproducible_and_leaves_git_clean() {
    let ws = Workspace::copy();
    ws.git_init();
    let run = ws.xtask(&["dist"]).ok();
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
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(&ws.root)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "",
        "git status not clean after dist"
    );

    // Again, and from another checkout: the same bytes.
    ws.xtask(&["dist"]).ok();
    assert_eq!(sha256(&main), first, "a second build differs");
    let other = Workspace::copy();
    other.git_init();
    other
        .xtask(&["dist", "--app-version", &git_describe(&ws)])
        .ok();
    assert_eq!(
        sha256(&other.path("dist/main")),
        first,
        "a build in another checkout differs"
    );
}

fn git_describe(ws: &Workspace) -> String {
    let out = std::process::Command::new("git")
        .args(["describe", "--tags", "--always", "--dirty"])
        .current_dir(&ws.root)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn dist_binary_serves_and_stops_on_sigterm() {
    let ws = Workspace::copy();
    ws.xtask(&["dist", "--app-version", "v9.9.9-test"]).ok();
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
        http::get(&addr, "/healthz").unwrap(),
        (200, "ok".to_string())
    );
    assert_eq!(
        http::get(&addr, "/version").unwrap(),
        (200, "v9.9.9-test\n".to_string())
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "exit after SIGTERM");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!("Starting Server (with httprouter) on Port {port}")),
        "{log}"
    );
}

#[test]
fn dist_cross_builds_arm64() {
    let ws = Workspace::copy();
    ws.xtask(&["dist", "--platform", "linux/arm64"]).ok();
    let arm = ws.path("dist/main-linux-arm64");
    let e = elf(&arm);
    assert_eq!(e.machine, EM_AARCH64);
    assert!(!e.dynamic);
    assert_eq!(elf(&ws.path("dist/main")).machine, EM_X86_64);
    let sums = sums(&ws);
    assert!(
        sums.contains(&format!("{}  main-linux-arm64", sha256(&arm))),
        "{sums}"
    );
}

#[test]
fn compile_error_leaves_previous_dist_untouched() {
    let ws = Workspace::copy();
    ws.xtask(&["dist"]).ok();
    let before = fs::read(ws.path("dist/main")).unwrap();
    let before_sums = sums(&ws);
    let main_go = ws.path("go-app/main.go");
    let source = fs::read_to_string(&main_go).unwrap();
    fs::write(
        &main_go,
        source.replace("func healthz(", "func healthz(undefinedType, "),
    )
    .unwrap();
    let run = ws.xtask(&["dist"]).failed();
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
}

#[test]
fn missing_tools_are_named_with_the_fix() {
    let ws = Workspace::copy();
    for tool in ["go", "glide"] {
        let path = ws.path_without(&[tool, "docker"]);
        let run = ws
            .xtask_env(&["dist", "--no-setup"], &[("PATH", &path)])
            .failed();
        assert!(
            run.stderr.contains(&format!("`{tool}` not found on PATH"))
                && run.stderr.contains("cargo xtask setup"),
            "hiding {tool}:\n{}",
            run.stderr
        );
        assert!(!ws.path("dist").exists(), "dist/ made without {tool}");
    }
}

#[test]
fn bad_arguments_are_usage_errors_before_any_work() {
    let ws = Workspace::copy();
    for (args, valid) in [
        (
            &["image", "--strategy", "fast"][..],
            "multistage, handoff, single",
        ),
        (&["image", "--tag", "Bad Tag"], "NAME[:TAG]"),
        (&["dist", "--platform", "linux/sparc"], "linux/arm64"),
        (&["frobnicate"], "valid commands"),
    ] {
        let run = ws.xtask(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.all());
        assert!(run.stderr.contains(valid), "{args:?}: {}", run.stderr);
        assert!(
            !ws.path("target").exists() && !ws.path("dist").exists(),
            "{args:?} did work"
        );
    }
}
