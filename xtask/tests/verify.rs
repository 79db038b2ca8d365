//! `--strategy direct` and `cargo xtask verify`: one image ID from two checkouts, two runs,
//! `--no-cache` and either way of loading; verify passes on an image built elsewhere and fails, saying where, on an image
//! whose source differs from its labels.

mod common;

use common::{docker, json, DockerWorkspace, Workspace};

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn direct_gives_one_image_id_and_verify_proves_it() {
    let a = DockerWorkspace::new();
    let b = Workspace::clone_of(&a);
    let tag = a.tag.clone();
    let first = a
        .xtask(&["image", "--offline", "--strategy", "direct", "--tag", &tag])
        .ok()
        .image_id();
    // Again: nothing to load.
    let again = a
        .xtask(&[
            "image",
            "--offline",
            "--strategy",
            "direct",
            "--tag",
            &tag,
            "--no-cache",
        ])
        .ok();
    assert_eq!(again.image_id(), first, "a second run differs");
    assert!(again.stderr.contains("load skipped"), "{}", again.stderr);
    // Another checkout of the same commit, at another path, after the image is gone.
    docker(&["image", "rm", &tag]);
    let other = b
        .xtask(&["image", "--offline", "--strategy", "direct", "--tag", &tag])
        .ok();
    assert_eq!(
        other.image_id(),
        first,
        "another checkout gives another image"
    );
    // The summary's size (the layer's file bytes, known without asking) is the engine's.
    let engine_size: u64 = docker(&["image", "inspect", "--format", "{{.Size}}", &tag])
        .trim()
        .parse()
        .unwrap();
    let summary = other
        .stdout
        .lines()
        .find(|l| l.starts_with(tag.as_str()))
        .expect("a summary line");
    let words: Vec<&str> = summary.split_whitespace().collect();
    assert_eq!(
        words[3..5].join(" "),
        xtask::infra::ctx::human_size(engine_size),
        "{summary}"
    );
    // The OCI layout names the same config.
    let index = json(&std::fs::read(b.path("target/xtask/oci/index.json")).unwrap());
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest = json(
        &std::fs::read(b.path(&format!("target/xtask/oci/blobs/sha256/{manifest_digest}")))
            .unwrap(),
    );
    assert_eq!(manifest["config"]["digest"], first.as_str());
    // verify in checkout A proves the image B built.
    let run = a.xtask(&["verify", &tag]).ok();
    assert!(run.stdout.contains("verified:"), "{}", run.stdout);
    assert!(
        !a.path("target/xtask/worktrees")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "worktree left"
    );

    // An image whose builder-base label is an option: refused, never passed to a command line.
    let dir = a.path("target/tampered");
    std::fs::create_dir_all(&dir).unwrap();
    let label = common::project::LABEL_BUILDER_BASE;
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {tag}\nLABEL {label}=--help\n"),
    )
    .unwrap();
    let tampered = format!("{}-tampered:1", tag.trim_end_matches(":latest"));
    common::docker(&["build", "-q", "-t", &tampered, dir.to_str().unwrap()]);
    let run = a.xtask(&["verify", &tampered]).failed();
    common::docker(&["image", "rm", &tampered]);
    assert!(
        run.stderr.contains("label is not an image reference")
            && !run.stderr.contains("$ docker create"),
        "{}",
        run.stderr
    );

    // One byte of the source changed under the same labels: verify fails and names /main.
    let main_go = b.path("go-app/main.go");
    let source = std::fs::read_to_string(&main_go).unwrap();
    std::fs::write(
        &main_go,
        source.replacen(
            "Welcome to go-docker-prod!",
            "Welcome to go-docker-prod?",
            1,
        ),
    )
    .unwrap();
    let version = common::label(&tag, common::project::OCI_VERSION);
    b.xtask(&[
        "image",
        "--offline",
        "--strategy",
        "direct",
        "--tag",
        &tag,
        "--app-version",
        &version,
    ])
    .ok();
    let run = a.xtask(&["verify", &tag]).failed();
    assert!(
        run.stderr.contains("is NOT what revision"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("layer: /main differs (content)"),
        "{}",
        run.stderr
    );
    b.xtask(&["clean"]).ok();
}
