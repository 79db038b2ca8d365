//! `migrate` (Glide to Go modules), module mode in every command, and `audit`, offline: glide
//! resolves httprouter from Debian's source, and the vulnerability database is test data written
//! here (`test_vulndb`).

mod common;

use std::{fs, path::Path, process::Command};

use common::{go_root, DockerWorkspace, Registry, Workspace};

/// `go version -m`'s lines for `binary`.
fn modules_of(binary: &Path) -> String {
    let out = Command::new(go_root().join("bin/go"))
        .args(["version", "-m"])
        .arg(binary)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy migrated and committed: a module app.
fn migrated() -> DockerWorkspace {
    let ws = DockerWorkspace::new();
    ws.xtask(&["migrate", "--offline"]).ok();
    ws.git(&["add", "-A", "go-app"]);
    ws.commit("Move the app from Glide to Go modules");
    ws
}

#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn migrate_writes_a_module_proved_and_then_has_nothing_to_do() {
    let ws = Workspace::copy();
    // --dry-run: the files it would write, and nothing written.
    let dry = ws.xtask(&["migrate", "--offline", "--dry-run"]).ok();
    assert!(
        dry.stdout
            .contains("require github.com/julienschmidt/httprouter v1.3.0"),
        "{}",
        dry.stdout
    );
    assert!(!ws.path("go-app/go.mod").exists(), "--dry-run wrote go.mod");
    let run = ws.xtask(&["migrate", "--offline"]).ok();
    let go_mod = fs::read_to_string(ws.path("go-app/go.mod")).unwrap();
    assert!(go_mod.starts_with("module go-docker-prod\n"), "{go_mod}");
    assert!(go_mod.contains("require github.com/julienschmidt/httprouter v1.3.0"));
    let modules = fs::read_to_string(ws.path("go-app/vendor/modules.txt")).unwrap();
    assert!(modules.starts_with("# github.com/julienschmidt/httprouter v1.3.0\n"));
    assert!(!ws.path("go-app/glide.yaml").exists() && !ws.path("go-app/glide.lock").exists());
    // Offline: no go.sum line that is not the published module's, and the command that completes it.
    assert!(!ws.path("go-app/go.sum").exists(), "an offline go.sum");
    assert!(run.stdout.contains("go mod tidy"), "{}", run.stdout);
    assert!(run.stdout.contains("proved:"), "{}", run.stdout);
    // vendor/ is the module's now: git sees it, to commit.
    let status = ws.git(&["status", "--short", "--untracked-files=all", "go-app"]);
    assert!(status.contains("go-app/vendor/modules.txt"), "{status}");
    // A second run: nothing to do, nothing changed.
    let again = ws.xtask(&["migrate", "--offline"]).ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(
        ws.git(&["status", "--short", "--untracked-files=all", "go-app"]),
        status
    );
}

#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn migrate_refuses_and_changes_nothing_when_an_app_test_fails() {
    let ws = Workspace::copy();
    let test = ws.path("go-app/main_test.go");
    let broken = fs::read_to_string(&test).unwrap().replace(
        "func Test",
        "func TestMigrationGuard(t *testing.T) { t.Fatal(\"broken on purpose\") }\n\nfunc Test",
    );
    fs::write(&test, broken).unwrap();
    ws.commit("a failing test");
    let run = ws.xtask(&["migrate", "--offline"]).failed();
    assert!(run.all().contains("tests fail"), "{}", run.all());
    assert_eq!(
        ws.git(&["status", "--short", "go-app"]),
        "",
        "the tree changed"
    );
    assert!(ws.path("go-app/glide.yaml").exists() && !ws.path("go-app/go.mod").exists());
}

#[test]
#[ignore = "needs a Docker engine, docker-registry and skopeo: cargo xtask ci"]
fn a_module_app_builds_verifies_and_publishes() {
    let ws = migrated();
    let tag = ws.tag.clone();
    ws.xtask(&["dist", "--offline"]).ok();
    let listed = modules_of(&ws.path("dist/main"));
    assert!(
        listed.contains("dep\tgithub.com/julienschmidt/httprouter\tv1.3.0"),
        "{listed}"
    );
    let run = ws
        .xtask(&["image", "--offline", "--smoke", "--tag", &tag])
        .ok();
    assert!(run.stdout.contains("healthy after"), "{}", run.stdout);
    ws.xtask(&["image", "--offline", "--strategy", "direct", "--tag", &tag])
        .ok();
    let verified = ws.xtask(&["verify", &tag]).ok();
    assert!(verified.stdout.contains("verified:"), "{}", verified.stdout);
    let registry = Registry::start();
    let to = format!("{}/app:modules", registry.addr);
    ws.xtask(&[
        "publish",
        "--offline",
        "--to",
        &to,
        "--platform",
        "linux/amd64",
    ])
    .ok();
    let sbom = fs::read_to_string(ws.path("dist/sbom-linux-amd64.spdx.json")).unwrap();
    assert!(
        sbom.contains("pkg:golang/github.com/julienschmidt/httprouter@v1.3.0"),
        "{sbom}"
    );
    // The module's vendor/ is the user's: clean leaves it.
    ws.xtask(&["clean"]).ok();
    assert!(ws.path("go-app/vendor/modules.txt").is_file());
}

/// A Go vulnerability database in the format govulncheck reads, in `dir`. TEST DATA: one made-up
/// entry, GO-2099-0001, for httprouter before 1.3.1 (or none when `vulnerable` is false).
fn test_vulndb(dir: &Path, vulnerable: bool) {
    fs::create_dir_all(dir.join("index")).unwrap();
    fs::create_dir_all(dir.join("ID")).unwrap();
    let modified = "2026-11-30T00:00:00Z";
    fs::write(
        dir.join("index/db.json"),
        format!("{{\"modified\":\"{modified}\"}}"),
    )
    .unwrap();
    if !vulnerable {
        fs::write(dir.join("index/modules.json"), "[]").unwrap();
        fs::write(dir.join("index/vulns.json"), "[]").unwrap();
        return;
    }
    fs::write(
        dir.join("index/modules.json"),
        format!(
            "[{{\"path\":\"github.com/julienschmidt/httprouter\",\"vulns\":[{{\"id\":\"GO-2099-0001\",\
             \"modified\":\"{modified}\",\"fixed\":\"1.3.1\"}}]}}]"
        ),
    )
    .unwrap();
    fs::write(
        dir.join("index/vulns.json"),
        format!("[{{\"id\":\"GO-2099-0001\",\"modified\":\"{modified}\",\"aliases\":[]}}]"),
    )
    .unwrap();
    fs::write(
        dir.join("ID/GO-2099-0001.json"),
        format!(
            "{{\"schema_version\":\"1.3.1\",\"id\":\"GO-2099-0001\",\"modified\":\"{modified}\",\
             \"published\":\"{modified}\",\"summary\":\"TEST DATA: a made-up vulnerability\",\
             \"details\":\"Test data for go-docker-prod's audit tests.\",\"affected\":[{{\"package\":\
             {{\"name\":\"github.com/julienschmidt/httprouter\",\"ecosystem\":\"Go\"}},\"ranges\":[{{\
             \"type\":\"SEMVER\",\"events\":[{{\"introduced\":\"0\"}},{{\"fixed\":\"1.3.1\"}}]}}],\
             \"ecosystem_specific\":{{\"imports\":[{{\"path\":\"github.com/julienschmidt/httprouter\",\
             \"symbols\":[\"Router.ServeHTTP\"]}}]}}}}]}}"
        ),
    )
    .unwrap();
}

#[test]
#[ignore = "needs Go, glide, govulncheck and a Docker engine: cargo xtask ci"]
fn audit_sees_the_dependencies_of_a_module_app_only() {
    // It reads the builder base's CA bundle version from the engine.
    let _engine = common::engine();
    let db = tempfile::tempdir().unwrap();
    let (vulnerable, clean) = (db.path().join("vulnerable"), db.path().join("clean"));
    test_vulndb(&vulnerable, true);
    test_vulndb(&clean, false);
    let db = |p: &Path| p.to_str().unwrap().to_string();
    // GOPATH mode: the binary records no dependency; audit says so, and finds nothing.
    let gopath = Workspace::copy();
    let run = gopath
        .xtask(&["audit", "--offline", "--db", &db(&vulnerable)])
        .ok();
    assert!(
        run.stdout.contains("sees only the standard library"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("cargo xtask migrate"), "{}", run.stdout);
    // Module mode: the entry is found (exit 1); with a clean database, exit 0.
    let modules = Workspace::copy();
    modules.xtask(&["migrate", "--offline"]).ok();
    let found = modules.xtask(&["audit", "--offline", "--db", &db(&vulnerable)]);
    assert_eq!(found.code, Some(1), "{}", found.all());
    assert!(found.stdout.contains("GO-2099-0001"), "{}", found.stdout);
    let passed = modules
        .xtask(&["audit", "--offline", "--db", &db(&clean)])
        .ok();
    assert!(
        passed.stdout.contains("no known vulnerabilities"),
        "{}",
        passed.stdout
    );
    // No database to read: it could not check, exit 2.
    let missing = modules.xtask(&["audit", "--offline", "--db", "/nonexistent/vulndb"]);
    assert_eq!(missing.code, Some(2), "{}", missing.all());
}

/// The tutorial's glide files: a version range glide.lock pins to an untagged commit stops
/// migrate offline with the cause and the fix, changing nothing; pinned to a release, with
/// `package: ""` and a `.gitignore` line `vendor`, it migrates: the module is named after the app,
/// git sees vendor/, and the proof runs the app on its fixed port.
#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn migrate_takes_the_tutorials_glide_files_or_says_why_not() {
    let ws = Workspace::copy();
    common::put_app(&ws, "tutorial");
    fs::write(ws.path("go-app/.gitignore"), "vendor\n").unwrap();
    ws.git(&["add", "-A"]);
    ws.commit("ignore vendor");
    let refused = ws.xtask(&["migrate", "--offline"]).failed();
    assert!(
        refused
            .stderr
            .contains("glide.yaml asks for `^1.1`, not a release tag")
            && refused.stderr.contains("run migrate online"),
        "{}",
        refused.stderr
    );
    let status = ws.git(&["status", "--porcelain", "--untracked-files=all", "go-app"]);
    assert!(status.is_empty(), "migrate changed {status}");

    let yaml = fs::read_to_string(ws.path("go-app/glide.yaml")).unwrap();
    fs::write(ws.path("go-app/glide.yaml"), yaml.replace("^1.1", "v1.3.0")).unwrap();
    let lock = fs::read_to_string(ws.path("go-app/glide.lock")).unwrap();
    let lock = lock.replace(
        "8c199fb6259ffc1af525cc3ad52ee60ba8359669",
        "4eec211fa4e8df74ed978dc5681612131854144f",
    );
    fs::write(ws.path("go-app/glide.lock"), lock).unwrap();
    ws.commit("pin httprouter v1.3.0");
    let run = ws.xtask(&["migrate", "--offline"]).ok();
    assert!(
        run.stderr.contains("the module path is `app`"),
        "{}",
        run.stderr
    );
    let go_mod = fs::read_to_string(ws.path("go-app/go.mod")).unwrap();
    assert!(go_mod.starts_with("module app\n"), "{go_mod}");
    let ignore = fs::read_to_string(ws.path("go-app/.gitignore")).unwrap();
    assert!(!ignore.contains("vendor"), "{ignore}");
    let status = ws.git(&["status", "--short", "--untracked-files=all", "go-app"]);
    assert!(status.contains("go-app/vendor/modules.txt"), "{status}");
}

/// A migrate killed with SIGKILL while it compares the two builds leaves no server running: the
/// kernel stops what it started for the check.
#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn a_killed_migrate_leaves_no_server_behind() {
    let ws = Workspace::copy();
    // A probe no answer passes: migrate keeps its first server up, waiting, for 10 s.
    fs::write(
        ws.path("app.json"),
        r#"{"binary": "main", "probes": [{"path": "/healthz", "body": "never"}]}"#,
    )
    .unwrap();
    let (child, rx) = common::spawn(&ws, &["migrate", "--offline"], &[]);
    // The first server's command line: `$ PORT=N …/main`.
    let line = common::wait_for(&rx, "$ PORT=");
    let port: u16 = line
        .lines()
        .find_map(|l| l.strip_prefix("$ PORT="))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"));
    let addr = format!("127.0.0.1:{port}");
    let answered = common::http::wait_for(
        &addr,
        "/healthz",
        |status, _| status == 200,
        std::time::Duration::from_secs(10),
    );
    assert!(answered, "the server never answered on {addr}");
    common::signal_alone(&child, libc::SIGKILL);
    let mut child = child;
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while common::http::get(&addr, "/healthz").is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "a server still answers on {addr} after migrate was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The Glide app, whole: no go.mod, no scratch inside go-app/; a rerun migrates.
    assert!(
        !ws.path("go-app/go.mod").exists(),
        "go.mod after a killed migrate"
    );
    let inside: Vec<String> = fs::read_dir(ws.path("go-app"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
        .collect();
    assert!(inside.is_empty(), "scratch inside go-app/: {inside:?}");
    fs::remove_file(ws.path("app.json")).unwrap();
    ws.git(&["checkout", "app.json"]);
    ws.xtask(&["migrate", "--offline"]).ok();
    assert!(ws.path("go-app/go.mod").is_file());
}

/// What a migrate stopped at its swap can leave beside go-app/, the next command puts right:
/// scratch (or the old app after the swap) goes; the old app, moved aside by a filesystem that
/// swaps in two renames, comes back.
#[test]
#[ignore = "needs Go and glide: cargo xtask ci"]
fn what_a_stopped_migrate_left_beside_go_app_is_put_right() {
    let ws = Workspace::copy();
    let scratch = ws.path(".go-app.tmp-0a1b2c");
    fs::create_dir_all(scratch.join("vendor")).unwrap();
    fs::write(scratch.join("go.mod"), "module half\n").unwrap();
    ws.xtask(&["dist", "--offline"]).ok();
    assert!(!scratch.exists(), "scratch beside go-app/ stayed");
    fs::rename(ws.path("go-app"), ws.path(".go-app.old-4242")).unwrap();
    let run = ws.xtask(&["dist", "--offline"]).ok();
    assert!(
        run.stderr.contains("go-app/ was put back"),
        "{}",
        run.stderr
    );
    assert!(ws.path("go-app/glide.yaml").is_file() && !ws.path(".go-app.old-4242").exists());
    assert_eq!(ws.git(&["status", "--porcelain", "go-app"]), "");
}
