//! The engines users run, each started here in namespaces of its own: Docker 20.10 (classic image
//! store), Docker 26 with the containerd image store, and Podman's Docker API. On each, as a user
//! would meet it: `direct` twice and from a second checkout keeps its image, with the config digest
//! the classic store gives; `verify` passes and fails on a tampered copy; the default image,
//! handoff and `--smoke` work; a failed smoke test keeps the last good image; `dev` swaps in an
//! edit and leaves no container when stopped; no image of ours is left dangling; `clean` in each
//! checkout leaves nothing of ours and counts only what went; and nothing of the user's is
//! touched: their image under our tag, an image derived from ours, their container, their image
//! that carries our project label.

mod common;

use std::collections::BTreeSet;

use common::{lines, project, Kind, RemoteEngine, Run, Workspace};

fn xtask(ws: &Workspace, engine: &RemoteEngine, args: &[&str]) -> Run {
    engine.xtask(ws, args)
}

fn docker(engine: &RemoteEngine, args: &[&str]) -> String {
    common::docker_at(Some(&engine.host), args)
}

/// `docker build` of a Dockerfile given as text (no context), tagged `tag` (None: untagged, as a
/// rebuild leaves an image): the image's ID.
fn build_text(
    users: &mut BTreeSet<String>,
    engine: &RemoteEngine,
    dockerfile: &str,
    tag: Option<&str>,
    extra: &[&str],
) -> String {
    let before = all_images(engine);
    // Podman serves no BuildKit.
    let buildkit = engine.kind != Kind::Podman;
    let id = common::build_text(Some(&engine.host), buildkit, dockerfile, tag, extra);
    // Everything the build made is the user's (Podman keeps intermediate images too).
    users.extend(all_images(engine).difference(&before).cloned());
    id
}

/// Every image the user made is still there.
fn assert_intact(engine: &RemoteEngine, users: &BTreeSet<String>, after: &str) {
    let all = all_images(engine);
    let gone: Vec<&String> = users.iter().filter(|u| !all.contains(*u)).collect();
    assert!(
        gone.is_empty(),
        "{:?}: after {after}, the user's {gone:?} are gone",
        engine.kind
    );
}

fn image_id(engine: &RemoteEngine, reference: &str) -> Option<String> {
    engine.image_id(reference)
}

/// Every image ID on `engine`.
fn all_images(engine: &RemoteEngine) -> BTreeSet<String> {
    lines(&docker(engine, &["image", "ls", "-a", "-q", "--no-trunc"]))
}

fn dangling(engine: &RemoteEngine) -> BTreeSet<String> {
    common::all_dangling(Some(&engine.host))
}

/// A summary line's value: `config sha256:…` gives the config digest.
fn summary_word(run: &Run, key: &str) -> String {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `{key}` in:\n{}", run.stdout))
        .to_string()
}

/// How many images `clean` said it removed.
fn removed_count(run: &Run) -> usize {
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("clean:"))
        .unwrap_or_else(|| panic!("no clean summary:\n{}", run.stdout));
    let before = line.split(" images removed").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

fn the_user_flow(kind: Kind) {
    let _engines = common::private_engines();
    let a = Workspace::copy();
    let b = Workspace::clone_of(&a);
    let tag = common::tag(&a);
    let engine = RemoteEngine::start_kind(kind);
    let classic_config = {
        // The host's engine, for as long as it is used: the config digest the classic store
        // gives for this commit, and the base image, loaded from there.
        let _host = common::host_engine();
        a.xtask(&["base-images"]).ok();
        let host = a
            .xtask(&["image", "--offline", "--strategy", "direct", "--tag", &tag])
            .ok();
        a.xtask(&["clean"]).ok();
        engine.load(project::LOCAL_BUILDER_IMAGE);
        summary_word(&host, "config")
    };
    let base = image_id(&engine, project::LOCAL_BUILDER_IMAGE).unwrap();
    // The user's own things: an image under our tag, a container, an image that carries our
    // project label and that a rebuild left dangling.
    let label = format!("{}={}", project::LABEL_PROJECT, project::TOOL);
    let mut users = BTreeSet::new();
    let theirs_under_our_tag = build_text(
        &mut users,
        &engine,
        &format!(
            "FROM {}\nLABEL mine=under-your-tag\n",
            project::LOCAL_BUILDER_IMAGE
        ),
        Some(&tag),
        &[],
    );
    let from = format!(
        "FROM {}\nLABEL mine=labelled\n",
        project::LOCAL_BUILDER_IMAGE
    );
    let labelled = build_text(&mut users, &engine, &from, None, &["--label", &label]);
    assert!(dangling(&engine).contains(&labelled), "the setup");
    docker(&engine, &["create", "--name", "mine", &base, "true"]);

    // direct, twice, then from a second checkout: one image, kept.
    let first = xtask(
        &a,
        &engine,
        &["image", "--strategy", "direct", "--tag", &tag],
    )
    .ok();
    let id = first.image_id();
    assert_eq!(summary_word(&first, "config"), classic_config, "{kind:?}");
    assert_eq!(image_id(&engine, &tag).as_deref(), Some(id.as_str()));
    let again = xtask(
        &a,
        &engine,
        &["image", "--strategy", "direct", "--tag", &tag],
    )
    .ok();
    assert_eq!(again.image_id(), id);
    assert_eq!(
        image_id(&engine, &tag).as_deref(),
        Some(id.as_str()),
        "{kind:?}: a repeat lost it"
    );
    let other = xtask(
        &b,
        &engine,
        &["image", "--strategy", "direct", "--tag", &tag],
    )
    .ok();
    assert_eq!(other.image_id(), id);
    assert_eq!(
        image_id(&engine, &tag).as_deref(),
        Some(id.as_str()),
        "{kind:?}: the second checkout lost it"
    );
    // The ID printed is the one the engine knows.
    docker(&engine, &["image", "inspect", &id]);

    assert_intact(&engine, &users, "direct");
    // verify passes, and fails on a tampered copy.
    let run = xtask(&a, &engine, &["verify", &tag]).ok();
    assert!(run.stdout.contains("verified:"), "{}", run.stdout);
    let tampered = build_text(
        &mut users,
        &engine,
        &format!("FROM {tag}\nLABEL mine=tampered tampered=1\n"),
        Some("mine/tampered:1"),
        &[],
    );
    let run = xtask(&a, &engine, &["verify", "mine/tampered:1"]).failed();
    assert!(
        run.stderr.contains("is NOT what revision"),
        "{}",
        run.stderr
    );

    assert_intact(&engine, &users, "verify");
    // An image the user derived from ours, under a tag we then build: theirs stays.
    let derived = build_text(
        &mut users,
        &engine,
        &format!("FROM {tag}\nLABEL mine=derived\n"),
        Some("me/app:latest"),
        &[],
    );
    xtask(
        &a,
        &engine,
        &["image", "--strategy", "direct", "--tag", "me/app:latest"],
    )
    .ok();
    docker(&engine, &["image", "inspect", &derived]);

    assert_intact(&engine, &users, "direct over the derived image");
    // The default image (BuildKit, or what the engine serves), with its smoke test; handoff.
    let run = xtask(&a, &engine, &["image", "--tag", &tag, "--smoke"]).ok();
    assert!(run.stdout.contains("smoke: "), "{}", run.stdout);
    if kind == Kind::Podman {
        assert!(
            run.stderr.contains("serves no BuildKit builds"),
            "{}",
            run.stderr
        );
    }
    let good = run.image_id();
    // Handoff through the legacy builder: an image built on the steps it keeps.
    xtask(
        &a,
        &engine,
        &[
            "image",
            "--strategy",
            "handoff",
            "--builder",
            "legacy",
            "--tag",
            &tag,
        ],
    )
    .ok();
    let good_handoff = image_id(&engine, &tag).unwrap();
    assert_ne!(good_handoff, good);
    assert_intact(&engine, &users, "multistage and handoff");
    // A failed smoke test: the tag still names the last good image, and the message says so.
    let main_go = a.path("go-app/main.go");
    let source = std::fs::read_to_string(&main_go).unwrap();
    let broken = source.replacen("io.WriteString(w, \"ok\")", "w.WriteHeader(500)", 1);
    assert_ne!(broken, source);
    std::fs::write(&main_go, broken).unwrap();
    let run = xtask(
        &a,
        &engine,
        &["image", "--strategy", "direct", "--tag", &tag, "--smoke"],
    )
    .failed();
    assert!(
        run.stderr
            .contains(&format!("{tag} still names {good_handoff}")),
        "{}",
        run.stderr
    );
    assert_eq!(image_id(&engine, &tag), Some(good_handoff.clone()));

    // Edits built with direct, no smoke test: each time the tag moves, and the image of ours it
    // named goes, with the steps it was built on. First over the handoff image; then over a
    // direct image, which Docker's containerd store replaces within the load. What is left
    // dangling is the user's: their images whose tags moved to ours, their labelled one (Podman
    // counts an image that shares its top layer with another as its parent, never dangling).
    let theirs_dangling = BTreeSet::from([
        labelled.clone(),
        derived.clone(),
        theirs_under_our_tag.clone(),
    ]);
    let mut superseded = good_handoff;
    for greeting in ["Hey, %s!", "Hiya, %s!"] {
        // What it was built on (the listings hide such an image on every store).
        let parent = docker(
            &engine,
            &["image", "inspect", "--format", "{{.Parent}}", &superseded],
        );
        std::fs::write(&main_go, source.replacen("Hello, %s!", greeting, 1)).unwrap();
        let run = xtask(
            &a,
            &engine,
            &["image", "--strategy", "direct", "--tag", &tag],
        )
        .ok();
        let edited = run.image_id();
        assert_eq!(image_id(&engine, &tag).as_deref(), Some(edited.as_str()));
        assert_eq!(
            image_id(&engine, &superseded),
            None,
            "{kind:?}: {greeting}: the image the tag named stays\n{}",
            run.stderr
        );
        if !parent.is_empty() {
            assert_eq!(
                image_id(&engine, &parent),
                None,
                "{kind:?}: {greeting}: what the image the tag named was built on stays"
            );
        }
        assert_eq!(summary_word(&run, "dangling images of ours left:"), "0");
        let left = dangling(&engine);
        assert!(
            left.is_subset(&theirs_dangling),
            "{kind:?}: {greeting}: dangling images {left:?}, the user's {theirs_dangling:?}"
        );
        superseded = edited;
    }
    std::fs::write(&main_go, source.clone()).unwrap();

    // `dev` (the engine publishes elsewhere: health checks only): an edit swapped in, then
    // Ctrl-C: the app exits 0, no container of ours stays, the last image stays tagged.
    let env = [("DOCKER_HOST", engine.host.as_str())];
    let (child, rx) = common::spawn(
        &a,
        &["dev", "--offline", "--port", "0", "--tag", &tag],
        &env,
    );
    common::wait_for(&rx, "Ctrl-C stops");
    let before = image_id(&engine, &tag).unwrap();
    std::fs::write(&main_go, source.replacen("Hello, %s!", "Hi, %s!", 1)).unwrap();
    common::wait_for(&rx, "the new code answers");
    common::ctrl_c(&child);
    let mut child = child;
    let status = child.wait().unwrap();
    let said = common::rest(rx);
    assert_eq!(status.code(), Some(0), "{kind:?}: dev:\n{said}");
    assert!(!said.contains("expected 0"), "{kind:?}: dev:\n{said}");
    let left = docker(
        &engine,
        &["ps", "-a", "-q", "--filter", &common::temp_label()],
    );
    assert_eq!(left, "", "{kind:?}: dev left containers");
    assert_ne!(
        image_id(&engine, &tag),
        Some(before),
        "{kind:?}: the edit's image is not tagged"
    );
    std::fs::write(&main_go, source.clone()).unwrap();

    // Nothing of ours dangling.
    let left = dangling(&engine);
    assert!(
        left.is_subset(&theirs_dangling),
        "{kind:?}: dangling images {left:?}, the user's {theirs_dangling:?}"
    );
    assert!(left.contains(&labelled), "{kind:?}");
    let users = theirs_dangling;

    // clean, in each checkout: what went is what it counts; nothing of ours stays.
    // A container of the user's made from our image: an edit built with direct leaves that image
    // an image, says why, and counts it as ours and dangling.
    let used = image_id(&engine, &tag).unwrap();
    docker(&engine, &["create", "--name", "mine-on-ours", &used]);
    std::fs::write(&main_go, source.replacen("Hello, %s!", "Howdy, %s!", 1)).unwrap();
    let run = xtask(
        &a,
        &engine,
        &["image", "--strategy", "direct", "--tag", &tag],
    )
    .ok();
    std::fs::write(&main_go, source).unwrap();
    assert!(
        run.stderr.contains(&format!("{used}, stays")),
        "{kind:?}: {}",
        run.stderr
    );
    assert_eq!(summary_word(&run, "dangling images of ours left:"), "1");
    docker(&engine, &["image", "inspect", &used]);
    docker(&engine, &["rm", "mine-on-ours"]);

    for ws in [&b, &a] {
        let before = all_images(&engine);
        let run = xtask(ws, &engine, &["clean"]).ok();
        let after = all_images(&engine);
        assert_intact(&engine, &users, "clean");
        assert_eq!(
            removed_count(&run),
            before.difference(&after).count(),
            "{}",
            run.stdout
        );
    }
    let ours = lines(&docker(
        &engine,
        &[
            "image",
            "ls",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label={label}"),
        ],
    ));
    // What carries our label now is the user's: inherited, or set by them.
    let describe = || {
        let all: Vec<String> = all_images(&engine).into_iter().collect();
        let mut args = vec![
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.RepoTags}} {{.Config.Labels}}",
        ];
        args.extend(all.iter().map(String::as_str));
        String::from_utf8_lossy(&engine.docker(&args).stdout).into_owned()
    };
    // Every image the user made carries their `mine` label (on Podman, its intermediate ones too).
    let marked = lines(&docker(
        &engine,
        &[
            "image",
            "ls",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            "label=mine",
        ],
    ));
    let not_theirs: Vec<&String> = ours.difference(&marked).collect();
    assert!(
        not_theirs.is_empty(),
        "{kind:?}: images of ours left: {not_theirs:?}\n{}",
        describe()
    );
    assert!(image_id(&engine, &tag).is_none(), "{kind:?}: our tag stays");
    // The user's things are all there.
    for image in [&theirs_under_our_tag, &labelled, &derived, &tampered, &base] {
        docker(&engine, &["image", "inspect", image]);
    }
    docker(&engine, &["container", "inspect", "mine"]);
}

#[test]
#[ignore = "needs root, Docker and namespaces: cargo xtask ci"]
fn on_docker_with_the_classic_store() {
    the_user_flow(Kind::Classic);
}

#[test]
#[ignore = "needs root, trixie's Docker (cargo xtask ci unpacks it) and namespaces: cargo xtask ci"]
fn on_docker_with_the_containerd_store() {
    the_user_flow(Kind::Containerd);
}

#[test]
#[ignore = "needs root, Podman and namespaces: cargo xtask ci"]
fn on_podman() {
    the_user_flow(Kind::Podman);
}
