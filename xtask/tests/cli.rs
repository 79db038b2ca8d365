//! The command line, without an engine or tools: usage errors before any work, generated help.
//! Plain `cargo test` runs these (as any user, on any machine).

mod common;

use common::Workspace;

#[test]
fn bad_arguments_are_usage_errors_before_any_work() {
    let ws = Workspace::copy();
    for (args, valid) in [
        (
            &["image", "--strategy", "fast"][..],
            "multistage, handoff, single, direct",
        ),
        (&["image", "--builder", "kaniko"], "buildkit, legacy"),
        (&["image", "--tag", "Bad Tag"], "NAME[:TAG]"),
        (
            &["image", "--builder-image", "golang@sha256:12"],
            "64 lowercase hex",
        ),
        (&["dist", "--platform", "linux/sparc"], "linux/arm64"),
        (&["dist", "--app-version", "a b"], "invalid version"),
        (&["frobnicate"], "cargo xtask --help"),
        // References the engine would refuse after glide and Go ran.
        (&["image", "--tag", "a..b:1"], "each path component"),
        (&["image", "--tag", "a.-b:1"], "each path component"),
        (&["image", "--tag", "a___b:1"], "each path component"),
        (&["image", "--tag", "[::1]:5000/x"], "the registry host"),
        (&["image", "--tag", &"a".repeat(248)], "over 255 characters"),
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

#[test]
fn a_source_date_epoch_no_image_can_carry_is_a_usage_error() {
    let ws = Workspace::copy();
    for value in ["99999999999999999", "253402300800", "-1", "yesterday"] {
        let run = ws.xtask_env(&["dist"], &[("SOURCE_DATE_EPOCH", value)]);
        assert_eq!(run.code, Some(2), "{value}: {}", run.all());
        assert!(run.stderr.contains("SOURCE_DATE_EPOCH="), "{}", run.stderr);
        assert!(
            !ws.path("target").exists() && !ws.path("dist").exists(),
            "{value} did work"
        );
    }
}

#[test]
fn help_is_generated_and_names_every_command() {
    let ws = Workspace::copy();
    let run = ws.xtask(&["--help"]).ok();
    for command in [
        "setup",
        "dist",
        "image",
        "verify",
        "base-images",
        "clean",
        "ci",
        "bench",
    ] {
        assert!(
            run.stdout.contains(&format!("xtask {command}")),
            "{command} missing:\n{}",
            run.stdout
        );
    }
    for flag in [
        "--strategy",
        "--smoke",
        "--dry-run",
        "--offline",
        "--no-setup",
        "--platform",
        "--all",
        "--quick",
    ] {
        assert!(run.stdout.contains(flag), "{flag} missing");
    }
}

#[test]
fn a_colon_in_the_checkout_path_is_refused_with_the_fix() {
    let ws = Workspace::copy();
    let odd = ws.base.join("a:b");
    std::fs::rename(&ws.root, &odd).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["dist", "--dry-run"])
        .current_dir(odd.join("go-app"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("contains `:`") && stderr.contains("GOPATH"),
        "{stderr}"
    );
    std::fs::rename(&odd, &ws.root).unwrap();
}
