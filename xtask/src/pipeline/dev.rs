//! `dev`: from a saved file to the new code answering in the real container. The image is built
//! as `image` builds it (direct by default), run hardened as the smoke test runs it, and served
//! on the URL's port by the xtask itself, which forwards each connection to whichever container is
//! current: a new container takes over only once it is healthy, so the port never refuses while a
//! good build replaces the old one. A build or a health check that fails leaves the old container
//! serving; the next save tries again. Ctrl-C or SIGTERM stops the container with SIGTERM and
//! removes what `dev` made; the last image stays tagged, on record, like any build.

use std::{
    io::{BufRead, BufReader},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, RwLock,
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use camino::Utf8Path;

use crate::{
    infra::{
        ctx::{secs, Ctx},
        docker::{self, Confined, Engine, TempContainer},
        http,
        process::ProcessError,
        watch,
    },
    pipeline::{
        app::App,
        build::{self, Request},
        checkout::Checkout,
        smoke,
    },
};

/// How long a burst of saves may pause before it is built: each event waits this long for more
/// (an editor writes a file in a few milliseconds).
const QUIET: Duration = Duration::from_millis(15);
/// The same after a file was closed from writing or renamed into place, which ends a save: the
/// next file of a burst (a checkout, a formatter) follows within a millisecond.
const SAVED: Duration = Duration::from_millis(3);
/// How long a new container has to answer.
const HEALTHY_WITHIN: Duration = Duration::from_secs(15);

/// Builds, serves on `port` and rebuilds on every change until a signal; see the module's doc.
pub fn run(ctx: &Ctx, checkout: &mut Checkout, request: &Request, port: u16) -> Result<()> {
    let paths = &ctx.paths;
    let engine = Engine::ensure(ctx)?;
    let local = docker::publishes_here(&docker::endpoint(ctx));
    let proxy = Proxy::bind(port)?;
    let watch = Watch::start(&paths.go_app(), &checkout.app.files)?;
    // What a killed `dev` of this checkout left.
    let left = docker::remove_temp_containers(ctx, &checkout.record.checkout)?;
    if left > 0 {
        ctx.announce(format!("removed {left} containers a stopped xtask left"));
    }
    let mut session = Session {
        proxy: &proxy,
        engine,
        local,
        network: None,
        serving: None,
    };
    let started = Instant::now();
    match cycle(ctx, checkout, request, &mut session) {
        Ok((built, answering)) => println!(
            "dev: {} built in {}, serving after {}",
            request.tag,
            secs(built),
            secs(answering - started)
        ),
        Err(e) => eprintln!(
            "dev: the first build FAILED, waiting for a change: {}",
            why(&e)
        ),
    }
    let watching = format!("watch {} and rebuild on every saved change", paths.go_app());
    if ctx.change(watching, || Ok(()))?.is_none() {
        return Ok(()); // --dry-run: what the first build would run is said
    }
    if local && session.serving.is_none() {
        println!(
            "dev: http://127.0.0.1:{}/ answers once a build passes; nothing serves yet (Ctrl-C stops)",
            proxy.port
        );
    } else if local {
        println!("dev: http://127.0.0.1:{}/ (Ctrl-C stops)", proxy.port);
    } else {
        println!(
            "dev: the engine runs elsewhere ({}): its containers answer on its own loopback, so \
             each one's health check is all that is checked; Ctrl-C stops",
            docker::endpoint(ctx)
        );
    }
    while let Some(changed) = watch.next_burst(ctx) {
        let saved = changed.at;
        let what = changed.names();
        match cycle(ctx, checkout, request, &mut session) {
            Ok((built, answering)) => println!(
                "dev: {what}: built in {}, the new code answers {} after the save",
                secs(built),
                secs(answering - saved)
            ),
            Err(e) => eprintln!(
                "dev: {what}: FAILED, {}: {}",
                match session.serving {
                    Some(_) => "the running container serves on",
                    None => "nothing serves",
                },
                why(&e)
            ),
        }
    }
    // Stopped by a signal, as asked: the container goes with SIGTERM (the exit the contract
    // expects), and
    // what a stopped build left goes too.
    ctx.stopped_as_asked();
    proxy.stop();
    let how = match session.serving.take() {
        Some(serving) => format!(" (its container: {})", serving.stop(ctx, &checkout.app)?),
        None => String::new(),
    };
    drop(session.network.take());
    checkout.record.sweep(ctx, &[])?;
    checkout.record.save(ctx)?;
    println!("dev: stopped{how}; {} stays, on record", request.tag);
    Ok(())
}

/// Why a cycle failed, short: a command whose output was shown (the compiler's) is named, not
/// repeated.
fn why(e: &anyhow::Error) -> String {
    match ProcessError::of(e) {
        Some(failed) if failed.stderr.is_empty() && failed.stdout.is_empty() => {
            let words: Vec<&str> = std::iter::once(failed.program.as_str())
                .chain(failed.args.iter().map(String::as_str).take(1))
                .collect();
            format!("`{}` failed (its output is above)", words.join(" "))
        }
        _ => format!("{e:#}"),
    }
}

/// What a dev session holds: the port, the engine, the network its containers join, and the
/// container serving now (dropped before the network, which it joined).
struct Session<'a> {
    proxy: &'a Proxy,
    engine: Engine,
    local: bool,
    serving: Option<Serving<'a>>,
    network: Option<Network<'a>>,
}

/// One build and swap: the build, a new container, healthy, then the port's connections go to it,
/// the old container stops, and the tag moves. How long the build took, and when the new code
/// began to answer.
fn cycle<'a>(
    ctx: &'a Ctx,
    checkout: &mut Checkout,
    request: &Request,
    session: &mut Session<'a>,
) -> Result<(Duration, Instant)> {
    let built = build::build(ctx, checkout, request, Some(&session.engine))?;
    let took = built.elapsed;
    let Some(id) = built.id.as_deref() else {
        return Ok((took, Instant::now())); // --dry-run
    };
    let app = &checkout.app;
    // An app whose port is fixed has one slot: the old container stops before the new one starts
    // (a gap, said).
    let gap = match session.serving.take_if(|_| app.port_env.is_none()) {
        Some(old) => {
            let stopping = Instant::now();
            session.proxy.route(None);
            old.stop(ctx, app)?;
            Some(stopping)
        }
        None => None,
    };
    let started = match &session.network {
        Some(network) => Ok(network),
        None => Network::start(
            ctx,
            &checkout.record.checkout,
            app,
            &built.builder_image,
            session.local,
        )
        .map(|network| &*session.network.insert(network)),
    };
    // The slot the serving container does not use.
    let slot = session.serving.as_ref().map_or(0, |s| 1 - s.slot);
    let next = started
        .and_then(|network| Serving::start(ctx, &checkout.record.checkout, app, id, network, slot));
    let next = match next {
        Ok(next) => next,
        Err(e) => {
            if session.serving.as_ref().is_none_or(|s| s.id != id) {
                checkout.record.discard(ctx, id);
            }
            if gap.is_some() {
                return Err(e.context(
                    "the old container was stopped first (the app's port is fixed): nothing \
                     serves until a build passes",
                ));
            }
            return Err(e);
        }
    };
    session.proxy.route(next.addr);
    let answering = Instant::now();
    if let Some(stopping) = gap {
        println!(
            "dev: the app's port is fixed ({}; no port_env in app.json): the old container \
             stopped first, nothing answered for {}",
            app.port,
            secs(answering - stopping)
        );
    }
    if let Some(old) = session.serving.replace(next) {
        old.stop(ctx, app)?;
    }
    build::place_reporting(ctx, checkout, &built, request.tag.as_str(), false)?;
    Ok((took, answering))
}

/// The network namespace every container of the session joins, held by a container of the
/// builder base that only sleeps, and publishing the two ports the app's containers take in turn
/// (the contract's `port_env`): a container that joins it starts in half the time of one that gets
/// a network of its own (docs/performance.md), and the old one serves on the other port until the
/// new one is healthy. An app whose port is fixed has the one slot.
struct Network<'a> {
    holder: TempContainer<'a>,
    /// Each slot's port inside, and where it is published on this host's loopback (`None`: the
    /// engine publishes elsewhere).
    slots: Vec<(u16, Option<u16>)>,
}

impl<'a> Network<'a> {
    fn start(
        ctx: &'a Ctx,
        checkout: &str,
        app: &App,
        image: &str,
        local: bool,
    ) -> Result<Network<'a>> {
        let mut slots = vec![(app.port, None)];
        if app.port_env.is_some() {
            slots.push((app.port.checked_add(1).unwrap_or(app.port - 1), None));
        }
        for (_, host) in &mut slots {
            // Chosen now where the engine publishes here: known without asking.
            if local {
                *host = Some(crate::infra::net::free_port()?);
            }
        }
        let confined = Confined {
            user: Some("65534:65534"),
            publish: slots
                .iter()
                .map(|(inside, host)| (*host, *inside))
                .collect(),
            ..Confined::default()
        };
        let sleep = ["sleep", "2147483647"];
        let purpose = format!("{}-dev-net", app.name);
        let holder = TempContainer::run(ctx, checkout, image, &purpose, &confined, &sleep)
            .context("making the network dev's containers join")?;
        Ok(Network { holder, slots })
    }
}

/// The container serving now: its image, its slot in the network, its address here, its log
/// streamed.
struct Serving<'a> {
    id: String,
    slot: usize,
    container: TempContainer<'a>,
    addr: Option<SocketAddr>,
    _logs: crate::infra::process::Running,
}

impl<'a> Serving<'a> {
    /// Runs the image `id` hardened in `network`, answering on `slot`'s port, until /healthz
    /// answers there from this host (what the image's own check asks), or, where the engine runs
    /// elsewhere, its health check passes (run with `docker exec`, as the smoke test runs it);
    /// then its log is streamed with the time (from its start). The container is removed when
    /// dropped; `clean` finds a killed `dev`'s by its label.
    fn start(
        ctx: &'a Ctx,
        checkout: &str,
        app: &App,
        id: &str,
        network: &Network,
        slot: usize,
    ) -> Result<Serving<'a>> {
        let slot = slot.min(network.slots.len() - 1);
        let (inside, host) = network.slots[slot];
        // No health checks by the engine's scheduler: `dev` checks the new container before it
        // serves, and the image's check every 2 s would run beside every rebuild.
        let confined = Confined {
            network_of: Some(&network.holder.name),
            env: app
                .port_env
                .iter()
                .map(|var| format!("{var}={inside}"))
                .collect(),
            no_healthcheck: true,
            ..Confined::default()
        };
        let purpose = format!("{}-dev", app.name);
        let container = TempContainer::run(ctx, checkout, id, &purpose, &confined, &[])?;
        let name = container.name.clone();
        let addr = host.map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
        let probe = &app.probes[0];
        // Up once the first probe answers with its status: the body is what the edit may change.
        let healthy = match addr {
            Some(addr) => {
                let accept = |status, _: &str| probe.answers(status);
                http::wait_for(&addr.to_string(), &probe.path, accept, HEALTHY_WITHIN)
                    .then_some(())
                    .with_context(|| {
                        let status = probe.status.map_or("at all".into(), |s| s.to_string());
                        format!("GET {} did not answer {status}", probe.path)
                    })
            }
            None => smoke::wait_healthy(ctx, &name, id, app, None, Instant::now()).map(drop),
        };
        healthy.map_err(|e| {
            anyhow::anyhow!("{e:#}; its log:\n{}", smoke::container_log(ctx, &name))
        })?;
        Ok(Serving {
            id: id.to_string(),
            slot,
            container,
            addr,
            _logs: stream_log(ctx, &name)?,
        })
    }

    /// Stops the container with SIGTERM (the exit code the contract expects, else said). Then it
    /// is removed.
    /// What happened: an exit code the contract does not expect is said, not an error.
    fn stop(self, ctx: &Ctx, app: &App) -> Result<String> {
        let name = &self.container.name;
        match smoke::stop(ctx, name, app.stop_exit) {
            Ok(what) => Ok(what),
            Err(e) if ProcessError::of(&e).is_some() => Err(e),
            Err(e) => {
                eprintln!("dev: {name}: {e:#}");
                Ok(format!("{e:#}"))
            }
        }
    }
}

/// `docker logs -f`, each line printed with the time (UTC) and the container's name.
fn stream_log(ctx: &Ctx, name: &str) -> Result<crate::infra::process::Running> {
    let (reader, writer) = os_pipe::pipe().context("making a pipe for the log")?;
    let running = docker::follow_logs(ctx, name, writer)?;
    let short = name.rsplit('-').next().unwrap_or(name).to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
            let time = now.get(11..23).unwrap_or(&now);
            println!("{time} {short} | {line}");
        }
    });
    Ok(running)
}

/// The URL's port, held by the xtask: each connection is forwarded to the current container.
struct Proxy {
    /// Where it listens (the one asked for, or the kernel's pick for 0).
    port: u16,
    backend: Arc<RwLock<Option<SocketAddr>>>,
    stopped: Arc<AtomicBool>,
}

impl Proxy {
    fn bind(port: u16) -> Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| {
            format!("listening on 127.0.0.1:{port} (in use? pass --port with a free one)")
        })?;
        let port = listener.local_addr()?.port();
        let backend = Arc::new(RwLock::new(None));
        let stopped = Arc::new(AtomicBool::new(false));
        let (to, stop) = (Arc::clone(&backend), Arc::clone(&stopped));
        // Blocked in accept until a client comes (`stop` connects once to end it).
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let target = *to.read().unwrap_or_else(|e| e.into_inner());
                        std::thread::spawn(move || forward(client, target));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Ok(Proxy {
            port,
            backend,
            stopped,
        })
    }

    /// New connections go to `addr` from now on.
    fn route(&self, addr: Option<SocketAddr>) {
        *self.backend.write().unwrap_or_else(|e| e.into_inner()) = addr;
    }

    /// No new connections: the port closes.
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.route(None);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies bytes both ways between `client` and `target` until both sides are done, in this one
/// thread: poll(2) says which side has bytes or has closed (a request costs a thread less than a
/// thread per direction).
fn forward(client: TcpStream, target: Option<SocketAddr>) {
    use std::{io::Read, io::Write, os::fd::AsRawFd};
    let Some(target) = target else { return };
    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
        return;
    };
    let mut sides = [client, server];
    let mut fds = sides.each_ref().map(|s| libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let mut buf = [0u8; 16 * 1024];
    // A side's fd is set to -1 (which poll skips) once it has no more to send.
    while fds.iter().any(|f| f.fd >= 0) {
        // SAFETY: `fds` is an array of two initialised pollfd structs, alive across the call,
        // and its length is what is passed.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        for (from, fd) in fds.iter_mut().enumerate() {
            if fd.fd < 0 || fd.revents == 0 {
                continue;
            }
            let [a, b] = &mut sides;
            let (reader, writer) = if from == 0 { (a, b) } else { (b, a) };
            match reader.read(&mut buf) {
                Ok(n) if n > 0 => {
                    if writer.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                _ => {
                    // This side is done: the other side hears it, and may still answer.
                    let _ = writer.shutdown(Shutdown::Write);
                    fd.fd = -1;
                }
            }
        }
    }
}

/// What changed in one burst of saves, and when the first came.
struct Changed {
    at: Instant,
    files: Vec<PathBuf>,
}

impl Changed {
    fn names(&self) -> String {
        let mut names: Vec<String> = self
            .files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names.dedup();
        names.join(", ")
    }
}

/// Changes to the app's sources and dependency files (not vendor/, not editors' scratch files).
struct Watch {
    events: mpsc::Receiver<watch::Event>,
    /// The app's extra files (the contract's `files`), as paths: the image ships them too.
    shipped: Vec<PathBuf>,
}

impl Watch {
    fn start(dir: &Utf8Path, files: &[String]) -> Result<Watch> {
        let events = watch::start(dir.as_std_path()).context("starting to watch for changes")?;
        Ok(Watch {
            events,
            shipped: files
                .iter()
                .map(|f| dir.join(f).into_std_path_buf())
                .collect(),
        })
    }

    /// The next burst of relevant changes; None once a signal came.
    fn next_burst(&self, ctx: &Ctx) -> Option<Changed> {
        let mut burst: Option<Changed> = None;
        let mut quiet = QUIET;
        loop {
            if ctx.signalled() {
                return None;
            }
            let wait = if burst.is_some() {
                quiet
            } else {
                Duration::from_millis(100)
            };
            match self.events.recv_timeout(wait) {
                Ok(event) => {
                    if !relevant(&event.path, &self.shipped) {
                        continue;
                    }
                    quiet = if event.saved { SAVED } else { QUIET };
                    burst
                        .get_or_insert_with(|| Changed {
                            at: Instant::now(),
                            files: Vec::new(),
                        })
                        .files
                        .push(event.path);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if burst.is_some() {
                        return burst;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

/// A file whose change makes a new build: Go sources and the dependency files, outside vendor/,
/// and what the image ships of the app's own (`shipped`); no editor's swap or backup file.
fn relevant(path: &std::path::Path, shipped: &[PathBuf]) -> bool {
    if path.components().any(|c| c.as_os_str() == "vendor") {
        return false;
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let scratch = name.starts_with('.') || name.ends_with('~') || name.starts_with("#");
    !scratch
        && (name.ends_with(".go")
            || ["glide.yaml", "glide.lock", "go.mod", "go.sum"].contains(&name)
            || shipped.iter().any(|s| path.starts_with(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_and_dependency_files_count() {
        for yes in [
            "go-app/main.go",
            "go-app/glide.yaml",
            "go-app/go.mod",
            "go-app/x/y.go",
        ] {
            assert!(relevant(std::path::Path::new(yes), &[]), "{yes}");
        }
        for no in [
            "go-app/vendor/github.com/a/b.go",
            "go-app/.main.go.swp",
            "go-app/main.go~",
            "go-app/#main.go#",
            "go-app/4913",
            "go-app/README.md",
        ] {
            assert!(!relevant(std::path::Path::new(no), &[]), "{no}");
        }
        let shipped = [PathBuf::from("go-app/templates")];
        assert!(relevant(
            std::path::Path::new("go-app/templates/a.html"),
            &shipped
        ));
        assert!(!relevant(
            std::path::Path::new("go-app/templates/.a.html.swp"),
            &shipped
        ));
        assert!(!relevant(
            std::path::Path::new("go-app/docs/a.html"),
            &shipped
        ));
    }
}
