//! Nothing of the user's lost, every failure honest, as a user or a fault would meet it on the
//! host's engine: a damaged record is moved aside and still cleaned by; a huge record is cleaned
//! by one listing and stops on SIGTERM; SIGKILL at three points leaves nothing `clean` cannot
//! find; a stuck engine is reported; a server that exits at start is named with its code and log;
//! `dist` that is a file of the user's is refused; vendor/ is checked by its content; any git tag
//! gives a version.

mod common;

use std::{
    fs,
    time::{Duration, Instant},
};

use common::{
    dangling, docker, project, rest, signal_alone, spawn, wait_for, DockerWorkspace, RemoteEngine,
    Workspace,
};

fn record(ws: &Workspace) -> String {
    fs::read_to_string(ws.path("target/xtask/record.json")).unwrap_or_default()
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn a_damaged_record_is_moved_aside_and_its_images_still_cleaned() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    let direct = |version: &str| {
        ws.xtask(&[
            "image",
            "--offline",
            "--strategy",
            "direct",
            "--tag",
            &tag,
            "--app-version",
            version,
        ])
    };
    let first = direct("v1").ok().image_id();
    // Cut short, as a full disk or a crash could leave it.
    let text = record(&ws);
    fs::write(ws.path("target/xtask/record.json"), &text[..text.len() - 5]).unwrap();
    let run = direct("v2").ok();
    let aside = ws.path("target/xtask/record.json.damaged-1");
    assert!(
        run.stderr.contains("record.json.damaged-1"),
        "{}",
        run.stderr
    );
    assert!(aside.is_file());
    // The new record does not own the first image: it stays, dangling, until clean.
    assert!(dangling(None).iter().any(|d| first.contains(d.as_str())));
    let second = dangling_full_id(&tag);
    // An empty record is damaged too. (What it named is lost with its text: the second image
    // cannot be proven ours any more, and stays.)
    fs::write(ws.path("target/xtask/record.json"), "").unwrap();
    let third = direct("v3").ok().image_id();
    assert!(ws.path("target/xtask/record.json.damaged-2").is_file());
    // Bytes that are not UTF-8 around what it said: damaged too, and what it names still goes.
    let bytes = [&b"\xff\xfe"[..], record(&ws).as_bytes(), b"\x80"].concat();
    fs::write(ws.path("target/xtask/record.json"), bytes).unwrap();
    let run = direct("v4").ok();
    assert!(
        run.stderr.contains("record.json.damaged-3"),
        "{}",
        run.stderr
    );
    ws.xtask(&["clean"]).ok();
    let left = dangling(None);
    assert!(
        !left.iter().any(|d| first.contains(d.as_str())),
        "clean forgot what the damaged record named"
    );
    assert!(
        !left.iter().any(|d| third.contains(d.as_str())),
        "clean forgot what the record of bytes that are not UTF-8 named"
    );
    assert!(
        left.iter().any(|d| second.contains(d.as_str())),
        "an image not provably ours went"
    );
    docker(&["image", "rm", &second]);
    assert!(common::docker_at(None, &["image", "ls", "-q", &tag]).is_empty());
}

/// The ID the tag names now.
fn dangling_full_id(tag: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", tag])
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn a_huge_record_is_cleaned_by_one_listing_and_stops_on_sigterm() {
    let ws = DockerWorkspace::new();
    ws.xtask(&["dist", "--offline"]).ok();
    // 200,000 images that are not in the engine, under this engine's key.
    let fake = |n: usize| format!("\"sha256:{n:064x}\": [\"fake:{n}\"]");
    let images: Vec<String> = (0..200_000).map(fake).collect();
    let ctx = xtask::infra::ctx::Ctx::new(
        Default::default(),
        xtask::project::Paths::discover().unwrap(),
    )
    .unwrap();
    let key = xtask::infra::docker::engine_key(&ctx);
    fs::create_dir_all(ws.path("target/xtask")).unwrap();
    fs::write(
        ws.path("target/xtask/record.json"),
        format!(
            "{{\"checkout\": \"c0ffee\", \"engines\": {{\"{key}\": {{\"images\": {{{}}}}}}}}}",
            images.join(", ")
        ),
    )
    .unwrap();
    // SIGTERM as soon as it runs: it stops, with 143, and the record is still whole.
    let (child, rx) = spawn(&ws, &["clean"], &[]);
    std::thread::sleep(Duration::from_millis(300));
    signal_alone(&child, libc::SIGTERM);
    let status = child.wait_with_output().unwrap().status;
    let log = rest(rx);
    assert!(matches!(status.code(), Some(143) | Some(0)), "{log}");
    if status.code() == Some(143) {
        let text = record(&ws);
        assert!(
            jzon::parse(&text).is_ok(),
            "the record is not whole after SIGTERM"
        );
    }
    // Then whole: none of them was in the engine, so none counts as removed.
    let run = ws.xtask(&["clean"]).ok();
    assert!(run.stdout.contains(" 0 images removed"), "{}", run.stdout);
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn sigkill_at_three_points_leaves_nothing_clean_cannot_find() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    // What other runs left is not this test's to judge.
    let before = dangling(None);
    ws.xtask(&["base-images"]).ok();
    let go_cache = ws.base.join("go-cache");
    let cold_go = [("GOCACHE", go_cache.to_str().unwrap())];
    // 1. During a cold `go build`: the orphaned go writes into a scratch directory of ours.
    let (child, rx) = spawn(
        &ws,
        &["image", "--offline", "--strategy", "direct", "--tag", &tag],
        &cold_go,
    );
    wait_for(&rx, "==> go build");
    std::thread::sleep(Duration::from_secs(1));
    signal_alone(&child, libc::SIGKILL);
    // 2. During a Dockerfile build: the orphaned build finishes on its own.
    let (child, rx) = spawn(&ws, &common::cold_legacy_build(&tag), &[]);
    wait_for(&rx, "go build $PREBUILD");
    signal_alone(&child, libc::SIGKILL);
    // 3. During the direct load.
    let (child, rx) = spawn(
        &ws,
        &[
            "image",
            "--offline",
            "--strategy",
            "direct",
            "--tag",
            &tag,
            "--app-version",
            "k3",
        ],
        &[],
    );
    wait_for(&rx, "$ docker load");
    signal_alone(&child, libc::SIGKILL);
    drop(rx);
    let record_log = record(&ws);
    // The orphans (go, the docker CLIs) finish on their own.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !orphans_in(&ws).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        orphans_in(&ws).is_empty(),
        "still running: {:?}",
        orphans_in(&ws)
    );
    let run = ws.xtask(&["clean"]).ok();
    let left: std::collections::BTreeSet<String> =
        dangling(None).difference(&before).cloned().collect();
    let mut args = vec![
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Created}} {{.Config.Labels}}",
    ];
    args.extend(left.iter().map(String::as_str));
    assert!(
        left.is_empty(),
        "dangling images of ours after clean:\n{}\n{}\nthe record before:\n{record_log}",
        run.stdout,
        docker(&args)
    );
    let left: Vec<String> = fs::read_dir(&ws.root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".dist."))
        .collect();
    assert!(left.is_empty(), "scratch left in the checkout: {left:?}");
    assert!(common::docker_at(None, &["image", "ls", "-q", &tag]).is_empty());
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn a_killed_builds_window_ends_and_images_not_its_own_stay() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    // What other runs left is not this test's to judge.
    let before = common::dangling(None);
    ws.xtask(&["base-images"]).ok();
    let project_label = format!("{}={}", project::LABEL_PROJECT, project::TOOL);
    let dangling = || common::all_dangling(None);
    let from = format!("FROM {}\n", project::LOCAL_BUILDER_IMAGE);
    // A Dockerfile build killed with SIGKILL (its `docker build` dies with it).
    let (child, rx) = spawn(&ws, &common::cold_legacy_build(&tag), &[]);
    wait_for(&rx, "go build $PREBUILD");
    // While it runs: another checkout's build leaves an image with its own build id. (A layer of
    // this run's: BuildKit gives an image with no new layer its base's time, a cached one the
    // time of its first build.)
    let foreign = format!("{}=0123abcd-ef0123", project::LABEL_BUILD);
    let others = common::build_text(
        None,
        true,
        &format!("{from}RUN echo {tag} other >/mine\nLABEL mine=other-checkout\n"),
        None,
        &["--label", &project_label, "--label", &foreign],
    );
    // Removed however the test ends: left, they would be every later test's dangling images.
    let mut made = common::RemovedOnDrop(vec![others.clone()]);
    signal_alone(&child, libc::SIGKILL);
    drop(rx);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !orphans_in(&ws).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    // Once the killed build's window is over (its last beat and the slack): the user's image,
    // dangling, with our project label.
    let slack = xtask::pipeline::record::HEARTBEAT_SLACK_MS;
    std::thread::sleep(Duration::from_millis(slack + 1_000));
    let users = common::build_text(
        None,
        true,
        &format!("{from}RUN echo {tag} later >/mine\nLABEL mine=later\n"),
        None,
        &["--label", &project_label],
    );
    made.0.push(users.clone());
    let theirs = [&users, &others];
    for id in theirs {
        assert!(dangling().contains(id), "the setup: {id} dangling");
    }
    // The next build sweeps what the killed one left, and nothing else.
    ws.xtask(&["image", "--offline", "--strategy", "direct", "--tag", &tag])
        .ok();
    for id in theirs {
        assert!(
            dangling().contains(id),
            "{id} was removed:\n{}",
            record(&ws)
        );
    }
    ws.xtask(&["clean"]).ok();
    let left = dangling();
    for id in theirs {
        assert!(left.contains(id), "clean removed {id}");
    }
    drop(made);
    let left: Vec<String> = common::dangling(None)
        .difference(&before)
        .cloned()
        .collect();
    assert!(left.is_empty(), "the killed build left {left:?}");
}

/// Processes whose command line names the workspace (what a killed xtask left running).
fn orphans_in(ws: &Workspace) -> Vec<String> {
    let root = ws.root.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&root) {
            found.push(cmdline);
        }
    }
    found
}

#[test]
#[ignore = "needs root, a Docker engine and namespaces: cargo xtask ci"]
fn a_stuck_engine_is_reported_and_ctrl_c_still_stops() {
    let _engine = common::engine();
    let ws = Workspace::copy();
    ws.xtask(&["base-images"]).ok();
    let remote = RemoteEngine::start();
    remote.load(project::LOCAL_BUILDER_IMAGE);
    let env = [("DOCKER_HOST", remote.host.as_str())];
    let (child, rx) = spawn(
        &ws,
        &[
            "image",
            "--offline",
            "--strategy",
            "direct",
            "--app-version",
            "s1",
        ],
        &env,
    );
    wait_for(&rx, "==> image (direct");
    let stopped = Stopped::engine(remote.pid());
    let seen = wait_for(&rx, "still waiting for");
    assert!(seen.contains("Ctrl-C stops it"), "{seen}");
    signal_alone(&child, libc::SIGINT);
    let status = child.wait_with_output().unwrap().status;
    drop(stopped);
    assert_eq!(status.code(), Some(130), "{}", rest(rx));
}

#[test]
#[ignore = "needs root, a Docker engine and namespaces: cargo xtask ci"]
fn an_engine_stuck_before_the_build_is_reported_once() {
    let ws = Workspace::copy();
    let remote = RemoteEngine::start();
    let stopped = Stopped::engine(remote.pid());
    let run = ws
        .xtask_env(
            &["image", "--offline", "--strategy", "direct"],
            &[("DOCKER_HOST", remote.host.as_str())],
        )
        .failed();
    drop(stopped);
    // Asked through its API, which does not answer: said once, with what to check.
    assert!(
        run.stderr
            .contains("`docker version` (engine API): no answer within 4 s"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("cannot reach the Docker engine"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("no answer within").count(),
        1,
        "{}",
        run.stderr
    );
}

/// An engine stopped with SIGSTOP, continued however the test ends (else it could not stop).
struct Stopped(i32);

impl Stopped {
    fn engine(pid: u32) -> Stopped {
        // SAFETY: kill(2) on the test engine's process.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        Stopped(pid as i32)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the test engine's process.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn a_server_that_exits_at_start_is_named_with_its_code_and_log() {
    let ws = DockerWorkspace::new();
    let tag = ws.tag.clone();
    let good = ws
        .xtask(&["image", "--offline", "--strategy", "direct", "--tag", &tag])
        .ok()
        .image_id();
    let main_go = ws.path("go-app/main.go");
    let source = fs::read_to_string(&main_go).unwrap();
    let exits = source.replacen(
        "func main() {",
        "func main() {\n\tfmt.Fprintln(os.Stderr, \"refusing to start\")\n\tos.Exit(3)",
        1,
    );
    fs::write(&main_go, exits).unwrap();
    let run = ws
        .xtask(&[
            "image",
            "--offline",
            "--strategy",
            "direct",
            "--tag",
            &tag,
            "--smoke",
        ])
        .failed();
    assert!(
        run.stderr.contains("the server exited with code 3"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("refusing to start"),
        "the log: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("{tag} still names {good}")),
        "{}",
        run.stderr
    );
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Id}}", &tag]),
        good
    );
}

#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn dist_that_is_a_file_is_refused_before_any_work() {
    let ws = Workspace::copy();
    fs::write(ws.path("dist"), "my notes\n").unwrap();
    for args in [&["dist", "--offline"][..], &["clean"]] {
        let run = ws.xtask(args).failed();
        assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);
        assert!(run.stderr.contains("mv dist"), "{}", run.stderr);
    }
    assert_eq!(fs::read_to_string(ws.path("dist")).unwrap(), "my notes\n");
    assert!(!ws.path("target").exists(), "work was done");
}

#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn vendor_is_checked_by_its_content() {
    let ws = Workspace::copy();
    ws.xtask(&["dist", "--offline"]).ok();
    let router = ws.path("go-app/vendor/github.com/julienschmidt/httprouter/router.go");
    let bytes = fs::read(&router).unwrap();
    fs::remove_file(&router).unwrap();
    ws.xtask(&["dist", "--offline"]).ok();
    assert_eq!(
        fs::read(&router).unwrap(),
        bytes,
        "go-app/vendor/ was not restored"
    );
    // The GOPATH copy glide made, likewise.
    let made = ws.path(
        "target/gopath/src/go-docker-prod/vendor/github.com/julienschmidt/httprouter/router.go",
    );
    fs::write(&made, "package httprouter\n").unwrap();
    let run = ws.xtask(&["dist", "--offline"]).ok();
    assert!(run.stderr.contains("glide install"), "{}", run.stderr);
    assert_eq!(fs::read(&router).unwrap(), bytes);
}

#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn any_git_tag_gives_a_version_and_a_warning() {
    let ws = Workspace::copy();
    ws.git(&["tag", "release/1.2.0"]);
    let run = ws.xtask(&["dist", "--offline"]).ok();
    assert!(run.stderr.contains("release-1.2.0"), "{}", run.stderr);
    assert!(run.stderr.contains("warning:"), "{}", run.stderr);
    let binary = fs::read(ws.path("dist/main")).unwrap();
    let needle = b"release-1.2.0";
    assert!(
        binary.windows(needle.len()).any(|w| w == needle),
        "the version is not in the binary"
    );
}
