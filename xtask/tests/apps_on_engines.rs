//! The fixture apps of `xtask/tests/apps/` on the other engines users run, each started here in
//! namespaces of its own: Docker 26 with the containerd image store, and Podman's Docker API
//! (`apps.rs` tries every fixture on the host's classic store). Beside `engines.rs`, which runs in
//! CI's second lane: this file runs in the first.

mod common;

use std::fs;

use common::{project, Kind, RemoteEngine, Workspace};

/// The fixture apps of `xtask/tests/apps/` on `kind`, as apps.rs tries them on the host's engine:
/// the tutorial-shaped app (fixed port, no health route, no signal handler) and the one that needs
/// `$PORT`, reads its templates and has our HTTP health check. For each: `dist`, `image --smoke`
/// (the default and `direct`), `verify`, `dev` (an edit swapped in), `clean`; nothing of ours left.
fn fixture_apps_on(kind: Kind) {
    let _engines = common::private_engines();
    let engine = RemoteEngine::start_kind(kind);
    let apps = [
        (
            "tutorial",
            "SIGTERM → exit 143",
            ("src/main.go", "Welcome!", "Welcome back!"),
        ),
        (
            "needs-port",
            "`/healthcheck http://127.0.0.1:8080/static/site.css PORT` passed",
            ("templates/hello.html", "Hello", "Hi"),
        ),
    ];
    for (i, (fixture, said, (file, from, to))) in apps.into_iter().enumerate() {
        let ws = Workspace::copy();
        common::put_app(&ws, fixture);
        if i == 0 {
            let _host = common::host_engine();
            ws.xtask(&["base-images"]).ok();
            engine.load(project::LOCAL_BUILDER_IMAGE);
        }
        let tag = common::tag(&ws);
        engine.xtask(&ws, &["dist"]).ok();
        for strategy in ["multistage", "direct"] {
            let run = engine
                .xtask(
                    &ws,
                    &["image", "--strategy", strategy, "--smoke", "--tag", &tag],
                )
                .ok();
            let smoke = run.stdout.lines().find(|l| l.starts_with("smoke: "));
            assert!(
                smoke.is_some_and(|l| l.contains(said)),
                "{kind:?} {fixture} {strategy}: `{said}` not said:\n{}",
                run.stdout
            );
        }
        let run = engine.xtask(&ws, &["verify", &tag]).ok();
        assert!(run.stdout.contains("verified:"), "{}", run.stdout);

        let env = [("DOCKER_HOST", engine.host.as_str())];
        let (child, rx) = common::spawn(
            &ws,
            &["dev", "--offline", "--port", "0", "--tag", &tag],
            &env,
        );
        common::wait_for(&rx, "Ctrl-C stops");
        let before = engine.image_id(&tag);
        let path = ws.path("go-app").join(file);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        fs::write(&path, text.replace(from, to)).unwrap();
        common::wait_for(&rx, "the new code answers");
        common::ctrl_c(&child);
        let mut child = child;
        let status = child.wait().unwrap();
        let rest = common::rest(rx);
        assert_eq!(status.code(), Some(0), "{kind:?} {fixture}: dev:\n{rest}");
        assert_ne!(
            engine.image_id(&tag),
            before,
            "{kind:?} {fixture}: not tagged"
        );
        let temp = common::temp_label();
        let left = common::docker_at(Some(&engine.host), &["ps", "-a", "-q", "--filter", &temp]);
        assert_eq!(left, "", "{kind:?} {fixture}: dev left containers");

        engine.xtask(&ws, &["clean"]).ok();
        assert_eq!(
            engine.image_id(&tag),
            None,
            "{kind:?} {fixture}: clean left it"
        );
        let label = format!("label={}={}", project::LABEL_PROJECT, project::TOOL);
        let ours = common::docker_at(
            Some(&engine.host),
            &["image", "ls", "-a", "-q", "--filter", &label],
        );
        assert_eq!(ours, "", "{kind:?} {fixture}: clean left images of ours");
    }
}

#[test]
#[ignore = "needs root, trixie's Docker (cargo xtask ci unpacks it) and namespaces: cargo xtask ci"]
fn on_docker_with_the_containerd_store() {
    fixture_apps_on(Kind::Containerd);
}

#[test]
#[ignore = "needs root, Podman and namespaces: cargo xtask ci"]
fn on_podman() {
    fixture_apps_on(Kind::Podman);
}
