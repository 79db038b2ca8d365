//! Any Go web service drops in: each fixture app of `xtask/tests/apps/` (written for these tests)
//! replaces the demo in a copy of the workspace, with no change to xtask/, and every command
//! works for it: `dist`, `image --smoke` (multi-stage and `direct`), `verify`, `dev` (an edit is
//! served) and `clean`, each image declaring what the app's contract says.

mod common;

use std::fs;

use common::{
    ctrl_c, dangling, docker, export_listing, free_port, http, rest, spawn, temp_containers,
    wait_for, DockerWorkspace,
};

/// A workspace copy whose go-app/ (and app.json) are the fixture `name`'s, committed.
fn with_app(name: &str) -> DockerWorkspace {
    let ws = DockerWorkspace::new();
    common::put_app(&ws, name);
    ws
}

/// A child process, killed with its group when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            common::signal_group(&self.0, libc::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// What one fixture must give.
struct Expect<'a> {
    /// The app's name, detected: its containers are named after it.
    name: &'a str,
    /// The binaries in dist/ and at the image's root, the entrypoint first.
    binaries: &'a [&'a str],
    /// What `smoke:` says, in part.
    smoke: &'a [&'a str],
    /// `.Config.Env` entries besides PATH; `.Config.WorkingDir`.
    env: &'a [&'a str],
    workdir: &'a str,
    /// Extra files at these paths in the image.
    files: &'a [&'a str],
    /// The image's `.Config.Healthcheck.Test` (`null`: none declared).
    health: &'a str,
    /// The file `dev` sees edited, the text replaced, the path asked, and the answer after.
    edit: (&'a str, &'a str, &'a str),
    ask: (&'a str, &'a str),
}

fn every_command_works(ws: &DockerWorkspace, expect: &Expect) {
    let tag = &ws.tag;
    ws.xtask(&["dist", "--offline"]).ok();
    for binary in expect.binaries {
        assert!(ws.path("dist").join(binary).is_file(), "dist/{binary}");
    }
    for strategy in ["multistage", "direct"] {
        let run = ws
            .xtask(&[
                "image",
                "--offline",
                "--strategy",
                strategy,
                "--smoke",
                "--tag",
                tag,
            ])
            .ok();
        let smoke = run
            .stdout
            .lines()
            .find(|l| l.starts_with("smoke: "))
            .unwrap_or_default();
        for said in expect.smoke {
            assert!(
                smoke.contains(said),
                "{strategy}: `{said}` not in {smoke:?}"
            );
        }
        let config = |format: &str| docker(&["image", "inspect", "--format", format, tag]);
        let entrypoint = format!("[\"/{}\"]", expect.binaries[0]);
        assert_eq!(
            config("{{json .Config.Entrypoint}}"),
            entrypoint,
            "{strategy}"
        );
        assert_eq!(
            config("{{.Config.WorkingDir}}"),
            expect.workdir,
            "{strategy}"
        );
        let env = config("{{json .Config.Env}}");
        let env: Vec<String> = common::json(env.as_bytes())
            .members()
            .filter_map(|v| v.as_str().map(str::to_string))
            .filter(|v| !v.starts_with("PATH="))
            .collect();
        assert_eq!(env, expect.env, "{strategy}");
        let health = config("{{json .Config.Healthcheck}}");
        // None declared: no Healthcheck, or `HEALTHCHECK NONE`'s.
        let test = common::json(health.as_bytes())["Test"]
            .dump()
            .replace(r#"["NONE"]"#, "null");
        assert_eq!(test, expect.health, "{strategy}: {health}");
        let listing = export_listing(None, tag);
        let paths: Vec<&str> = listing
            .iter()
            .filter_map(|l| l.rsplit(' ').next())
            .collect();
        for path in expect.binaries.iter().chain(expect.files) {
            assert!(paths.contains(path), "{strategy}: no /{path} in {paths:?}");
        }
    }
    let verified = ws.xtask(&["verify", "--offline", tag]).ok();
    assert!(
        verified.stdout.contains("verified: "),
        "{}",
        verified.stdout
    );

    // dev: an edit is served.
    let port = free_port().to_string();
    let (child, rx) = spawn(
        ws,
        &["dev", "--offline", "--port", &port, "--tag", tag],
        &[],
    );
    // Stopped however the test ends: a `dev` left running would hold the checkout's lock.
    let mut child = Killed(child);
    wait_for(&rx, "dev: http://127.0.0.1:");
    // Its containers are the app's, by name (and ours by label).
    let names = docker(&[
        "ps",
        "--format",
        "{{.Names}}",
        "--filter",
        &common::temp_label(),
    ]);
    let dev = format!("{}-dev-", expect.name);
    assert!(
        !names.is_empty() && names.lines().all(|n| n.starts_with(&dev)),
        "dev's containers: {names:?}"
    );
    let addr = format!("127.0.0.1:{port}");
    let (file, from, to) = expect.edit;
    let path = ws.path("go-app").join(file);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?}");
    fs::write(&path, text.replace(from, to)).unwrap();
    wait_for(&rx, "the new code answers");
    let (ask, answer) = expect.ask;
    let got = http::get(&addr, ask).unwrap();
    assert_eq!(got, (200, answer.to_string()), "GET {ask} after the edit");
    ctrl_c(&child.0);
    assert_eq!(child.0.wait().unwrap().code(), Some(0), "{}", rest(rx));

    ws.xtask(&["clean"]).ok();
    assert!(dangling(None).is_empty(), "dangling images left");
    assert!(
        temp_containers(None).is_empty(),
        "temporary containers left"
    );
    let left = docker(&["image", "ls", "-q", tag]);
    assert!(left.is_empty(), "clean left {tag}");
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn a_tutorial_shaped_app_with_a_fixed_port_and_no_health_route() {
    let ws = with_app("tutorial");
    // Nothing to say: the contract is detected. Its name (glide.yaml's package is "") is `app`.
    let init = ws.xtask(&["--dry-run", "init"]).ok();
    assert!(
        init.stdout.contains("\"main\": [\n    \"src\"\n  ]"),
        "{}",
        init.stdout
    );
    every_command_works(
        &ws,
        &Expect {
            name: "app",
            binaries: &["app"],
            // No health check declared; SIGTERM without a handler: Go's default, expected.
            smoke: &[
                "no health check declared",
                "answered / ",
                "SIGTERM → exit 143",
            ],
            env: &[],
            workdir: "/",
            files: &[],
            health: "null",
            edit: ("src/main.go", "Welcome!", "Welcome back!"),
            ask: ("/", "Welcome back!\n"),
        },
    );
    // The image declares no health check (the engine would run one that can never pass).
    ws.xtask(&["image", "--offline", "--tag", &ws.tag]).ok();
    let check = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Healthcheck}}",
        &ws.tag,
    ]);
    assert!(check == "null" || check.contains("NONE"), "{check}");
    // Without --tag, the image is the app's: app:latest.
    let run = ws
        .xtask(&["image", "--offline", "--strategy", "direct"])
        .ok();
    assert!(run.stdout.contains("\napp:latest "), "{}", run.stdout);
    ws.xtask(&["clean"]).ok();
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn a_module_with_its_main_in_cmd_and_no_dependencies() {
    let ws = with_app("modules-cmd");
    every_command_works(
        &ws,
        &Expect {
            name: "ping",
            binaries: &["ping"],
            smoke: &["no health check declared", "SIGTERM → exit 0"],
            env: &[],
            workdir: "/",
            files: &[],
            health: "null",
            edit: ("cmd/ping/main.go", "\"pong\\n\"", "\"pong!\\n\""),
            ask: ("/", "pong!\n"),
        },
    );
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn an_app_that_needs_port_and_reads_its_templates() {
    let ws = with_app("needs-port");
    every_command_works(
        &ws,
        &Expect {
            // Its HTTP health check is ours, beside its binary: no shell, no curl.
            name: "greeter",
            binaries: &["greeter", "healthcheck"],
            smoke: &[
                "healthy after",
                "`/healthcheck http://127.0.0.1:8080/static/site.css PORT` passed",
                "answered /hello/x /static/site.css",
            ],
            // It has no port of its own: the image sets the one it answers on.
            env: &["PORT=8080"],
            workdir: "/srv",
            files: &["srv/templates/hello.html", "srv/static/site.css"],
            health: r#"["CMD","/healthcheck","http://127.0.0.1:8080/static/site.css","PORT"]"#,
            edit: ("templates/hello.html", "Hello", "Hi"),
            ask: ("/hello/x", "<p>Hi, x!</p>\n"),
        },
    );
    // A health path that does not answer 2xx or 3xx: smoke fails, and says what the check said.
    let json = fs::read_to_string(ws.path("app.json")).unwrap();
    fs::write(
        ws.path("app.json"),
        json.replace("/static/site.css\" }", "/nope\" }"),
    )
    .unwrap();
    let run = ws
        .xtask(&[
            "image",
            "--offline",
            "--strategy",
            "direct",
            "--smoke",
            "--tag",
            &ws.tag,
        ])
        .failed();
    assert!(
        run.stderr.contains("healthcheck: /nope answered HTTP/1.") && run.stderr.contains(" 404 "),
        "{}",
        run.stderr
    );
    ws.xtask(&["clean"]).ok();
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn two_main_packages_in_one_image() {
    let ws = with_app("two-mains");
    every_command_works(
        &ws,
        &Expect {
            name: "shop",
            binaries: &["api", "worker"],
            smoke: &["answered /jobs"],
            env: &[],
            workdir: "/",
            files: &[],
            health: "null",
            edit: ("cmd/api/main.go", "pending", "waiting"),
            ask: ("/jobs", "0 waiting\n"),
        },
    );
    // Each main package for another platform too, named for it.
    ws.xtask(&["dist", "--offline", "--platform", "linux/arm64"])
        .ok();
    for binary in ["api", "worker"] {
        let elf = fs::read(ws.path("dist").join(format!("{binary}-linux-arm64"))).unwrap();
        // ELF e_machine 183: AArch64.
        assert_eq!(elf[18], 183, "{binary}-linux-arm64 is not an arm64 binary");
    }
    // Without app.json's choice, the two main packages are named, with the fix.
    fs::remove_file(ws.path("app.json")).unwrap();
    let err = ws.xtask(&["dist", "--offline"]).failed();
    assert!(
        err.stderr.contains("2 main packages (cmd/api, cmd/worker)"),
        "{}",
        err.stderr
    );
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn two_main_packages_an_image_each() {
    let ws = with_app("two-mains");
    // One image per main package, as app.json's `images` says: the api serves HTTP, the worker
    // none (no probes); each detected from its own code (the worker handles SIGTERM). The api's
    // binary is named otherwise than Go would: a `go build` of its own.
    let name = ws.tag.trim_end_matches(":latest").to_string();
    let (api, worker) = (format!("{name}-api"), format!("{name}-worker"));
    let contract = format!(
        r#"{{ "images": {{
  "{api}": {{ "main": ["cmd/api"], "binary": "api-server",
    "probes": [{{ "path": "/jobs", "status": 200 }}] }},
  "{worker}": {{ "main": ["cmd/worker"], "probes": [] }} }} }}"#
    );
    fs::write(ws.path("app.json"), contract).unwrap();
    ws.git(&["add", "-A"]);
    ws.commit("an image each");
    ws.xtask(&["dist", "--offline"]).ok();
    for binary in ["api-server", "worker"] {
        assert!(ws.path("dist").join(binary).is_file(), "dist/{binary}");
    }
    // One name for two images: refused, naming them.
    let err = ws.xtask(&["image", "--offline", "--tag", &ws.tag]).failed();
    assert!(
        err.stderr.contains(&format!("2 images ({api}, {worker})"))
            && err.stderr.contains("--app NAME"),
        "{}",
        err.stderr
    );
    for strategy in ["multistage", "direct"] {
        let run = ws
            .xtask(&["image", "--offline", "--strategy", strategy, "--smoke"])
            .ok();
        let said = |image: &str| {
            run.stdout
                .lines()
                .find(|l| l.starts_with(&format!("smoke: {image}:latest ")))
                .unwrap_or_else(|| panic!("{strategy}: no smoke line for {image}:\n{}", run.stdout))
                .to_string()
        };
        assert!(said(&api).contains("answered /jobs"), "{}", said(&api));
        let smoke = said(&worker);
        assert!(
            smoke.contains("up for 1 s (no probes: it serves no HTTP)")
                && smoke.contains("SIGTERM → exit 0"),
            "{smoke}"
        );
        for (image, binary, other, ports) in [
            (&api, "api-server", "worker", r#"{"8080/tcp":{}}"#),
            (&worker, "worker", "api-server", "null"),
        ] {
            let image = format!("{image}:latest");
            let config = |format: &str| docker(&["image", "inspect", "--format", format, &image]);
            let entrypoint = format!("[\"/{binary}\"]");
            assert_eq!(
                config("{{json .Config.Entrypoint}}"),
                entrypoint,
                "{strategy}"
            );
            // Only a server declares a port.
            let exposed = config("{{json .Config.ExposedPorts}}");
            assert_eq!(
                exposed.replace("{}", "null"),
                ports.replace("{}", "null"),
                "{strategy} {image}"
            );
            let listing = export_listing(None, &image);
            let paths: Vec<&str> = listing
                .iter()
                .filter_map(|l| l.rsplit(' ').next())
                .collect();
            assert!(
                paths.contains(&binary),
                "{strategy}: no /{binary} in {image}"
            );
            assert!(!paths.contains(&other), "{strategy}: /{other} in {image}");
        }
    }
    for image in [&api, &worker] {
        let verified = ws
            .xtask(&["verify", "--offline", &format!("{image}:latest")])
            .ok();
        assert!(
            verified.stdout.contains("verified: "),
            "{}",
            verified.stdout
        );
    }
    // `dev` serves one image: without --app it names them; the worker serves no HTTP.
    let err = ws.xtask(&["dev", "--offline"]).failed();
    assert!(err.stderr.contains("dev takes one"), "{}", err.stderr);
    let err = ws.xtask(&["dev", "--offline", "--app", &worker]).failed();
    assert!(err.stderr.contains("has no probes"), "{}", err.stderr);
    ws.xtask(&["clean"]).ok();
    for image in [&api, &worker] {
        assert!(
            docker(&["image", "ls", "-q", image]).is_empty(),
            "clean left {image}"
        );
    }
}
