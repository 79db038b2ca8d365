//! Failure modes: a missing tool or engine, a compile error, Ctrl-C, two xtasks at once, stale
//! builds, and the hardening of the image we ship. Real engine, real tools; a missing tool is
//! hidden from PATH, never faked.

mod common;

use std::{
    fs,
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{
    binary_sha_in, checkout_label, dangling, docker, lines, our_containers, project_label, sha256,
    DockerWorkspace, Workspace,
};

#[test]
fn missing_docker_is_named_and_nothing_is_deleted() {
    let ws = Workspace::copy();
    ws.xtask(&["dist", "--offline"]).ok();
    let before = fs::read(ws.path("dist/main")).unwrap();
    let path = ws.path_without(&["docker"]);
    for args in [&["image", "--no-setup"][..], &["clean", "--no-setup"]] {
        let run = ws.xtask_env(args, &[("PATH", &path)]);
        if args[0] == "image" {
            let run = run.failed();
            assert!(
                run.stderr.contains("`docker` not found on PATH")
                    && run.stderr.contains("apt-get install docker.io"),
                "{}",
                run.stderr
            );
            assert_eq!(
                fs::read(ws.path("dist/main")).unwrap(),
                before,
                "dist/ changed"
            );
        } else {
            // clean without docker still cleans files, and says it could not check images.
            let run = run.ok();
            assert!(
                run.stderr.contains("no Docker engine answers"),
                "{}",
                run.stderr
            );
        }
    }
}

#[test]
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
    for strategy in ["multistage", "handoff"] {
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
    assert!(our_containers(&ws).is_empty());
}

/// Starts the xtask in its own process group and returns it with a channel of its output lines
/// (stdout and stderr: docker's build steps go to stdout).
fn spawn(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> (Child, mpsc::Receiver<String>) {
    use std::os::unix::process::CommandExt;
    let mut cmd = ws.command(args);
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
    let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
    for stream in [stdout, stderr] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

/// Waits for an output line containing `marker`; returns what was read.
fn wait_for(rx: &mpsc::Receiver<String>, marker: &str) -> String {
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(marker) {
                    return seen;
                }
            }
            Err(_) => panic!("`{marker}` never came; read:\n{seen}"),
        }
    }
}

/// Ctrl-C as a terminal sends it: SIGINT to the whole process group.
fn ctrl_c(child: &Child) {
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
}

fn rest(rx: mpsc::Receiver<String>) -> String {
    rx.iter().collect::<Vec<_>>().join("\n")
}

#[test]
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
    let names: Vec<_> = fs::read_dir(ws.path("dist"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "partial files in dist/: {names:?}");
    let scratch = ws.path("target/xtask-tmp");
    let left: Vec<_> = fs::read_dir(&scratch)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
}

#[test]
fn ctrl_c_during_image_stops_and_removes_our_containers() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    // During a cold build, then during the smoke test (a container of ours is running).
    for (args, marker) in [
        (
            vec![
                "image",
                "--offline",
                "--no-cache",
                "--builder",
                "legacy",
                "--tag",
                &tag,
            ],
            "RUN go build ./vendor",
        ),
        (
            vec!["image", "--offline", "--tag", &tag, "--smoke"],
            "==> smoke test",
        ),
    ] {
        let (mut child, rx) = spawn(&ws, &args, &[]);
        wait_for(&rx, marker);
        ctrl_c(&child);
        let status = child.wait().unwrap();
        let log = rest(rx);
        assert_eq!(status.code(), Some(130), "{args:?}:\n{log}");
        assert!(
            our_containers(&ws).is_empty(),
            "{args:?}: containers of ours left:\n{log}"
        );
        let leftovers = lines(&docker(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            "status=created",
            "--filter",
            "status=exited",
        ]));
        let ours_by_name: Vec<_> = leftovers
            .iter()
            .filter(|id| {
                docker(&["inspect", "--format", "{{.Name}}", id]).contains("go-docker-prod-")
            })
            .collect();
        assert!(
            ours_by_name.is_empty(),
            "temporary containers left: {ours_by_name:?}"
        );
    }
    // What the stopped legacy build left (a chain of untagged layers) is ours: clean removes it.
    ws.xtask(&["clean"]).ok();
    let left = dangling(None, &project_label());
    assert!(
        left.is_empty(),
        "dangling images of ours after clean: {left:?}"
    );
}

#[test]
fn two_xtasks_at_once_take_turns() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    ws.xtask(&["image", "--offline", "--tag", &tag]).ok(); // warm: vendor/, base image
    let args = ["image", "--offline", "--strategy", "handoff", "--tag", &tag];
    let (mut a, rx_a) = spawn(&ws, &args, &[]);
    let (mut b, rx_b) = spawn(&ws, &args, &[]);
    let (status_a, status_b) = (a.wait().unwrap(), b.wait().unwrap());
    let (log_a, log_b) = (rest(rx_a), rest(rx_b));
    assert!(
        status_a.success() && status_b.success(),
        "A:\n{log_a}\nB:\n{log_b}"
    );
    assert!(
        format!("{log_a}{log_b}").contains("waiting for"),
        "neither waited for the other:\nA:\n{log_a}\nB:\n{log_b}"
    );
    // dist/ is one build's, whole: its checksums match its files.
    let sums = fs::read_to_string(ws.path("dist/SHA256SUMS")).unwrap();
    assert_eq!(sums, format!("{}  main\n", sha256(&ws.path("dist/main"))));
}

#[test]
fn shipped_image_is_hardened() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    ws.xtask(&["image", "--offline", "--tag", &tag]).ok();
    // No shell to exec into.
    let id = docker(&["create", "--read-only", "--cap-drop", "ALL", &tag]);
    let sh = std::process::Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "/bin/sh", &tag, "-c", "true"])
        .output()
        .unwrap();
    assert!(!sh.status.success(), "the image has a shell");
    // Read-only, no capabilities, and `docker stop` with a 1 s grace: exit 0 means it stopped by
    // itself on SIGTERM within that second (else the engine kills it: 137).
    docker(&["start", &id]);
    let logs_ready = (0..200).any(|_| {
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
    assert!(logs_ready, "the server did not start");
    docker(&["stop", "-t", "1", &id]);
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.ExitCode}}", &id]),
        "0"
    );
    docker(&["rm", &id]);
    // No host path or secret in the history or the labels.
    let history = docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]);
    let labels = common::labels_json(&tag);
    for text in [&history, &labels] {
        for leak in [ws.root.to_str().unwrap(), "/tmp/", "/work/", "/root"] {
            assert!(!text.contains(leak), "`{leak}` in:\n{text}");
        }
    }
}

#[test]
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
            binary_sha_in(&tag, "/main", &ws),
            dist_sha,
            "{version}: image and dist differ"
        );
        let labels = common::labels_json(&tag);
        assert!(
            labels.contains(&format!(
                "\"org.opencontainers.image.version\":\"{version}\""
            )),
            "{labels}"
        );
        shas.push(dist_sha);
    }
    assert_ne!(shas[0], shas[1], "the new version reused the old binary");
    assert!(
        dangling(None, &checkout_label(&ws)).is_empty(),
        "dangling images left"
    );
}
