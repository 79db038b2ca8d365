//! Real hosts: an ordinary user in the docker group (with its own rustup Rust), from a checkout at
//! a path with a space, non-ASCII characters and `#`, on an engine that has no base image yet;
//! `setup` that installs from a foreign suite and leaves /etc/apt as it found it; a user without
//! engine access told why. These need root (they make the user): `cargo xtask ci` runs them.

mod common;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use common::{Kind, RemoteEngine, Workspace};

/// The test user: made once, kept for later runs (its Rust is the slow part).
const USER: &str = "xtask-ci";

struct SecondUser {
    home: PathBuf,
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl SecondUser {
    /// The user, in the docker group, with rustup's Rust (the toolchain root has).
    fn ensure() -> SecondUser {
        if !Command::new("id")
            .arg(USER)
            .output()
            .unwrap()
            .status
            .success()
        {
            run("useradd", &["-m", "-s", "/bin/bash", "-G", "docker", USER]);
        } else {
            run("usermod", &["-aG", "docker", USER]);
        }
        let home = PathBuf::from(
            run(
                "sh",
                &["-c", &format!("getent passwd {USER} | cut -d: -f6")],
            )
            .trim(),
        );
        if !home.join(".cargo/bin/cargo").exists() {
            let rustup = which("rustup");
            let init = home.join("rustup-init");
            fs::copy(rustup, &init).unwrap();
            run("chown", &[USER, init.to_str().unwrap()]);
            let toolchain = run("rustc", &["--version"])
                .split_whitespace()
                .nth(1)
                .unwrap()
                .to_string();
            let user = SecondUser { home: home.clone() };
            user.sh(&format!("./rustup-init -y --profile minimal --no-modify-path --default-toolchain {toolchain}"));
        }
        SecondUser { home }
    }

    /// Runs `script` in a login shell of the user; its output, which must be a success.
    fn sh(&self, script: &str) -> String {
        let file = self.home.join("xtask-test.sh");
        fs::write(
            &file,
            format!("set -eu\nexport PATH=\"$HOME/.cargo/bin:$PATH\"\n{script}\n"),
        )
        .unwrap();
        run("chown", &[USER, file.to_str().unwrap()]);
        let out = Command::new("su")
            .args(["-", USER, "-c", "sh ./xtask-test.sh"])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "as {USER}:\n{script}\n--- output\n{text}"
        );
        text
    }

    /// A bare repository of `ws`'s commit, owned by the user (git refuses another owner's).
    fn bare_copy_of(&self, ws: &Workspace) -> PathBuf {
        let bare = self.home.join("src.git");
        let _ = fs::remove_dir_all(&bare);
        run(
            "git",
            &[
                "clone",
                "-q",
                "--bare",
                ws.root.to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
        run("chown", &["-R", USER, bare.to_str().unwrap()]);
        bare
    }
}

fn which(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no {program}"))
}

/// The layer digest `base-images` printed.
fn layer(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.split_once("layer ").map(|(_, d)| d.trim().to_string()))
        .unwrap_or_else(|| panic!("no layer digest in:\n{output}"))
}

#[test]
#[ignore = "needs root (makes a user), a Docker engine, namespaces and rustup: cargo xtask ci"]
fn an_ordinary_user_builds_from_an_odd_path_on_a_fresh_engine() {
    let _engines = common::private_engines();
    let user = SecondUser::ensure();
    let ws = Workspace::copy();
    // Root's part: setup (nothing left to install here), and the base image on the local engine.
    let root_layer = {
        let _host = common::host_engine();
        ws.xtask(&["setup"]).ok();
        layer(&ws.xtask(&["base-images"]).ok().stdout)
    };
    user.bare_copy_of(&ws);
    // The user's part, on an engine that has nothing of ours: the base image too is the user's.
    let remote = RemoteEngine::start();
    let out = user.sh(&format!(
        r#"export DOCKER_HOST={host}
top="$HOME/my wörk #1"
rm -rf "$top"
git clone -q "$HOME/src.git" "$top/checkout"
cd "$top/checkout"
cargo xtask base-images
cd go-app
cargo xtask dist --offline
cargo xtask image --offline --smoke
cargo xtask image --offline --strategy direct --tag user-direct:1
cargo xtask dev --offline --port 0 > "$top/dev.log" 2>&1 &
dev=$!
for i in $(seq 1 1200); do grep -q "Ctrl-C stops" "$top/dev.log" && break; sleep 0.1; done
sed -i 's/Hello, %s!/Hi, %s!/' main.go
for i in $(seq 1 1200); do grep -q "the new code answers" "$top/dev.log" && break; sleep 0.1; done
kill -TERM $dev; wait $dev; echo "dev exit: $?"
grep "^dev:" "$top/dev.log"
git checkout -q main.go
cargo xtask clean
echo "not mine: $(find "$top" ! -user "$(id -un)" | head -5)"
"#,
        host = remote.host
    ));
    assert!(out.contains("dev exit: 0"), "{out}");
    assert!(
        out.contains("the new code answers"),
        "dev did not swap in the edit:\n{out}"
    );
    assert_eq!(
        layer(&out),
        root_layer,
        "the user's base image layer differs from root's"
    );
    assert!(
        out.contains("smoke: go-docker-prod:latest (sha256:") && out.contains(") healthy after"),
        "{out}"
    );
    assert!(
        out.contains("not mine: \n") || out.trim_end().ends_with("not mine:"),
        "files the user does not own:\n{out}"
    );
    assert!(out.contains("images removed"), "{out}");
}

/// The same user on Docker's containerd image store and on Podman (each in its own namespaces):
/// `direct` and the default image, smoke-tested, then `clean`.
#[test]
#[ignore = "needs root (makes a user), trixie's Docker and Podman: cargo xtask ci"]
fn an_ordinary_user_builds_on_the_containerd_store_and_podman() {
    let _engines = common::private_engines();
    let user = SecondUser::ensure();
    let ws = Workspace::copy();
    // The host's engine, for as long as it is used: the base image made there, and read.
    {
        let _host = common::host_engine();
        ws.xtask(&["base-images"]).ok();
    }
    user.bare_copy_of(&ws);
    for kind in [Kind::Containerd, Kind::Podman] {
        let remote = RemoteEngine::start_kind(kind);
        {
            let _host = common::host_engine();
            remote.load(common::project::LOCAL_BUILDER_IMAGE);
        }
        // Podman's socket is root's: the group the user is in reaches it.
        let socket = remote.host.trim_start_matches("unix://");
        run("chgrp", &["docker", socket]);
        run("chmod", &["g+rw", socket]);
        let out = user.sh(&format!(
            r#"export DOCKER_HOST={host}
top="$HOME/my wörk #2"
rm -rf "$top"
git clone -q "$HOME/src.git" "$top/checkout"
cd "$top/checkout/go-app"
cargo xtask image --offline --strategy direct --smoke --tag user-direct:1
cargo xtask image --offline --smoke
cargo xtask clean
echo "not mine: $(find "$top" ! -user "$(id -un)" | head -5)"
"#,
            host = remote.host
        ));
        for tag in ["user-direct:1", "go-docker-prod:latest"] {
            assert!(
                out.contains(&format!("smoke: {tag} (sha256:")),
                "{kind:?}: {tag} not smoke-tested:\n{out}"
            );
        }
        assert!(
            out.contains("not mine: \n") || out.trim_end().ends_with("not mine:"),
            "{kind:?}: files the user does not own:\n{out}"
        );
        assert!(out.contains("images removed"), "{out}");
    }
}

#[test]
#[ignore = "needs root (makes a user) and a Docker engine: cargo xtask ci"]
fn a_user_without_engine_access_is_told_why() {
    let _machine = common::engine();
    SecondUser::ensure();
    let ws = Workspace::copy();
    let uid = run("id", &["-u", USER]).trim().to_string();
    // The user without its groups: the engine's socket refuses it.
    let out = Command::new("setpriv")
        .args(["--reuid", &uid, "--regid", &uid, "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(["setup", "--no-setup"])
        .current_dir(&ws.root)
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("permission denied")
            && stderr.contains("`docker` group")
            && stderr.contains("usermod -aG docker"),
        "{stderr}"
    );
}

/// `setup` as a user who may not use sudo: the exact commands to run, nothing installed. (A tool is
/// made missing by hiding it from PATH.)
#[test]
#[ignore = "needs root (makes a user): cargo xtask ci"]
fn setup_as_a_user_without_sudo_prints_the_commands() {
    let _machine = common::engine();
    let user = SecondUser::ensure();
    let ws = Workspace::copy();
    let path = ws.path_without(&["skopeo", "sudo"]);
    // The user reads the copy (it is root's, world-readable) and runs the xtask built for the tests.
    run("chmod", &["-R", "a+rX", ws.base.to_str().unwrap()]);
    let exe = user.home.join("xtask-under-test");
    fs::copy(env!("CARGO_BIN_EXE_xtask"), &exe).unwrap();
    run("chmod", &["755", exe.to_str().unwrap()]);
    let uid = run("id", &["-u", USER]).trim().to_string();
    let out = Command::new("setpriv")
        .args(["--reuid", &uid, "--regid", &uid, "--init-groups"])
        .arg(&exe)
        .arg("setup")
        .current_dir(&ws.root)
        .env("PATH", &path)
        .env("HOME", &user.home)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sudo apt-get")
            && stderr.contains("install --no-install-recommends skopeo"),
        "{stderr}"
    );
    assert!(stderr.contains("never runs cargo as root"), "{stderr}");
}

/// Every file under /etc/apt: its kind and content (a link: its target).
fn apt_tree(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_symlink() {
            out.insert(
                path.clone(),
                format!("-> {}", fs::read_link(&path).unwrap().display()).into_bytes(),
            );
        } else if meta.is_dir() {
            out.insert(path.clone(), b"dir".to_vec());
            apt_tree(&path, out);
        } else {
            out.insert(path.clone(), fs::read(&path).unwrap());
        }
    }
}

#[test]
#[ignore = "needs root, apt and Debian's mirror: cargo xtask ci"]
fn setup_installs_from_a_foreign_suite_and_leaves_apt_as_it_was() {
    // The other tests here run `setup` too: one at a time.
    let _machine = common::engine();
    let ws = Workspace::copy();
    // A foreign package (bookworm-backports' UPX) gone, so that setup must bring it back.
    run("apt-get", &["remove", "-y", "-q", "upx-ucl"]);
    let mut before = BTreeMap::new();
    apt_tree(Path::new("/etc/apt"), &mut before);
    let policy = || run("apt-cache", &["policy"]);
    let policy_before = policy();
    let setup = ws.xtask(&["setup"]).ok();
    assert!(
        setup
            .stderr
            .contains("installing upx-ucl/bookworm-backports (alone"),
        "{}",
        setup.stderr
    );
    assert!(which("upx").is_file());
    let mut after = BTreeMap::new();
    apt_tree(Path::new("/etc/apt"), &mut after);
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(changed.is_empty(), "setup changed /etc/apt: {changed:?}");
    assert_eq!(
        policy(),
        policy_before,
        "the host's package priorities changed"
    );
}
