//! Failure modes: a missing tool or engine, a compile error, signals (Ctrl-C to the process group;
//! SIGTERM and SIGHUP to the xtask alone), two xtasks at once, stale builds, and the hardening of
//! the image we ship. Real engine, real tools; a missing tool is hidden, never faked.

mod common;

use std::{
    fs,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use common::{
    ctrl_c, dangling, docker, file_sha_in, json, label, project, rest, sha256, signal_alone, spawn,
    temp_containers, wait_for, DockerWorkspace, Workspace,
};

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn missing_docker_is_named_and_nothing_is_deleted() {
    let ws = Workspace::copy();
    ws.xtask(&["dist", "--offline"]).ok();
    let before = fs::read(ws.path("dist/main")).unwrap();
    let path = ws.path_without(&["docker"]);
    let run = ws
        .xtask_env(&["image", "--no-setup"], &[("PATH", &path)])
        .failed();
    assert!(
        run.stderr.contains("`docker` not found on PATH")
            && run.stderr.contains("cargo xtask setup"),
        "{}",
        run.stderr
    );
    assert_eq!(
        fs::read(ws.path("dist/main")).unwrap(),
        before,
        "dist/ changed"
    );
    // clean without docker still cleans files, says it could not check images, keeps the record.
    let run = ws
        .xtask_env(&["clean", "--no-setup"], &[("PATH", &path)])
        .ok();
    assert!(
        run.stderr.contains("no Docker engine answers"),
        "{}",
        run.stderr
    );
    assert!(!ws.path("dist").exists());
}

#[test]
#[ignore = "needs a Docker client: cargo xtask ci"]
fn engine_down_is_a_clear_error_without_a_hang() {
    let ws = Workspace::copy();
    let closed_port = common::free_port(); // nothing listens there once the listener is dropped
    for host in [
        format!("tcp://127.0.0.1:{closed_port}"),
        "unix:///nonexistent/docker.sock".to_string(),
    ] {
        let started = Instant::now();
        let run = ws
            .xtask_env(&["image", "--offline"], &[("DOCKER_HOST", &host)])
            .failed();
        let took = started.elapsed();
        assert!(
            run.stderr
                .contains(&format!("cannot reach the Docker engine at {host}")),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("DOCKER_HOST"),
            "no hint: {}",
            run.stderr
        );
        // Not a speed goal: the xtask gives the engine 4 s; anything far past that is a hang.
        assert!(took < Duration::from_secs(30), "hung for {took:?}");
    }
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn compile_error_keeps_the_previous_image_and_dist() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    ws.xtask(&["image", "--offline", "--strategy", "handoff", "--tag", &tag])
        .ok();
    let image_before = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    let dist_before = fs::read(ws.path("dist/main")).unwrap();
    let main_go = ws.path("go-app/main.go");
    fs::write(
        &main_go,
        fs::read_to_string(&main_go)
            .unwrap()
            .replace("func healthz(", "func healthz(oops, "),
    )
    .unwrap();
    for strategy in ["multistage", "handoff", "direct"] {
        let run = ws
            .xtask(&["image", "--offline", "--strategy", strategy, "--tag", &tag])
            .failed();
        assert!(
            run.all().contains("main.go"),
            "{strategy}: the compiler's error is not shown:\n{}",
            run.all()
        );
        assert_eq!(
            docker(&["image", "inspect", "--format", "{{.Id}}", &tag]),
            image_before,
            "{strategy}: the tag moved"
        );
        assert_eq!(
            fs::read(ws.path("dist/main")).unwrap(),
            dist_before,
            "{strategy}: dist/ changed"
        );
    }
    assert!(temp_containers(None).is_empty());
}

/// Nothing half-written: no scratch directory or temporary file beside dist/ or in target/xtask.
fn assert_no_scratch(ws: &Workspace) {
    let mut left = Vec::new();
    for dir in [ws.root.clone(), ws.path("target/xtask")] {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".dist.tmp")
                || name.starts_with(".tmp")
                || name.starts_with(".oci.tmp")
                || name.contains(".old-")
            {
                left.push(name);
            }
        }
    }
    assert!(left.is_empty(), "scratch left behind: {left:?}");
}

#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn ctrl_c_during_dist_leaves_no_partial_file() {
    let ws = Workspace::copy();
    ws.xtask(&["dist", "--offline"]).ok();
    let before = fs::read(ws.path("dist/main")).unwrap();
    // An empty Go build cache makes the build long enough to interrupt.
    let cache = ws.path("target/empty-gocache");
    let (mut child, rx) = spawn(
        &ws,
        &["dist", "--offline"],
        &[("GOCACHE", cache.to_str().unwrap())],
    );
    wait_for(&rx, "==> go build");
    ctrl_c(&child);
    let status = child.wait().unwrap();
    let log = rest(rx);
    assert_eq!(status.code(), Some(130), "{log}");
    assert_eq!(
        fs::read(ws.path("dist/main")).unwrap(),
        before,
        "dist/main changed"
    );
    assert_eq!(
        fs::read_dir(ws.path("dist")).unwrap().count(),
        2,
        "partial files in dist/"
    );
    assert_no_scratch(&ws);
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn signals_stop_the_build_and_leave_nothing_of_ours() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    ws.xtask(&["base-images"]).ok();
    // Ctrl-C during a cold build and during the smoke test (a container of ours is running);
    // SIGTERM and SIGHUP to the xtask alone during a cold build: the child must be stopped by us.
    let cold = common::cold_legacy_build(&tag);
    let smoke = ["image", "--offline", "--tag", tag.as_str(), "--smoke"];
    for (args, marker, signal, code) in [
        (&cold[..], "go build $PREBUILD", libc::SIGINT, 130),
        (&smoke[..], "==> smoke test", libc::SIGINT, 130),
        (&cold[..], "go build $PREBUILD", libc::SIGTERM, 143),
        (&cold[..], "go build $PREBUILD", libc::SIGHUP, 129),
    ] {
        let (mut child, rx) = spawn(&ws, args, &[]);
        wait_for(&rx, marker);
        if signal == libc::SIGINT {
            ctrl_c(&child);
        } else {
            signal_alone(&child, signal);
        }
        let started = Instant::now();
        let status = child.wait().unwrap();
        let log = rest(rx);
        assert_eq!(
            status.code(),
            Some(code),
            "{args:?} signal {signal}:\n{log}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "took {:?} to stop",
            started.elapsed()
        );
        assert!(log.contains("interrupted by"), "{log}");
        assert!(
            temp_containers(None).is_empty(),
            "{args:?}: temporary containers left:\n{log}"
        );
        assert_no_scratch(&ws);
    }
    // The engine winds a stopped legacy build down on its own (its step container goes, the step
    // is not committed): wait for that, then what the build left (a chain of untagged layers,
    // ours by the project label of its first step) goes with clean.
    let building = || {
        common::lines(&docker(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &common::project_label(),
        ]))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !building().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        building().is_empty(),
        "the engine still runs a build step a minute after the stop"
    );
    ws.xtask(&["clean"]).ok();
    assert!(
        dangling(None).is_empty(),
        "dangling images of ours after clean"
    );
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn ctrl_c_during_the_direct_load_leaves_no_partial_image() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    ws.xtask(&["image", "--offline", "--strategy", "direct", "--tag", &tag])
        .ok();
    let mut before = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    // A new version each time, so that a new image is assembled and loaded; stopped as the image
    // is assembled, and as it is loaded.
    for (round, stop_at) in ["==> image (direct", "$ docker load"].iter().enumerate() {
        let version = format!("x{round}");
        let (mut child, rx) = spawn(
            &ws,
            &[
                "image",
                "--offline",
                "--strategy",
                "direct",
                "--tag",
                &tag,
                "--app-version",
                &version,
            ],
            &[],
        );
        wait_for(&rx, stop_at);
        ctrl_c(&child);
        let status = child.wait().unwrap();
        let log = rest(rx);
        let after = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
        match status.code() {
            // Stopped: the tag names what it named.
            Some(130) => assert_eq!(
                after, before,
                "the tag moved although the build was stopped at {stop_at}:\n{log}"
            ),
            // The signal came after the load: the build finished, and the tag names its image.
            Some(0) => assert!(
                log.contains(&format!("image ID {after}")),
                "exit 0 at {stop_at}, but the tag does not name the new image:\n{log}"
            ),
            other => panic!("exit {other:?} at {stop_at}:\n{log}"),
        }
        before = after;
        // The layout is whole: the old one or the new one, never a mix.
        let index = fs::read(ws.path("target/xtask/oci/index.json")).unwrap();
        let parsed = json(&index);
        let digest = parsed["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        assert!(
            ws.path(&format!("target/xtask/oci/blobs/sha256/{digest}"))
                .is_file(),
            "index names a missing manifest"
        );
        assert_no_scratch(&ws);
        // An image the engine made of a stopped load is on record (the record noted it first).
        let record = fs::read_to_string(ws.path("target/xtask/record.json")).unwrap();
        for id in dangling(None) {
            assert!(
                record.contains(&id),
                "stopped at {stop_at}: {id} is not on record:\n{log}"
            );
        }
    }
    ws.xtask(&["clean"]).ok();
    assert!(
        dangling(None).is_empty(),
        "dangling images of ours after clean"
    );
}

/// Two xtasks on one checkout: the second waits for the first (here: for the test, which holds
/// the lock), says so, and then runs.
#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn a_second_xtask_waits_for_the_lock() {
    let ws = Workspace::copy();
    fs::create_dir_all(ws.path("target")).unwrap();
    let lock = fs::File::create(ws.path("target/xtask.lock")).unwrap();
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let (mut child, rx) = spawn(&ws, &["dist", "--offline"], &[]);
    wait_for(
        &rx,
        "another cargo xtask is building in this checkout: waiting",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "it did not wait");
    assert!(
        !ws.path("dist").exists(),
        "it built while the lock was held"
    );
    drop(lock);
    let status = child.wait().unwrap();
    let log = rest(rx);
    assert!(status.success(), "{log}");
    assert_eq!(
        fs::read_to_string(ws.path("dist/SHA256SUMS")).unwrap(),
        format!("{}  main\n", sha256(&ws.path("dist/main")))
    );
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn shipped_image_is_hardened() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    for strategy in ["multistage", "direct"] {
        ws.xtask(&["image", "--offline", "--strategy", strategy, "--tag", &tag])
            .ok();
        // No shell to exec into: the engine says the executable is missing.
        let sh = std::process::Command::new("docker")
            .args(["run", "--rm", "--entrypoint", "/bin/sh", &tag, "-c", "true"])
            .output()
            .unwrap();
        let why = String::from_utf8_lossy(&sh.stderr);
        assert!(
            !sh.status.success()
                && why.contains("/bin/sh")
                && why.contains("no such file or directory"),
            "{strategy}: {why}"
        );
        // Read-only, no capabilities, and `docker stop` with a 1 s grace: exit 0 means it stopped
        // by itself on SIGTERM within that second (else the engine kills it: 137).
        let id = docker(&["create", "--read-only", "--cap-drop", "ALL", &tag]);
        docker(&["start", &id]);
        let ready = (0..200).any(|_| {
            let out = std::process::Command::new("docker")
                .args(["logs", &id])
                .output()
                .unwrap();
            let ready = String::from_utf8_lossy(&out.stderr)
                .contains("Starting Server (with httprouter) on Port 8080");
            if !ready {
                std::thread::sleep(Duration::from_millis(50));
            }
            ready
        });
        assert!(ready, "{strategy}: the server did not start");
        docker(&["stop", "-t", "1", &id]);
        assert_eq!(
            docker(&["inspect", "--format", "{{.State.ExitCode}}", &id]),
            "0",
            "{strategy}"
        );
        docker(&["rm", &id]);
    }
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn changed_flags_rebuild_dist_and_image() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    let mut shas = Vec::new();
    for version in ["v1-old", "v2-new"] {
        ws.xtask(&["dist", "--offline", "--app-version", version])
            .ok();
        let dist_sha = sha256(&ws.path("dist/main"));
        ws.xtask(&[
            "image",
            "--offline",
            "--tag",
            &tag,
            "--app-version",
            version,
        ])
        .ok();
        assert_eq!(
            file_sha_in(None, &tag, "/main"),
            dist_sha,
            "{version}: image and dist differ"
        );
        assert_eq!(label(&tag, project::OCI_VERSION), version);
        shas.push(dist_sha);
    }
    assert_ne!(shas[0], shas[1], "the new version reused the old binary");
    assert!(dangling(None).is_empty(), "dangling images left");
}
