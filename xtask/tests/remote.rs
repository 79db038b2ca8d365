//! A remote engine: a second dockerd in its own mount and network namespaces, with its own data
//! root, exec root and socket, and a tmpfs over /tmp, so that it cannot see the workspace (the
//! test copies live in /tmp). Every strategy and dist's container fallback must work through
//! DOCKER_HOST alone: this is what the `docker cp` handoff is for (a bind mount would see nothing).

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{sha256, tag, Workspace};

struct RemoteEngine {
    dir: PathBuf,
    host: String,
    child: Child,
}

impl RemoteEngine {
    fn start() -> RemoteEngine {
        // Short paths: containerd's sockets live under the exec root (108-byte limit).
        let dir = PathBuf::from(format!("/var/tmp/xr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.to_str().unwrap();
        let script = format!(
            "mount -t tmpfs tmpfs /tmp && ip link set lo up && exec dockerd \
             --data-root {d}/data --exec-root {d}/exec --pidfile {d}/dockerd.pid \
             -H unix://{d}/docker.sock >{d}/dockerd.log 2>&1"
        );
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let host = format!("unix://{d}/docker.sock");
        let engine = RemoteEngine { dir, host, child };
        let up = (0..300).any(|_| {
            let ok = engine
                .docker(&["version", "--format", "{{.Server.APIVersion}}"])
                .status
                .success();
            if !ok {
                std::thread::sleep(Duration::from_millis(100));
            }
            ok
        });
        let log = std::fs::read_to_string(engine.dir.join("dockerd.log")).unwrap_or_default();
        assert!(up, "the remote dockerd did not come up:\n{log}");
        engine
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .output()
            .unwrap()
    }

    /// Copies an image from the local engine (the remote one cannot pull either).
    fn load(&self, image: &str) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker save {image} | DOCKER_HOST={} docker load -q",
                self.host
            ))
            .status()
            .unwrap();
        assert!(status.success(), "loading {image} into the remote engine");
    }
}

impl Drop for RemoteEngine {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("dockerd.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn every_strategy_and_the_dist_fallback_work_on_a_remote_engine() {
    let ws = Workspace::copy();
    ws.xtask(&["base-images"]).ok(); // on the local engine
    ws.xtask(&["dist", "--offline"]).ok();
    let host_sha = sha256(&ws.path("dist/main"));
    let remote = RemoteEngine::start();
    // It really does not see our files: a bind mount of the workspace shows an empty directory.
    remote.load("xtask-local/golang:bookworm");
    let ws_dir = ws.root.to_str().unwrap();
    let ls = remote.docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{ws_dir}:/w"),
        "xtask-local/golang:bookworm",
        "ls",
        "-A",
        "/w",
    ]);
    assert!(
        ls.status.success() && String::from_utf8_lossy(&ls.stdout).trim().is_empty(),
        "the remote engine sees the workspace"
    );

    let env = [("DOCKER_HOST", remote.host.as_str())];
    let tag = tag(&ws);
    for builder in ["buildkit", "legacy"] {
        for strategy in ["multistage", "handoff", "single"] {
            let args = [
                "image",
                "--offline",
                "--strategy",
                strategy,
                "--builder",
                builder,
                "--tag",
                &tag,
            ];
            ws.xtask_env(&args, &env).ok();
            let dangling = common::dangling(Some(&remote.host), &common::project_label());
            assert!(
                dangling.is_empty(),
                "{strategy} on {builder}: dangling images left: {dangling:?}"
            );
            let id = remote.docker(&["create", &tag]);
            let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
            let out = ws.path("target/remote-main");
            let from = if strategy == "single" {
                "/out/main"
            } else {
                "/main"
            };
            assert!(remote
                .docker(&["cp", &format!("{id}:{from}"), out.to_str().unwrap()])
                .status
                .success());
            remote.docker(&["rm", "-f", &id]);
            assert_eq!(
                sha256(&out),
                host_sha,
                "{strategy} on {builder}: the binary differs from the host's"
            );
        }
    }

    // No Go on the host: dist builds inside ex1 on the remote engine and copies the binary out.
    std::fs::remove_dir_all(ws.path("dist")).unwrap();
    let path = ws.path_without(&["go"]);
    let run = ws
        .xtask_env(
            &["dist", "--offline", "--no-setup"],
            &[("DOCKER_HOST", remote.host.as_str()), ("PATH", &path)],
        )
        .ok();
    assert!(run.stderr.contains("no Go on this host"), "{}", run.stderr);
    assert_eq!(
        sha256(&ws.path("dist/main")),
        host_sha,
        "the container fallback's binary differs"
    );

    let clean = ws.xtask_env(&["clean"], &env).ok();
    assert!(clean.stdout.contains("images removed"), "{}", clean.stdout);
    let left = remote.docker(&[
        "image",
        "ls",
        "-q",
        "--filter",
        &common::checkout_label(&ws),
    ]);
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "clean left images on the remote engine"
    );
}
