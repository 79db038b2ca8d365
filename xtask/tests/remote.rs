//! A remote engine (a second dockerd in its own namespaces, which cannot see our files; one per
//! test): every strategy and dist's container fallback work through DOCKER_HOST alone, `direct` gives the same
//! image ID there as here, and DOCKER_CONTEXT (or `docker context use`) is honoured like the CLI
//! honours it, without ever starting a local dockerd.

mod common;

use std::process::Command;

use common::{sha256, RemoteEngine, Workspace};

/// A copy with `direct` built on the local engine, and a second engine with the builder base.
struct Setup {
    _engine: std::sync::MutexGuard<'static, ()>,
    /// Held while the test uses the host's engine (see `remote_only`).
    host: Option<common::HostEngine>,
    ws: Workspace,
    tag: String,
    local_direct: String,
    host_sha: String,
    remote: RemoteEngine,
}

fn setup() -> Setup {
    let engine = common::private_engines();
    let host = common::host_engine();
    let ws = Workspace::copy();
    let tag = common::tag(&ws);
    ws.xtask(&["base-images"]).ok(); // on the local engine
    let local_direct = ws
        .xtask(&["image", "--offline", "--strategy", "direct", "--tag", &tag])
        .ok()
        .image_id();
    let host_sha = sha256(&ws.path("dist/main"));
    let remote = RemoteEngine::start();
    remote.load(common::project::LOCAL_BUILDER_IMAGE);
    Setup {
        _engine: engine,
        host: Some(host),
        ws,
        tag,
        local_direct,
        host_sha,
        remote,
    }
}

/// `setup`, for a test that then uses the remote engine only: the host's goes to other tests.
fn remote_only() -> Setup {
    let mut setup = setup();
    setup.host = None;
    setup
}

impl Drop for Setup {
    fn drop(&mut self) {
        let env = [("DOCKER_HOST", self.remote.host.as_str())];
        self.ws.xtask_env(&["clean"], &env);
        let _host = self.host.take().unwrap_or_else(common::host_engine);
        self.ws.xtask(&["clean"]);
    }
}

#[test]
#[ignore = "needs root, a Docker engine and namespaces: cargo xtask ci"]
fn the_remote_engine_cannot_see_our_files() {
    let setup = remote_only();
    let (ws, remote) = (&setup.ws, &setup.remote);
    // It really does not see our files: a bind mount of the workspace shows an empty directory.
    let mount = format!("{}:/w", ws.root.to_str().unwrap());
    let ls = remote.docker(&[
        "run",
        "--rm",
        "-v",
        &mount,
        common::project::LOCAL_BUILDER_IMAGE,
        "ls",
        "-A",
        "/w",
    ]);
    assert!(
        ls.status.success() && String::from_utf8_lossy(&ls.stdout).trim().is_empty(),
        "the remote engine sees the workspace"
    );
}

#[test]
#[ignore = "needs root, a Docker engine and namespaces: cargo xtask ci"]
fn direct_without_go_gives_the_same_image_id_there_on_record_for_that_engine() {
    let setup = remote_only();
    let (ws, remote) = (&setup.ws, &setup.remote);
    let (tag, local_direct) = (setup.tag.as_str(), setup.local_direct.as_str());
    // `direct` without Go, first on that engine: the binary from the builder image gives the same
    // image ID, and the builder image it made there is on record for that engine.
    let mut cmd = ws.command(&[
        "image",
        "--offline",
        "--no-setup",
        "--strategy",
        "direct",
        "--tag",
        tag,
    ]);
    cmd.env("DOCKER_HOST", &remote.host)
        .env("PATH", ws.path_without(&["go"]));
    let run = common::with_tmpfs_over(&[&common::go_root()], &cmd).ok();
    assert!(
        run.stderr
            .contains("the binary comes from the builder image"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.image_id(),
        local_direct,
        "direct without Go gives another image ID"
    );
    let record = std::fs::read_to_string(ws.path("target/xtask/record.json")).unwrap();
    let on_remote = jzon::parse(&record).unwrap()["engines"][remote.host.as_str()].dump();
    assert!(
        on_remote.contains("go-docker-prod-builder:latest") && on_remote.contains(local_direct),
        "the record lacks what direct made on the remote engine: {record}"
    );
}

#[test]
#[ignore = "needs root, a Docker engine and namespaces: cargo xtask ci"]
fn every_strategy_works_there_with_the_same_binary() {
    let setup = remote_only();
    let (ws, remote, host_sha) = (&setup.ws, &setup.remote, &setup.host_sha);
    let (tag, local_direct) = (setup.tag.as_str(), setup.local_direct.as_str());
    let env = [("DOCKER_HOST", remote.host.as_str())];
    for (strategy, builder) in common::strategies() {
        let what = format!("{strategy} on {}", builder.unwrap_or("-"));
        let mut args = vec![
            "image",
            "--offline",
            "--strategy",
            strategy,
            "--tag",
            tag,
            "--smoke",
        ];
        if let Some(b) = builder {
            args.extend(["--builder", b]);
        }
        let run = ws.xtask_env(&args, &env).ok();
        assert!(
            run.stdout.contains("health check only"),
            "{what}: {}",
            run.stdout
        );
        if strategy == "direct" {
            assert_eq!(
                run.image_id(),
                local_direct,
                "direct gives another image ID on the remote engine"
            );
        }
        assert!(
            common::dangling(Some(&remote.host)).is_empty(),
            "{what}: dangling images left"
        );
        let binary = if strategy == "single" {
            "/out/main"
        } else {
            "/main"
        };
        assert_eq!(
            common::file_sha_in(Some(&remote.host), tag, binary),
            *host_sha,
            "{what}: the binary differs"
        );
    }
}

#[test]
#[ignore = "needs root, a Docker engine and namespaces: cargo xtask ci"]
fn dist_builds_in_the_builder_image_there_without_go() {
    let setup = remote_only();
    let (ws, remote, host_sha) = (&setup.ws, &setup.remote, &setup.host_sha);
    // No Go on the host (off PATH, Debian's hidden): dist builds in the builder image there.
    std::fs::remove_dir_all(ws.path("dist")).unwrap();
    let mut cmd = ws.command(&["dist", "--offline", "--no-setup"]);
    cmd.env("DOCKER_HOST", &remote.host)
        .env("PATH", ws.path_without(&["go"]));
    let run = common::with_tmpfs_over(&[&common::go_root()], &cmd).ok();
    assert!(run.stderr.contains("no Go on this host"), "{}", run.stderr);
    assert_eq!(
        sha256(&ws.path("dist/main")),
        *host_sha,
        "the container fallback's binary differs"
    );
}

#[test]
#[ignore = "needs root, a Docker engine and namespaces: cargo xtask ci"]
fn the_bench_measures_direct_on_both_engines_and_leaves_nothing() {
    let setup = setup();
    let (ws, remote) = (&setup.ws, &setup.remote);
    // The bench measures direct on both engines side by side, and takes its image away again.
    let bench = ws
        .xtask(&[
            "bench",
            "--offline",
            "--quick",
            "--only",
            "ours direct",
            "--remote",
            &remote.host,
        ])
        .ok();
    for row in ["| ours direct |", "| ours direct (remote engine) |"] {
        // | contender | cold | no change | 1-line edit | …: the edit was measured.
        let edit = bench
            .stdout
            .lines()
            .find(|l| l.starts_with(row))
            .and_then(|l| l.split('|').nth(4))
            .and_then(|c| c.trim().strip_suffix('s')?.parse::<f64>().ok());
        assert!(
            edit.is_some_and(|e| e > 0.0),
            "no measured edit in {row}: {}",
            bench.stdout
        );
    }
    let bench_filter = [
        "image",
        "ls",
        "-q",
        "--filter",
        "reference=go-docker-prod-bench",
    ];
    for (engine, left) in [
        (
            "remote",
            common::docker_at(Some(&remote.host), &bench_filter),
        ),
        ("local", common::docker(&bench_filter)),
    ] {
        assert!(
            left.trim().is_empty(),
            "the bench left its images on the {engine} engine: {left}"
        );
    }
}

#[test]
#[ignore = "needs root, a Docker engine and namespaces: cargo xtask ci"]
fn each_engines_clean_removes_its_own_images_only() {
    let setup = setup();
    let (ws, remote) = (&setup.ws, &setup.remote);
    let (tag, local_direct) = (setup.tag.as_str(), setup.local_direct.as_str());
    let env = [("DOCKER_HOST", remote.host.as_str())];
    // Something of ours on the remote engine too.
    let args = ["image", "--offline", "--strategy", "direct", "--tag", tag];
    ws.xtask_env(&args, &env).ok();
    // The record keeps each engine apart (the local and the remote direct image share one ID):
    // the remote clean leaves the local image, whose record stays for the local clean.
    let clean = ws.xtask_env(&["clean"], &env).ok();
    assert!(clean.stdout.contains("images removed"), "{}", clean.stdout);
    assert!(
        clean
            .stderr
            .contains("the record of images built on other engines stays"),
        "{}",
        clean.stderr
    );
    let local_id = || {
        let out = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", tag])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(
        local_id().trim(),
        local_direct,
        "the remote clean touched the local image"
    );
    let left = remote.docker(&["image", "ls", "-q", "--filter", &common::project_label()]);
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "clean left images on the remote engine"
    );
    ws.xtask(&["clean"]).ok();
    assert!(
        local_id().trim().is_empty(),
        "the local clean left the local image"
    );
}

#[test]
#[ignore = "needs root, a Docker engine and namespaces: cargo xtask ci"]
fn docker_contexts_are_honoured_and_no_local_dockerd_is_started() {
    let _engine = common::engine();
    let ws = Workspace::copy();
    let tag = common::tag(&ws);
    ws.xtask(&["base-images"]).ok();
    let remote = RemoteEngine::start();
    remote.load(common::project::LOCAL_BUILDER_IMAGE);
    // A CLI configuration of the test's own: contexts live there, the user's stay untouched.
    let config = tempfile::tempdir().unwrap();
    let config_dir = config.path().to_str().unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_CONFIG", config_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&[
        "context",
        "create",
        "xtask-remote",
        "--docker",
        &format!("host={}", remote.host),
    ]);
    let local_has = |t: &str| {
        Command::new("docker")
            .args(["image", "inspect", t])
            .output()
            .unwrap()
            .status
            .success()
    };
    let remote_has = |t: &str| remote.docker(&["image", "inspect", t]).status.success();

    // DOCKER_CONTEXT names it.
    let env = [
        ("DOCKER_CONFIG", config_dir),
        ("DOCKER_CONTEXT", "xtask-remote"),
    ];
    ws.xtask_env(
        &["image", "--offline", "--strategy", "direct", "--tag", &tag],
        &env,
    )
    .ok();
    assert!(
        remote_has(&tag) && !local_has(&tag),
        "DOCKER_CONTEXT was not honoured"
    );
    ws.xtask_env(&["clean"], &env).ok();
    // `docker context use` makes it the current one.
    cli(&["context", "use", "xtask-remote"]);
    let env = [("DOCKER_CONFIG", config_dir)];
    ws.xtask_env(&["image", "--offline", "--tag", &tag], &env)
        .ok();
    assert!(
        remote_has(&tag) && !local_has(&tag),
        "the current context was not honoured"
    );
    ws.xtask_env(&["clean"], &env).ok();

    // The context's engine gone: a clear error naming it, and no local dockerd started.
    let dockerds = || {
        String::from_utf8_lossy(
            &Command::new("pgrep")
                .args(["-c", "-x", "dockerd"])
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .to_string()
    };
    let host = remote.host.clone();
    drop(remote);
    let before = dockerds();
    let run = ws
        .xtask_env(&["image", "--offline", "--tag", &tag], &env)
        .failed();
    assert!(
        run.stderr
            .contains(&format!("cannot reach the Docker engine at {host}")),
        "{}",
        run.stderr
    );
    assert_eq!(
        dockerds(),
        before,
        "a dockerd was started although the CLI points elsewhere"
    );
    ws.xtask(&["clean"]).ok();
}
