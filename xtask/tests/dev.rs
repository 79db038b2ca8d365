//! `cargo xtask dev` against the real engine: edits served, a compile error keeps the old answer,
//! no gap in answers during a swap, a dependency change, and what Ctrl-C and SIGKILL leave.

mod common;

use std::{
    fs,
    process::Child,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::Duration,
};

use common::{
    ctrl_c, dangling, docker, free_port, http, rest, spawn, temp_containers, wait_for,
    DockerWorkspace,
};

/// A `dev` session on a free port: the child, its output, the address it serves.
struct Session {
    child: Child,
    rx: mpsc::Receiver<String>,
    addr: String,
}

fn start(ws: &DockerWorkspace) -> Session {
    let port = free_port().to_string();
    let args = ["dev", "--offline", "--port", &port, "--tag", &ws.tag];
    let (child, rx) = spawn(ws, &args, &[]);
    wait_for(&rx, "dev: http://127.0.0.1:");
    Session {
        child,
        rx,
        addr: format!("127.0.0.1:{port}"),
    }
}

impl Session {
    fn get(&self, path: &str) -> String {
        let (status, body) = http::get(&self.addr, path).unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Ctrl-C, then the exit code and what it printed.
    fn stop(mut self) -> (Option<i32>, String) {
        ctrl_c(&self.child);
        let status = self.child.wait().unwrap();
        (status.code(), rest(self.rx))
    }
}

fn edit(ws: &DockerWorkspace, from: &str, to: &str) {
    let main = ws.path("go-app/main.go");
    let text = fs::read_to_string(&main).unwrap();
    assert!(text.contains(from), "main.go has no {from:?}");
    fs::write(&main, text.replace(from, to)).unwrap();
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn an_edit_is_served_without_a_gap_in_answers() {
    let ws = DockerWorkspace::new();
    let dev = start(&ws);
    assert_eq!(dev.get("/hello/x"), "Hello, x!\n");
    // Poll the port throughout the swap: every answer must be a 200.
    let (done, failures, answers) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let poller = {
        let (done, failures, answers, addr) = (
            Arc::clone(&done),
            Arc::clone(&failures),
            Arc::clone(&answers),
            dev.addr.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                match http::get(&addr, "/healthz") {
                    Ok((200, _)) => answers.fetch_add(1, Ordering::SeqCst),
                    _ => failures.fetch_add(1, Ordering::SeqCst),
                };
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    edit(&ws, "\"Hello, %s!\\n\"", "\"Hi, %s!\\n\"");
    let log = wait_for(&dev.rx, "the new code answers");
    assert!(log.contains("main.go"), "{log}");
    assert_eq!(dev.get("/hello/x"), "Hi, x!\n");
    done.store(true, Ordering::SeqCst);
    poller.join().unwrap();
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "refused or failed during the swap"
    );
    assert!(answers.load(Ordering::SeqCst) > 0);
    let (code, _) = dev.stop();
    assert_eq!(code, Some(0));
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn a_compile_error_keeps_the_old_answer_until_the_fix() {
    let ws = DockerWorkspace::new();
    let dev = start(&ws);
    edit(&ws, "func hello(", "func hello(broken ");
    let log = wait_for(&dev.rx, "FAILED, the running container serves on");
    assert!(log.contains("main.go"), "the compiler's message:\n{log}");
    assert_eq!(dev.get("/hello/x"), "Hello, x!\n");
    edit(&ws, "func hello(broken ", "func hello(");
    edit(&ws, "\"Hello, %s!\\n\"", "\"Fixed, %s!\\n\"");
    wait_for(&dev.rx, "the new code answers");
    assert_eq!(dev.get("/hello/x"), "Fixed, x!\n");
    assert_eq!(dev.stop().0, Some(0));
}

#[test]
#[ignore = "needs a Docker engine, glide: cargo xtask ci"]
fn a_dependency_change_re_vendors_first() {
    let ws = DockerWorkspace::new();
    let dev = start(&ws);
    let yaml = ws.path("go-app/glide.yaml");
    let text = fs::read_to_string(&yaml).unwrap();
    fs::write(
        &yaml,
        format!("{text}# a comment changes the file glide reads\n"),
    )
    .unwrap();
    let log = wait_for(&dev.rx, "the new code answers");
    assert!(log.contains("glide install"), "glide did not run:\n{log}");
    assert_eq!(dev.get("/hello/x"), "Hello, x!\n");
    assert_eq!(dev.stop().0, Some(0));
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn ctrl_c_leaves_only_the_tagged_image() {
    let ws = DockerWorkspace::new();
    let dev = start(&ws);
    edit(&ws, "\"Hello, %s!\\n\"", "\"Again, %s!\\n\"");
    wait_for(&dev.rx, "the new code answers");
    let (code, log) = dev.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stays, on record"), "{log}");
    assert!(
        temp_containers(None).is_empty(),
        "a container of dev is left:\n{log}"
    );
    assert!(
        dangling(None).is_empty(),
        "an image of dev is left dangling:\n{log}"
    );
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &ws.tag]);
    assert!(id.starts_with("sha256:"), "{} is not tagged", ws.tag);
}

#[test]
#[ignore = "needs a Docker engine: cargo xtask ci"]
fn sigkill_then_clean_leaves_nothing() {
    let ws = DockerWorkspace::new();
    let mut dev = start(&ws);
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    assert!(
        !temp_containers(None).is_empty(),
        "a killed dev leaves its container"
    );
    ws.xtask(&["clean"]).ok();
    assert!(
        temp_containers(None).is_empty(),
        "clean left dev's container"
    );
    assert!(dangling(None).is_empty(), "clean left an image of dev");
}
