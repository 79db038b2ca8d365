//! `cargo xtask image` and `clean` against the real engine, offline (local base image), on both
//! builders and with `direct`. Docker tests run one at a time (they see the whole engine).

mod common;

use std::{collections::BTreeSet, process::Command};

use common::{
    dangling, docker, export_listing, file_sha_in, label, lines, project, sha256, temp_containers,
    DockerWorkspace, Workspace, COMMIT_TIME,
};

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn every_strategy_ships_the_same_files_hardened_and_labelled() {
    let ws = DockerWorkspace::new();
    ws.xtask(&["dist", "--offline", "--app-version", "t1"]).ok();
    let host_sha = sha256(&ws.path("dist/main"));
    let tag = ws.tag.clone();
    let revision = ws.head();
    let mut listings = Vec::new();
    for (strategy, builder) in common::strategies() {
        let what = format!("{strategy} on {}", builder.unwrap_or("-"));
        let mut args = vec![
            "image",
            "--offline",
            "--strategy",
            strategy,
            "--tag",
            &tag,
            "--app-version",
            "t1",
            "--smoke",
        ];
        if let Some(b) = builder {
            args.extend(["--builder", b]);
        }
        let run = ws.xtask(&args).ok();
        // Healthy by the image's own health check.
        assert!(
            run.stdout.contains("healthy after "),
            "{what}: no smoke:\n{}",
            run.stdout
        );
        let row: Vec<&str> = run
            .stdout
            .lines()
            .find(|l| l.starts_with(tag.as_str()))
            .map(|l| l.split_whitespace().take(3).collect())
            .unwrap_or_default();
        assert_eq!(
            row,
            [tag.as_str(), strategy, builder.unwrap_or("-")],
            "{what}: summary:\n{}",
            run.stdout
        );
        let user = docker(&["image", "inspect", "--format", "{{.Config.User}}", &tag]);
        assert_eq!(user, "65532:65532", "{what} runs as {user}");
        for (key, value) in [
            (project::OCI_VERSION, "t1"),
            (project::OCI_REVISION, revision.as_str()),
            (project::OCI_CREATED, COMMIT_TIME),
            (project::LABEL_PROJECT, project::TOOL),
            (project::LABEL_BUILDER_BASE, project::LOCAL_BUILDER_IMAGE),
        ] {
            assert_eq!(label(&tag, key), value, "{what}: label {key}");
        }
        assert!(
            label(&tag, project::LABEL_GO).starts_with(&format!("go{}.", project::GO_LINE)),
            "{what}"
        );
        let labels = docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            &tag,
        ]);
        assert!(
            !labels.contains("/tmp") && !labels.contains("checkout"),
            "{what}: a host value in {labels}"
        );
        let binary = if strategy == "single" {
            "/out/main"
        } else {
            "/main"
        };
        assert_eq!(
            file_sha_in(None, &tag, binary),
            host_sha,
            "{what}: binary differs from dist's"
        );
        if strategy != "single" {
            let listing = export_listing(None, &tag);
            let main = listing
                .iter()
                .find(|l| l.ends_with(" main"))
                .cloned()
                .unwrap_or_default();
            assert!(main.starts_with("555 0/0 "), "{what}: /main is {main}");
            listings.push((what.clone(), listing));
        }
        assert!(dangling(None).is_empty(), "{what}: dangling images left");
        assert!(
            temp_containers(None).is_empty(),
            "{what}: temporary containers left"
        );
    }
    // Exactly the same files, owners, modes and contents in every strategy.
    let (first, expected) = &listings[0];
    let names: Vec<String> = expected
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    // The files `direct` writes: the one list of what a runtime image holds.
    let content = xtask::pipeline::oci::Content {
        binaries: vec![(
            "main",
            xtask::pipeline::oci::Body::Bytes(Default::default()),
        )],
        ca_bundle: b"",
        files: Vec::new(),
    };
    let runtime: Vec<String> = xtask::pipeline::oci::runtime_files(&content)
        .iter()
        .map(|f| f.0.to_string())
        .collect();
    assert_eq!(names, runtime);
    for (what, listing) in &listings[1..] {
        assert_eq!(listing, expected, "{what} and {first} ship different files");
    }
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn clean_removes_what_it_built_and_nothing_of_the_users() {
    let ws = DockerWorkspace::new();
    ws.xtask(&["base-images"]).ok();
    let before_images = lines(&docker(&["image", "ls", "-a", "-q", "--no-trunc"]));
    let tag = ws.tag.clone();
    ws.xtask(&["image", "--offline", "--builder", "legacy", "--tag", &tag])
        .ok();
    ws.xtask(&["image", "--offline", "--strategy", "handoff", "--tag", &tag])
        .ok();
    let built = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);

    // The user's things: a container of our image, an image built FROM ours, an extra tag, and a
    // foreign image with a dangling predecessor.
    let user_container = docker(&[
        "run",
        "-d",
        "--name",
        &format!("userweb-{}", std::process::id()),
        &tag,
    ]);
    let dir = ws.path("target/user");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {tag}\nLABEL user=yes\n"),
    )
    .unwrap();
    let derived = format!("{}-derived:1", tag.trim_end_matches(":latest"));
    docker(&["build", "-q", "-t", &derived, dir.to_str().unwrap()]);
    let extra_tag = format!("{}-mine:1", tag.trim_end_matches(":latest"));
    docker(&["tag", &tag, &extra_tag]);

    let run = ws.xtask(&["clean"]).ok();
    assert!(run.stdout.contains("images removed"), "{}", run.stdout);
    assert!(
        run.stdout.contains("stayed:"),
        "clean did not say what stayed:\n{}",
        run.stdout
    );
    assert!(
        !ws.path("dist").exists()
            && !ws.path("target/gopath").exists()
            && !ws.path("go-app/vendor").exists()
    );
    // Ours is untagged; the user's container still runs, the derived image and extra tag stay.
    assert!(Command::new("docker")
        .args(["image", "inspect", &tag])
        .output()
        .unwrap()
        .stdout
        .starts_with(b"[]"));
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.Running}}", &user_container]),
        "true"
    );
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Id}}", &extra_tag]),
        built
    );
    docker(&["image", "inspect", &derived]);

    docker(&["rm", "-f", &user_container]);
    docker(&["image", "rm", &derived, &extra_tag]);
    // With the user's things gone, a second clean leaves the image list as it found it.
    let again = ws.xtask(&["clean"]).ok();
    assert!(again.stdout.contains("0 containers"), "{}", again.stdout);
    let after = lines(&docker(&["image", "ls", "-a", "-q", "--no-trunc"]));
    let new: BTreeSet<_> = after.difference(&before_images).collect();
    assert!(new.is_empty(), "left after clean: {new:?}");
}

/// The image's config, less the build id every Dockerfile build of ours labels its images with.
fn config_without_build_id(image: &str) -> String {
    let mut config = common::json(
        docker(&["image", "inspect", "--format", "{{json .Config}}", image]).as_bytes(),
    );
    assert!(
        config["Labels"].has_key(project::LABEL_BUILD),
        "no build id"
    );
    config["Labels"].remove(project::LABEL_BUILD);
    config.dump()
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn two_checkouts_one_tag_each_image_cleaned_by_its_own() {
    let a = DockerWorkspace::new();
    let b = Workspace::clone_of(&a);
    let tag = a.tag.clone();
    let first = a
        .xtask(&["image", "--offline", "--tag", &tag])
        .ok()
        .image_id();
    let config_a = config_without_build_id(&tag);
    // The second checkout cannot prove the first one's image its own: it stays, and says so,
    // until the first checkout's clean.
    let run = b
        .xtask(&[
            "image",
            "--offline",
            "--tag",
            &tag,
            "--app-version",
            "other",
        ])
        .ok();
    assert!(
        run.stderr.contains(&format!(
            "{first}, stays: this checkout's record does not name it"
        )),
        "{}",
        run.stderr
    );
    docker(&["image", "inspect", &first]);
    a.xtask(&["clean"]).ok();
    assert!(
        dangling(None).is_empty(),
        "the first checkout's clean left its image dangling"
    );
    b.xtask(&["image", "--offline", "--tag", &tag]).ok();
    let config_b = config_without_build_id(&tag);
    assert_eq!(
        config_a, config_b,
        "the same commit gives another config from another checkout"
    );
    b.xtask(&["clean"]).ok();
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn two_checkouts_building_at_once() {
    let a = DockerWorkspace::new();
    let b = Workspace::clone_of(&a);
    let (ta, tb) = (
        a.tag.clone(),
        format!("{}-b:1", a.tag.trim_end_matches(":latest")),
    );
    a.xtask(&["dist", "--offline"]).ok(); // vendor/ and the base image, once
    let mut ca = a.command(&["image", "--offline", "--tag", &ta]);
    let mut cb = b.command(&[
        "image",
        "--offline",
        "--builder",
        "legacy",
        "--no-cache",
        "--tag",
        &tb,
    ]);
    let (pa, pb) = (ca.output(), cb.output());
    let (ra, rb) = (
        common::Run::from(pa.unwrap()),
        common::Run::from(pb.unwrap()),
    );
    ra.ok();
    rb.ok();
    b.xtask(&["clean"]).ok();
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn no_token_or_host_path_leaks_into_the_image() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    // The usual private-module setup: a token through insteadOf; and an scp-style remote.
    ws.git(&["remote", "add", "origin", "https://github.com/acme/app.git"]);
    ws.git(&[
        "config",
        "url.https://oauth2:SECRETTOKEN@github.com/.insteadOf",
        "https://github.com/",
    ]);
    ws.xtask(&["image", "--offline", "--tag", &tag]).ok();
    assert_eq!(
        label(&tag, project::OCI_SOURCE),
        "https://github.com/acme/app.git"
    );
    ws.git(&[
        "remote",
        "set-url",
        "origin",
        "someone@build-host:/home/someone/app.git",
    ]);
    ws.xtask(&["image", "--offline", "--strategy", "direct", "--tag", &tag])
        .ok();
    assert_eq!(label(&tag, project::OCI_SOURCE), "");
    let inspect = docker(&["image", "inspect", &tag]);
    let history = docker(&["history", "--no-trunc", &tag]);
    let out = Command::new("docker")
        .args(["save", &tag])
        .output()
        .unwrap()
        .stdout;
    let root = ws.root.to_str().unwrap();
    for (what, text) in [
        ("inspect", inspect.as_bytes()),
        ("history", history.as_bytes()),
        ("save", out.as_slice()),
    ] {
        for leak in ["SECRETTOKEN", "someone", "build-host", root] {
            let found = text.windows(leak.len()).any(|w| w == leak.as_bytes());
            assert!(!found, "`{leak}` in docker {what}");
        }
    }
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn compress_makes_a_smaller_image_that_still_serves() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    ws.xtask(&["image", "--offline", "--tag", &tag]).ok();
    let size = |t: &str| {
        docker(&["image", "inspect", "--format", "{{.Size}}", t])
            .parse::<u64>()
            .unwrap()
    };
    let plain = size(&tag);
    let run = ws
        .xtask(&["image", "--offline", "--tag", &tag, "--compress", "--smoke"])
        .ok();
    assert!(
        run.stderr.contains("using the dist handoff"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("answered /healthz /hello/x"),
        "{}",
        run.stdout
    );
    let packed = size(&tag);
    assert!(
        packed * 2 < plain,
        "UPX image {packed} B is not under half of {plain} B"
    );
    assert_eq!(
        file_sha_in(None, &tag, "/main"),
        sha256(&ws.path("dist/main"))
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
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn dry_run_runs_nothing() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    ws.xtask(&["base-images"]).ok();
    let images_before = lines(&docker(&["image", "ls", "-a", "-q"]));
    for strategy in ["multistage", "handoff", "direct"] {
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
        let expected = if strategy == "direct" {
            "[dry-run] write SHA256SUMS"
        } else {
            "[dry-run] DOCKER_BUILDKIT="
        };
        assert!(run.stdout.contains(expected), "{strategy}: {}", run.stdout);
    }
    let run = ws.xtask(&["dist", "--offline", "--dry-run"]).ok();
    assert!(
        run.stdout.contains("GOPATH=") && run.stdout.contains("go build -ldflags"),
        "{}",
        run.stdout
    );
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
    assert!(
        !ws.path("target/xtask/record.json").exists(),
        "--dry-run wrote the record"
    );

    ws.xtask(&["dist", "--offline"]).ok();
    let run = ws.xtask(&["clean", "--dry-run"]).ok();
    assert!(run.stdout.contains("[dry-run] rm -rf"), "{}", run.stdout);
    assert!(
        ws.path("dist/main").exists() && ws.path("go-app/vendor").exists(),
        "clean --dry-run removed files"
    );
}

/// A builder image pinned by digest: the local base pushed to a loopback registry, then named
/// `NAME@sha256:…`.
#[test]
#[ignore = "needs a Docker engine and docker-registry: cargo xtask ci"]
fn a_digest_pinned_builder_image_builds() {
    let ws = DockerWorkspace::new();
    ws.xtask(&["base-images"]).ok();
    let registry = common::Registry::start();
    let pushed = format!("{}/golang:pinned", registry.addr);
    docker(&["tag", project::LOCAL_BUILDER_IMAGE, &pushed]);
    docker(&["push", &pushed]);
    let digest = docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &pushed,
    ]);
    assert!(digest.contains("@sha256:"), "{digest}");
    let tag = ws.tag.clone();
    for strategy in ["multistage", "direct"] {
        ws.xtask(&[
            "image",
            "--offline",
            "--strategy",
            strategy,
            "--builder-image",
            &digest,
            "--tag",
            &tag,
        ])
        .ok();
        assert_eq!(
            label(&tag, project::LABEL_BUILDER_BASE),
            digest,
            "{strategy}"
        );
    }
    docker(&["image", "rm", &pushed]);
    assert!(
        temp_containers(None).is_empty(),
        "temporary containers left"
    );
}
