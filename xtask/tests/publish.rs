//! `cargo xtask publish` to a real registry (Debian's docker-registry on a loopback port): a
//! two-platform index with the registry's digests equal to ours, each image as it should be, SBOM
//! and provenance found from the image through the registry, the same digests and documents from
//! another checkout with no new blob, credentials, signatures, and a registry that is down. Each
//! test publishes a fresh copy of its own.

mod common;

use std::{
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::{docker, json, Registry, Workspace};

const EM_AARCH64: u16 = 183;

fn tool(program: &str, args: &[&str], env: &[(&str, &str)]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn digests(ws: &Workspace) -> Vec<String> {
    fs::read_to_string(ws.path("dist/digests.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A two-platform publish of a fresh copy to a registry of its own: the engine held, and the
/// lines of dist/digests.txt (the index, then amd64 and arm64).
struct Published {
    _engine: common::EngineGuard,
    registry: Registry,
    ws: Workspace,
    to: String,
    run: common::Run,
    lines: Vec<String>,
}

fn published() -> Published {
    let engine = common::engine();
    let registry = Registry::start();
    let ws = Workspace::copy();
    let to = format!("{}/app:t1", registry.addr);
    let run = ws.xtask(&["publish", "--offline", "--to", &to]).ok();
    let lines = digests(&ws);
    assert_eq!(lines.len(), 3, "{lines:?}");
    Published {
        _engine: engine,
        registry,
        ws,
        to,
        run,
        lines,
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        self.ws.xtask(&["clean"]);
    }
}

#[test]
#[ignore = "needs a Docker engine, docker-registry, skopeo and oras: cargo xtask ci"]
fn publish_pushes_an_index_of_both_platforms_with_our_digests() {
    let published = published();
    let (ws, to, run, lines) = (
        &published.ws,
        published.to.clone(),
        &published.run,
        published.lines.clone(),
    );
    // --dry-run: what would be pushed, with the same digests, and nothing run.
    let dry = ws
        .xtask(&["publish", "--offline", "--dry-run", "--to", &to])
        .ok();
    for line in &lines {
        let digest = line.rsplit_once('@').unwrap().1;
        assert!(
            dry.stdout.contains(digest),
            "--dry-run lacks {digest}:\n{}",
            dry.stdout
        );
    }
    assert!(
        dry.stdout.contains("[dry-run] skopeo copy"),
        "{}",
        dry.stdout
    );
    let index = lines[0]
        .strip_prefix(&format!("{to}@"))
        .expect("the index line names the tag");
    assert!(
        run.stdout.contains(index),
        "the digests were not printed:\n{}",
        run.stdout
    );
    // The registry's index: our digest, both platforms.
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{to}"),
        ],
        &[],
    );
    assert_eq!(
        format!("sha256:{}", xtask::infra::fsx::sha256_hex(&raw)),
        index
    );
    let parsed = json(&raw);
    let archs: Vec<&str> = parsed["manifests"]
        .members()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
}

#[test]
#[ignore = "needs a Docker engine, docker-registry, skopeo and oras: cargo xtask ci"]
fn the_published_arm64_image_holds_an_aarch64_binary() {
    let published = published();
    let arm64 = &published.lines[2];
    // The arm64 image's /main is an aarch64 ELF: pulled into a directory, read from its layer.
    let dir = tempfile::tempdir().unwrap();
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{arm64}"),
            &format!("dir:{}", dir.path().display()),
        ],
        &[],
    );
    let manifest = json(&fs::read(dir.path().join("manifest.json")).unwrap());
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let mut archive = tar::Archive::new(fs::File::open(dir.path().join(layer)).unwrap());
    let main = dir.path().join("main");
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new("main") {
            entry.unpack(&main).unwrap();
        }
    }
    assert_eq!(common::elf(&main).machine, EM_AARCH64);
}

#[test]
#[ignore = "needs a Docker engine, docker-registry, skopeo and oras: cargo xtask ci"]
fn the_published_amd64_image_runs_hardened_and_turns_healthy() {
    let published = published();
    let amd64 = &published.lines[1];
    // The amd64 image, pulled by digest by the engine, runs hardened and turns healthy.
    docker(&["pull", "-q", amd64]);
    let id = docker(&["run", "-d", "--read-only", "--cap-drop", "ALL", amd64]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let healthy = loop {
        let status = docker(&["inspect", "--format", "{{.State.Health.Status}}", &id]);
        if status == "healthy" || Instant::now() > deadline {
            break status == "healthy";
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    docker(&["stop", "-t", "5", &id]);
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.ExitCode}}", &id]),
        "0"
    );
    docker(&["rm", &id]);
    docker(&["image", "rm", amd64]);
    assert!(healthy, "the pulled image did not turn healthy");
}

#[test]
#[ignore = "needs a Docker engine, docker-registry, skopeo and oras: cargo xtask ci"]
fn sbom_and_provenance_are_found_through_the_registry() {
    let published = published();
    let (ws, to, amd64) = (&published.ws, published.to.clone(), &published.lines[1]);
    // The SBOM names httprouter at the pinned commit and the Go version; it and the provenance are
    // found from the image's digest through the registry, byte for byte what dist/ holds.
    let sbom = fs::read_to_string(ws.path("dist/sbom-linux-amd64.spdx.json")).unwrap();
    assert!(sbom.contains("pkg:golang/github.com/julienschmidt/httprouter@4eec211fa4e8df74ed978dc5681612131854144f"), "{sbom}");
    assert!(
        sbom.contains(&format!("\"versionInfo\": \"{}.", common::project::GO_LINE)),
        "no Go version in the SBOM"
    );
    for (kind, file, name) in [
        (
            "application/spdx+json",
            "sbom-linux-amd64.spdx.json",
            "sbom.spdx.json",
        ),
        (
            "application/vnd.in-toto+json",
            "provenance-linux-amd64.intoto.json",
            "provenance.intoto.json",
        ),
    ] {
        let found = tool(
            "oras",
            &[
                "discover",
                "--plain-http",
                "--distribution-spec",
                "v1.1-referrers-tag",
                "--artifact-type",
                kind,
                "--format",
                "json",
                amd64,
            ],
            &[],
        );
        let found = json(&found);
        assert_eq!(found["manifests"].len(), 1, "{kind}: {found}");
        let out = tempfile::tempdir().unwrap();
        let artifact = format!(
            "{}@{}",
            to.split(':')
                .take(2)
                .collect::<Vec<_>>()
                .join(":")
                .trim_end_matches(":t1"),
            found["manifests"][0]["digest"].as_str().unwrap()
        );
        let artifact = artifact.replace("/app:t1", "/app");
        tool(
            "oras",
            &[
                "pull",
                "--plain-http",
                "-o",
                out.path().to_str().unwrap(),
                &artifact,
            ],
            &[],
        );
        assert_eq!(
            fs::read(out.path().join(name)).unwrap(),
            fs::read(ws.path(&format!("dist/{file}"))).unwrap(),
            "{kind}"
        );
    }
}

#[test]
#[ignore = "needs a Docker engine, docker-registry, skopeo and oras: cargo xtask ci"]
fn another_checkout_publishes_the_same_bytes_and_no_new_blob() {
    let published = published();
    let (registry, ws, to, lines) = (
        &published.registry,
        &published.ws,
        published.to.clone(),
        published.lines.clone(),
    );
    // Another checkout of the same commit: the same digests and documents, and no new blob.
    let blobs = registry.blob_count();
    let other = Workspace::clone_of(ws);
    other.xtask(&["publish", "--offline", "--to", &to]).ok();
    assert_eq!(
        digests(&other),
        lines,
        "another checkout published other digests"
    );
    for file in [
        "sbom-linux-amd64.spdx.json",
        "provenance-linux-arm64.intoto.json",
    ] {
        assert_eq!(
            common::sha256(&other.path(&format!("dist/{file}"))),
            common::sha256(&ws.path(&format!("dist/{file}"))),
            "{file}"
        );
    }
    assert_eq!(
        registry.blob_count(),
        blobs,
        "the second publish pushed new blobs"
    );
}

#[test]
#[ignore = "needs a Docker engine, docker-registry, skopeo and oras: cargo xtask ci"]
fn a_registry_killed_while_documents_are_attached() {
    let _engine = common::engine();
    let mut registry = Registry::start();
    let ws = Workspace::copy();
    let to = format!("{}/app:t1", registry.addr);
    // oras, the tool that attaches the documents once the push is done, kills the registry
    // first: the tag is live, the documents are not.
    let shims = tempfile::tempdir().unwrap();
    let oras = shims.path().join("oras");
    let real = String::from_utf8(tool("which", &["oras"], &[])).unwrap();
    let script = format!(
        "#!/bin/sh\nkill -9 {} 2>/dev/null\nexec {} \"$@\"\n",
        registry.pid(),
        real.trim()
    );
    fs::write(&oras, script).unwrap();
    fs::set_permissions(&oras, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        shims.path().display(),
        std::env::var("PATH").unwrap()
    );
    let run = ws
        .xtask_env(&["publish", "--offline", "--to", &to], &[("PATH", &path)])
        .failed();
    assert!(
        run.stderr
            .contains("The push had completed: the tag names the new image")
            && !run.stderr.contains("untagged"),
        "{}",
        run.stderr
    );
    // The digests were said: the push had completed.
    assert!(
        run.stdout.contains(&format!("{to}@sha256:")),
        "{}",
        run.stdout
    );
    // Once the registry is back, the same command completes it with the same digests.
    registry.restart();
    let again = ws.xtask(&["publish", "--offline", "--to", &to]).ok();
    let said = |run: &common::Run| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{to}@")))
            .map(str::to_string)
    };
    assert_eq!(said(&again), said(&run));
    ws.xtask(&["clean"]).ok();
}

#[test]
#[ignore = "needs a Docker engine, docker-registry, htpasswd, skopeo, oras and cosign: cargo xtask ci"]
fn credentials_signatures_and_a_registry_that_is_down() {
    let _engine = common::engine();
    let secrets = tempfile::tempdir().unwrap();
    let htpasswd = secrets.path().join("htpasswd");
    // Made now: a literal would be found in this very file of the checkout.
    let password = format!("pw-{}", xtask::infra::fsx::random_hex(8));
    let password = password.as_str();
    fs::write(
        &htpasswd,
        tool("htpasswd", &["-Bbn", "tester", password], &[]),
    )
    .unwrap();
    let registry = Registry::start_with(Some(&htpasswd));
    let ws = Workspace::copy();
    let to = format!("{}/app:signed", registry.addr);
    let config = secrets.path().join("docker-config");
    fs::create_dir_all(&config).unwrap();
    let config = config.to_str().unwrap().to_string();
    let env = [("DOCKER_CONFIG", config.as_str()), ("COSIGN_PASSWORD", "")];

    // No credentials: refused, with the fix.
    let run = ws
        .xtask_env(&["publish", "--offline", "--to", &to], &env)
        .failed();
    assert!(
        run.stderr.contains("refused: no credentials") && run.stderr.contains("docker login"),
        "{}",
        run.stderr
    );
    // After `docker login`: it works, and the password is in no output and no file of the checkout.
    let mut login = Command::new("docker")
        .args(["login", &registry.addr, "-u", "tester", "--password-stdin"])
        .env("DOCKER_CONFIG", &config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(login.stdin.as_mut().unwrap(), password.as_bytes()).unwrap();
    drop(login.stdin.take());
    assert!(login.wait().unwrap().success(), "docker login");
    // A signing key, outside the checkout.
    tool(
        "cosign",
        &[
            "generate-key-pair",
            "--output-key-prefix",
            secrets.path().join("test").to_str().unwrap(),
        ],
        &env,
    );
    let (key, public) = (
        secrets.path().join("test.key"),
        secrets.path().join("test.pub"),
    );
    let run = ws
        .xtask_env(
            &[
                "publish",
                "--offline",
                "--to",
                &to,
                "--sign",
                key.to_str().unwrap(),
            ],
            &env,
        )
        .ok();
    assert!(!run.all().contains(password), "the password was printed");
    let mut files = Vec::new();
    walk(&ws.root, &mut files);
    for file in files {
        let bytes = fs::read(&file).unwrap_or_default();
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "the password is in {}",
            file.display()
        );
    }
    let verify = |ws: &Workspace| {
        ws.xtask_env(
            &[
                "publish",
                "--to",
                &to,
                "--verify-signature",
                public.to_str().unwrap(),
            ],
            &env,
        )
    };
    assert!(verify(&ws).ok().stdout.contains("signature verified"));
    // A changed image re-pushed under the same tag (unsigned): its digest has no valid signature.
    ws.xtask_env(
        &[
            "publish",
            "--offline",
            "--to",
            &to,
            "--app-version",
            "changed",
        ],
        &env,
    )
    .ok();
    let run = verify(&ws).failed();
    assert!(run.stderr.contains("no valid signature"), "{}", run.stderr);

    // A registry that is down: a clear error; up again, the same command completes, with the
    // digests the same content has anywhere.
    let expected = digests(&ws)[0].rsplit_once('@').unwrap().1.to_string();
    let mut plain = Registry::start();
    plain.stop();
    let down = format!("{}/app:down", plain.addr);
    let publish = [
        "publish",
        "--offline",
        "--to",
        down.as_str(),
        "--app-version",
        "changed",
    ];
    let run = ws.xtask_env(&publish, &env).failed();
    assert!(
        run.stderr.contains("is unreachable")
            && run
                .stderr
                .contains("running the same command again completes it"),
        "{}",
        run.stderr
    );
    // Nothing said to be published that was not.
    assert!(
        !run.stdout.contains(&format!("{down}@sha256:")),
        "{}",
        run.stdout
    );
    plain.restart();
    ws.xtask_env(&publish, &env).ok();
    assert_eq!(digests(&ws)[0], format!("{down}@{expected}"));
    ws.xtask(&["clean"]).ok();
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            walk(&path, out);
        } else if kind.is_file() {
            out.push(path);
        }
    }
}
