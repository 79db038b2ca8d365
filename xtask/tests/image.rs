//! `cargo xtask image` and `clean` against the real engine, offline (local base image), on both
//! builders. Docker tests run one at a time: `clean` and the image-list checks see the whole engine.

mod common;

use std::{collections::BTreeSet, process::Command};

use common::{
    binary_sha_in, checkout_label, dangling, docker, files_in, lines, sha256, DockerWorkspace,
};

#[test]
fn every_strategy_on_both_builders() {
    let ws = DockerWorkspace::new();
    ws.xtask(&["dist", "--offline", "--app-version", "t1"]).ok();
    let host_sha = sha256(&ws.path("dist/main"));
    let tag = ws.tag.clone();
    for builder in ["buildkit", "legacy"] {
        for strategy in ["multistage", "handoff", "single"] {
            let what = format!("{strategy} on {builder}");
            let run = ws
                .xtask(&[
                    "image",
                    "--offline",
                    "--strategy",
                    strategy,
                    "--builder",
                    builder,
                    "--tag",
                    &tag,
                    "--app-version",
                    "t1",
                    "--smoke",
                ])
                .ok();
            assert!(
                run.stdout.contains("answered /healthz and /hello/x"),
                "{what}: no smoke:\n{}",
                run.stdout
            );
            assert!(
                run.stdout
                    .contains(&format!("{tag:<32} {strategy:<11} {builder:<9}")),
                "{what}: summary:\n{}",
                run.stdout
            );
            let user = docker(&["image", "inspect", "--format", "{{.Config.User}}", &tag]);
            assert_eq!(user, "65532:65532", "{what} runs as {user}");
            let labels = common::labels_json(&tag);
            for key in [
                "org.opencontainers.image.version\":\"t1",
                "org.opencontainers.image.revision",
                "org.opencontainers.image.created",
                "dev.go-docker-prod.project\":\"go-docker-prod",
            ] {
                assert!(
                    labels.contains(key),
                    "{what}: label {key} missing in {labels}"
                );
            }
            assert!(
                !labels.contains("/tmp") && !labels.contains(ws.root.to_str().unwrap()),
                "{what}: a host path in {labels}"
            );
            let binary = if strategy == "single" {
                "/out/main"
            } else {
                "/main"
            };
            assert_eq!(
                binary_sha_in(&tag, binary, &ws),
                host_sha,
                "{what}: binary differs from dist's"
            );
            if strategy != "single" {
                let expected: BTreeSet<String> = [
                    "main",
                    "etc/passwd",
                    "etc/group",
                    "etc/ssl/certs/ca-certificates.crt",
                ]
                .map(String::from)
                .into();
                assert_eq!(files_in(&tag), expected, "{what}: unexpected files");
            }
            assert!(
                dangling(None, &checkout_label(&ws)).is_empty(),
                "{what}: dangling images left"
            );
        }
    }
}

#[test]
fn clean_removes_only_ours_and_restores_the_image_list() {
    let ws = DockerWorkspace::new();
    // Base images aside: make sure the local base exists before the "before" snapshot.
    ws.xtask(&["base-images"]).ok();
    let before_images = lines(&docker(&["image", "ls", "-a", "-q", "--no-trunc"]));
    let before_containers = lines(&docker(&["ps", "-a", "-q", "--no-trunc"]));

    let tag = ws.tag.clone();
    ws.xtask(&["image", "--offline", "--builder", "legacy", "--tag", &tag])
        .ok();
    ws.xtask(&[
        "image",
        "--offline",
        "--builder",
        "buildkit",
        "--tag",
        &tag,
        "--strategy",
        "handoff",
    ])
    .ok();
    let ours = lines(&docker(&["image", "ls", "-a", "-q", "--no-trunc"]));
    let labelled = lines(&docker(&[
        "image",
        "ls",
        "-q",
        "--filter",
        &checkout_label(&ws),
    ]));
    assert!(
        labelled.len() >= 2,
        "the builds made no image of ours: {labelled:?}"
    );

    // Foreign things: an image, a container of it, a dangling image.
    let foreign_dir = ws.path("target/foreign");
    std::fs::create_dir_all(&foreign_dir).unwrap();
    std::fs::write(foreign_dir.join("Dockerfile"), "FROM scratch\nCOPY a /a\n").unwrap();
    let foreign = format!("{}-foreign", tag.trim_end_matches(":latest"));
    for content in ["one", "two"] {
        std::fs::write(foreign_dir.join("a"), content).unwrap();
        let out = Command::new("docker")
            .args(["build", "-q", "-t", &foreign, foreign_dir.to_str().unwrap()])
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let foreign_dangling = lines(&docker(&[
        "image",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        "dangling=true",
    ]));
    let foreign_container = docker(&["create", &foreign, "/a"]);
    let foreign_images = lines(&docker(&["image", "ls", "-a", "-q", "--no-trunc"]))
        .difference(&ours)
        .cloned()
        .collect::<BTreeSet<_>>();

    let run = ws.xtask(&["clean"]).ok();
    assert!(run.stdout.contains("images removed"), "{}", run.stdout);
    assert!(
        !ws.path("dist").exists()
            && !ws.path("target/gopath").exists()
            && !ws.path("go-app/vendor").exists()
    );
    let after = lines(&docker(&["image", "ls", "-a", "-q", "--no-trunc"]));
    let expected: BTreeSet<String> = before_images.union(&foreign_images).cloned().collect();
    assert_eq!(
        after, expected,
        "clean did not restore the image list (plus the foreign images)"
    );
    assert!(
        !foreign_dangling.is_empty() && foreign_dangling.is_subset(&after),
        "a foreign dangling image went"
    );
    let containers = lines(&docker(&["ps", "-a", "-q", "--no-trunc"]));
    assert!(
        containers.contains(&foreign_container),
        "the foreign container went"
    );
    assert_eq!(containers.len(), before_containers.len() + 1);

    // Twice in a row: nothing left to do, still fine.
    let again = ws.xtask(&["clean"]).ok();
    assert!(
        again.stdout.contains("0 containers, 0 images removed"),
        "{}",
        again.stdout
    );

    docker(&["rm", "-f", &foreign_container]);
    docker(&["image", "rm", "-f", &foreign]);
    for id in foreign_dangling {
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &id])
            .output();
    }
}

#[test]
fn compress_makes_a_smaller_image_that_still_serves() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    ws.xtask(&["image", "--offline", "--tag", &tag]).ok();
    let plain: u64 = docker(&["image", "inspect", "--format", "{{.Size}}", &tag])
        .parse()
        .unwrap();
    let run = ws
        .xtask(&["image", "--offline", "--tag", &tag, "--compress", "--smoke"])
        .ok();
    assert!(
        run.stderr.contains("using the dist handoff"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("answered /healthz and /hello/x"),
        "{}",
        run.stdout
    );
    let packed: u64 = docker(&["image", "inspect", "--format", "{{.Size}}", &tag])
        .parse()
        .unwrap();
    assert!(
        packed * 2 < plain,
        "UPX image {packed} B is not under half of {plain} B"
    );
    assert_eq!(
        binary_sha_in(&tag, "/main", &ws),
        sha256(&ws.path("dist/main")),
        "the image's binary is not dist's"
    );
    // Nothing changed: the handoff does not copy (nor compress) again.
    let again = ws
        .xtask(&["image", "--offline", "--tag", &tag, "--compress"])
        .ok();
    assert!(again.stderr.contains("copy skipped"), "{}", again.stderr);
    assert!(
        !again.stderr.contains("upx "),
        "UPX ran again:\n{}",
        again.stderr
    );
}

#[test]
fn dry_run_runs_nothing() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    let images_before = lines(&docker(&["image", "ls", "-a", "-q"]));
    for strategy in ["multistage", "handoff"] {
        let run = ws
            .xtask(&[
                "image",
                "--offline",
                "--dry-run",
                "--strategy",
                strategy,
                "--tag",
                &tag,
            ])
            .ok();
        assert!(
            run.stdout.contains("[dry-run] DOCKER_BUILDKIT="),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains(&format!("-t {tag}")), "{}", run.stdout);
    }
    let run = ws.xtask(&["dist", "--offline", "--dry-run"]).ok();
    assert!(run.stdout.contains("[dry-run] GOPATH="), "{}", run.stdout);
    assert!(run.stdout.contains("go build -ldflags"), "{}", run.stdout);
    assert_eq!(
        lines(&docker(&["image", "ls", "-a", "-q"])),
        images_before,
        "--dry-run made images"
    );
    assert!(!ws.path("dist").exists(), "--dry-run made dist/");
    assert!(
        !ws.path("go-app/vendor").exists(),
        "--dry-run made go-app/vendor"
    );

    ws.xtask(&["dist", "--offline"]).ok();
    let run = ws.xtask(&["clean", "--dry-run"]).ok();
    assert!(run.stdout.contains("[dry-run] rm -rf"), "{}", run.stdout);
    assert!(
        ws.path("dist/main").exists() && ws.path("go-app/vendor").exists(),
        "clean --dry-run removed files"
    );
}
