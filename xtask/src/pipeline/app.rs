//! The app's contract: what the xtask needs to know about the Go service in go-app/ (its name,
//! main packages, binaries, port, environment, health check, smoke probes, exit on SIGTERM, extra
//! files), in one value. Read from `app.json` at the workspace root; every field left out is
//! detected from the Go code, so a conventional app needs no file at all. Every step, the
//! Dockerfiles (as build args and rendered settings) and the OCI writer take it from here.

use std::{collections::BTreeMap, fs};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use jzon::{object, JsonValue};

use crate::domain::ImageRef;

/// The contract's file, at the workspace root.
pub const FILE: &str = "app.json";
/// Where the image keeps the app's extra files; also its working directory when there are any.
pub const DATA_DIR: &str = "srv";
/// Names of directories read at run time that are shipped when present and no file says
/// otherwise (ko's `kodata/` among them).
const CONVENTIONAL_FILES: [&str; 5] = ["templates", "static", "public", "assets", "kodata"];
/// What a Go program without a SIGTERM handler gives when stopped: its runtime re-raises the
/// signal with the default action, and the engine reports death by SIGTERM (128 + 15).
pub const GO_UNHANDLED_SIGTERM_EXIT: i32 = 143;
/// The HTTP health check's binary at the image's root (`"health": {"http": PATH}`): ours, built
/// from `docker/healthcheck/` with the app's Go, for images without a shell or curl.
pub const HEALTHCHECK_BINARY: &str = "healthcheck";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// The image's name and title, the SBOM's name.
    pub name: String,
    /// GOPATH mode: the app's import path under `$GOPATH/src` (glide.yaml's `package`, else the
    /// name).
    pub import_path: String,
    /// The main packages built, the first one the image's entrypoint.
    pub mains: Vec<Main>,
    /// The port the app answers on in the container.
    pub port: u16,
    /// The variable the app reads its port from (`PORT`), if any: `dev` swaps containers
    /// without a gap only when the port can be set.
    pub port_env: Option<String>,
    /// The image's environment, besides PATH.
    pub env: BTreeMap<String, String>,
    pub health: Health,
    /// What the smoke test and `dev` ask; the first says the app is ready.
    pub probes: Vec<Probe>,
    /// The exit code expected after SIGTERM.
    pub stop_exit: i32,
    /// Files and directories of go-app/ shipped under `/srv` (the working directory then).
    pub files: Vec<String>,
}

/// A main package: its directory in go-app/ (`.` for the root) and the binary's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Main {
    pub dir: String,
    pub binary: String,
}

/// The health check the image declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// None: the app offers no probe (the default for an app without a `-healthcheck` flag).
    None,
    /// The app's own binary with these arguments (`["-healthcheck"]`): no shell, no curl.
    Command(Vec<String>),
    /// A GET of this path on the app's port by our `healthcheck` binary, shipped beside the
    /// app's: healthy on a 2xx or 3xx answer.
    Http(String),
}

/// One HTTP question: the path, and the answer expected (`status` None: any HTTP answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub path: String,
    pub status: Option<u16>,
    pub body: Option<String>,
}

impl Probe {
    /// Whether an answer is the one expected.
    pub fn accepts(&self, status: u16, body: &str) -> bool {
        status != 0
            && self.status.is_none_or(|s| s == status)
            && self.body.as_deref().is_none_or(|b| b == body)
    }

    /// Whether an answer says the app is up, whatever it says (`dev`: an edit changes answers).
    pub fn answers(&self, status: u16) -> bool {
        status != 0 && self.status.is_none_or(|s| s == status)
    }

    /// What it expects, for messages: `200 "Hello, x!\n"`, `any HTTP answer`.
    pub fn expected(&self) -> String {
        match (self.status, &self.body) {
            (None, None) => "any HTTP answer".into(),
            (Some(s), None) => s.to_string(),
            (status, Some(body)) => format!(
                "{} {body:?}",
                status.map_or("any status,".into(), |s| s.to_string())
            ),
        }
    }
}

impl App {
    /// The contract of the checkout at `root`, for the one image it makes: `app.json` where there
    /// is one, the rest detected. With `images`, `only` names the one (`--app`).
    pub fn load(root: &Utf8Path, only: Option<&str>) -> Result<App> {
        one(&App::load_all(root, only)?, "this").cloned()
    }

    /// Every image's contract: one, or one per entry of `images` (only `only`'s, when given).
    pub fn load_all(root: &Utf8Path, only: Option<&str>) -> Result<Vec<App>> {
        let file = file(root);
        let text = match fs::read_to_string(&file) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {file}")),
        };
        let json = match &text {
            Some(text) => jzon::parse(text).with_context(|| {
                format!("{file} is not valid JSON: fix it, or remove it and run `cargo xtask init`")
            })?,
            None => JsonValue::new_object(),
        };
        let go_app = root.join("go-app");
        let apps = Code::read(&go_app)
            .and_then(|code| App::images(&go_app, &code, &json))
            .with_context(|| {
                format!("reading the app's contract ({file}, and go-app/'s Go code)")
            })?;
        match only {
            None => Ok(apps),
            Some(only) => match apps.iter().find(|a| a.name == only) {
                Some(app) => Ok(vec![app.clone()]),
                None => bail!(
                    "--app {only}: {FILE} makes no such image (it makes {})",
                    names(&apps)
                ),
            },
        }
    }

    /// The images `json` describes: with `images`, one per entry, named by its key, its fields
    /// over the file's others; else one.
    fn images(go_app: &Utf8Path, code: &Code, json: &JsonValue) -> Result<Vec<App>> {
        let JsonValue::Object(images) = &json["images"] else {
            if json.has_key("images") {
                bail!("{FILE}: `images` must be an object: image name → its fields");
            }
            return Ok(vec![App::from_code(go_app, code, json)?]);
        };
        if images.is_empty() || json.has_key("name") {
            bail!("{FILE}: `images` names each image by its key, at least one, and then there is no `name`");
        }
        let mut shared = json.clone();
        shared.remove("images");
        images
            .iter()
            .map(|(name, fields)| {
                if !fields.is_object() || fields.has_key("name") || fields.has_key("images") {
                    bail!("{FILE}: `images.{name}` must be an object of the contract's fields besides `name` and `images`");
                }
                let mut json = shared.clone();
                for (key, value) in fields.entries() {
                    json[key] = value.clone();
                }
                json["name"] = name.into();
                App::from_code(go_app, code, &json)
                    .with_context(|| format!("{FILE}: image `{name}`"))
            })
            .collect()
    }

    /// What `init` writes: the contract as `load` reads it, with every main package where the
    /// code has several and no file chose (one image with all of them); and whether the file is
    /// there already.
    pub fn for_init(root: &Utf8Path) -> Result<(Vec<App>, bool)> {
        if file(root).exists() {
            return Ok((App::load_all(root, None)?, true));
        }
        let go_app = root.join("go-app");
        let code = Code::read(&go_app)?;
        let json = match code.mains.as_slice() {
            [_, _, ..] => object! { "main": code.mains.clone() },
            _ => JsonValue::new_object(),
        };
        Ok((vec![App::from_code(&go_app, &code, &json)?], false))
    }

    /// Every binary of `apps` in one contract, the first's settings else (what `dist` builds and
    /// `audit` checks: each image takes its own from there).
    /// Two images may ship one main package, under one name or two; two main packages under one
    /// name would be one file in dist/: refused.
    pub fn union(apps: &[App]) -> Result<App> {
        let mut all = apps[0].clone();
        for app in &apps[1..] {
            for main in &app.mains {
                if let Some(other) = all
                    .mains
                    .iter()
                    .find(|m| m.binary == main.binary && m.dir != main.dir)
                {
                    bail!(
                        "{FILE}: the images ship two main packages ({}, {}) as one binary `{}`: \
                         set `binary` in one of them",
                        other.dir,
                        main.dir,
                        main.binary
                    );
                }
                if !all.mains.contains(main) {
                    all.mains.push(main.clone());
                }
            }
            if app.ships_healthcheck() && !all.ships_healthcheck() {
                all.health = app.health.clone();
            }
        }
        Ok(all)
    }

    /// The `go build`s that make the binaries: the main packages that Go names as the contract
    /// does (by their directory, `-o DIR/`) in one, each other one alone.
    pub fn builds(&self) -> Vec<App> {
        if self.mains.len() < 2 {
            return vec![self.clone()];
        }
        let named_by_go = |m: &Main| m.dir != "." && m.dir.rsplit('/').next() == Some(&m.binary);
        let (together, alone): (Vec<Main>, Vec<Main>) =
            self.mains.iter().cloned().partition(named_by_go);
        let one = |mains: Vec<Main>| App {
            mains,
            ..self.clone()
        };
        let mut builds: Vec<App> = Vec::new();
        if !together.is_empty() {
            builds.push(one(together));
        }
        builds.extend(alone.into_iter().map(|m| one(vec![m])));
        builds
    }

    /// Whether the image serves HTTP: probes to ask (a worker has none).
    pub fn serves_http(&self) -> bool {
        !self.probes.is_empty()
    }

    /// A health check to suggest: none is declared, yet a probe asks a path that answers 200
    /// (the detected `/healthz`), which our HTTP check could ask.
    pub fn suggested_health(&self) -> Option<&str> {
        let probe = self.probes.iter().find(|p| p.status == Some(200))?;
        matches!(self.health, Health::None).then_some(probe.path.as_str())
    }

    /// The contract from `json`, missing fields taken from `code` (read from `go_app`).
    fn from_code(go_app: &Utf8Path, code: &Code, json: &JsonValue) -> Result<App> {
        if !json.is_object() {
            bail!("{FILE} must hold one JSON object");
        }
        let known = [
            "name",
            "images",
            "main",
            "binary",
            "port",
            "port_env",
            "env",
            "health",
            "probes",
            "stop_exit",
            "files",
        ];
        for (key, _) in json.entries() {
            if !known.contains(&key) {
                bail!(
                    "{FILE}: unknown field `{key}`; the fields are {}",
                    known.join(", ")
                );
            }
        }
        let name = match json["name"].as_str() {
            Some(name) => name.to_string(),
            None => code.name.clone(),
        };
        check_name(&name)?;
        let import_path = code.glide_package.clone().unwrap_or_else(|| name.clone());
        let dirs: Vec<String> = match &json["main"] {
            JsonValue::Null => match code.mains.as_slice() {
                [] => bail!(
                    "no main package in go-app/ (no directory with a `package main` Go file, \
                     vendor/ and testdata/ aside): put the service's code in go-app/"
                ),
                [one] => vec![one.clone()],
                several => bail!(
                    "go-app/ has {} main packages ({}): say which to build in {FILE}, e.g. \
                     {{\"main\": [\"{}\"]}} (several: one image with all of them, the first its \
                     entrypoint); `cargo xtask init` writes the file",
                    several.len(),
                    several.join(", "),
                    several[0]
                ),
            },
            value => strings(value, "main")?,
        };
        if dirs.is_empty() {
            bail!("{FILE}: `main` names no package");
        }
        for dir in &dirs {
            if !code.mains.contains(&clean_dir(dir)) {
                bail!(
                    "{FILE}: `main` names {dir}, which is not a main package in go-app/ (found: {})",
                    code.mains.join(", ")
                );
            }
        }
        let mains = mains(&name, &dirs, json["binary"].as_str())?;
        // Detected from the entrypoint's sources: the program the image runs.
        let facts = Facts::of(&code.sources[&mains[0].dir]);
        let port = match &json["port"] {
            JsonValue::Null => facts.port.unwrap_or(8080),
            value => value
                .as_u16()
                .filter(|p| *p > 0)
                .with_context(|| format!("{FILE}: `port` must be a number from 1 to 65535"))?,
        };
        let port_env = match &json["port_env"] {
            JsonValue::Null if json.has_key("port_env") => None,
            JsonValue::Null => facts.reads_port.then(|| "PORT".to_string()),
            value => Some(
                value
                    .as_str()
                    .filter(|v| is_env_name(v))
                    .with_context(|| {
                        format!("{FILE}: `port_env` must be a variable's name, or null")
                    })?
                    .to_string(),
            ),
        };
        let mut env = BTreeMap::new();
        if let (Some(var), None) = (&port_env, facts.port) {
            // The app reads its port and has none of its own: the image sets it.
            env.insert(var.clone(), port.to_string());
        }
        match &json["env"] {
            JsonValue::Null => {}
            JsonValue::Object(object) => {
                for (key, value) in object.iter() {
                    let value = value
                        .as_str()
                        .with_context(|| format!("{FILE}: `env.{key}` must be a string"))?;
                    if !is_env_name(key) {
                        bail!("{FILE}: `env` key `{key}` is not a variable's name");
                    }
                    env.insert(key.to_string(), value.to_string());
                }
            }
            _ => bail!("{FILE}: `env` must be an object of strings"),
        }
        let health = match &json["health"] {
            JsonValue::Null if facts.healthcheck_flag => {
                Health::Command(vec!["-healthcheck".into()])
            }
            JsonValue::Null => Health::None,
            value if value.as_str() == Some("none") => Health::None,
            value => match (&value["command"], value["http"].as_str()) {
                (JsonValue::Null, Some(path)) if is_path(path) => Health::Http(path.to_string()),
                (command, None) if !command.is_null() => {
                    Health::Command(strings(command, "health.command")?)
                }
                _ => bail!(
                    "{FILE}: `health` must be \"none\", {{\"http\": \"/PATH\"}} (a GET on the app's \
                     port, healthy on 2xx or 3xx) or {{\"command\": [ARGS…]}} (the entrypoint \
                     binary run with ARGS, exit 0 when healthy)"
                ),
            },
        };
        let probes = match &json["probes"] {
            JsonValue::Null if facts.healthz => vec![Probe {
                path: "/healthz".into(),
                status: Some(200),
                body: None,
            }],
            JsonValue::Null => vec![Probe {
                path: "/".into(),
                status: None,
                body: None,
            }],
            JsonValue::Array(items) => items.iter().map(probe).collect::<Result<_>>()?,
            _ => bail!("{FILE}: `probes` must be a list"),
        };
        let stop_exit = match &json["stop_exit"] {
            JsonValue::Null if facts.handles_sigterm => 0,
            JsonValue::Null => GO_UNHANDLED_SIGTERM_EXIT,
            value => value
                .as_i32()
                .with_context(|| format!("{FILE}: `stop_exit` must be an exit code"))?,
        };
        let files = match &json["files"] {
            JsonValue::Null => code.files.clone(),
            value => strings(value, "files")?,
        };
        for file in &files {
            check_file(go_app, file)?;
        }
        Ok(App {
            name,
            import_path,
            mains,
            port,
            port_env,
            env,
            health,
            probes,
            stop_exit,
            files,
        })
    }

    /// The image's entrypoint binary.
    pub fn entrypoint(&self) -> &str {
        &self.mains[0].binary
    }

    /// The contract once per main package, each with that one only (a build for a platform:
    /// `go build -o DIR/` cannot name the binaries for it).
    pub fn each_main(&self) -> impl Iterator<Item = App> + '_ {
        self.mains.iter().map(|m| App {
            mains: vec![m.clone()],
            ..self.clone()
        })
    }

    /// The binaries' names.
    pub fn binaries(&self) -> impl Iterator<Item = &str> {
        self.mains.iter().map(|m| m.binary.as_str())
    }

    /// Whether the image ships our HTTP health check.
    pub fn ships_healthcheck(&self) -> bool {
        matches!(self.health, Health::Http(_))
    }

    /// Every binary the image ships: the app's, and the HTTP health check's when it has one.
    pub fn shipped_binaries(&self) -> impl Iterator<Item = &str> {
        let probe = self.ships_healthcheck().then_some(HEALTHCHECK_BINARY);
        self.binaries().chain(probe)
    }

    /// The default image tag: `NAME:latest`.
    pub fn default_tag(&self) -> ImageRef {
        ImageRef::latest(&self.name)
            .expect("an app's name is checked as an image's when the contract is read")
    }

    /// The image's environment as `K=V` lines, sorted.
    pub fn env_lines(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The health check's command inside the image (`root`: where the binary is, `/` or `/out/`).
    pub fn health_command(&self, root: &str) -> Option<Vec<String>> {
        match &self.health {
            Health::None => None,
            Health::Command(args) => Some(
                std::iter::once(format!("{root}{}", self.entrypoint()))
                    .chain(args.iter().cloned())
                    .collect(),
            ),
            Health::Http(path) => Some(
                [
                    format!("{root}{HEALTHCHECK_BINARY}"),
                    format!("http://127.0.0.1:{}{path}", self.port),
                ]
                .into_iter()
                .chain(self.port_env.clone())
                .collect(),
            ),
        }
    }

    /// The image's working directory: where the extra files are, else `/`.
    pub fn workdir(&self) -> String {
        if self.files.is_empty() {
            "/".into()
        } else {
            format!("/{DATA_DIR}")
        }
    }

    /// The contract as `app.json` holds it, every field spelled (what `init` writes).
    pub fn to_json(&self) -> JsonValue {
        let mut env = JsonValue::new_object();
        for (k, v) in &self.env {
            env[k.as_str()] = v.as_str().into();
        }
        let health = match &self.health {
            Health::None => JsonValue::from("none"),
            Health::Command(args) => object! { "command": args.clone() },
            Health::Http(path) => object! { "http": path.as_str() },
        };
        let probes: Vec<JsonValue> = self
            .probes
            .iter()
            .map(|p| {
                let mut o = object! { "path": p.path.as_str() };
                if let Some(s) = p.status {
                    o["status"] = s.into();
                }
                if let Some(b) = &p.body {
                    o["body"] = b.as_str().into();
                }
                o
            })
            .collect();
        let mut json = object! {
            "name": self.name.as_str(),
            "main": self.mains.iter().map(|m| m.dir.as_str()).collect::<Vec<_>>(),
        };
        if let [one] = self.mains.as_slice() {
            json["binary"] = one.binary.as_str().into();
        }
        json["port"] = self.port.into();
        json["port_env"] = self.port_env.as_deref().into();
        json["env"] = env;
        json["health"] = health;
        json["probes"] = probes.into();
        json["stop_exit"] = self.stop_exit.into();
        json["files"] = self.files.clone().into();
        json
    }
}

/// The one image of `images` that `what` (a command) takes: an error naming them when several.
pub fn one<'a>(images: &'a [App], what: &str) -> Result<&'a App> {
    match images {
        [one] => Ok(one),
        several => bail!(
            "{FILE} makes {} images ({}): {what} takes one; name it with --app NAME",
            several.len(),
            names(several)
        ),
    }
}

/// The images' names, for messages: `api, worker`.
fn names(apps: &[App]) -> String {
    apps.iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `images` as `app.json` holds them, every field spelled (what `init` writes): one image's
/// fields, or several under `images`.
pub fn to_json(images: &[App]) -> JsonValue {
    match images {
        [one] => one.to_json(),
        several => {
            let mut each = JsonValue::new_object();
            for app in several {
                let mut fields = app.to_json();
                fields.remove("name");
                each[app.name.as_str()] = fields;
            }
            object! { "images": each }
        }
    }
}

/// The binaries for `dirs`: one main gets `binary` (default: `cmd/NAME`'s NAME, else the app's
/// name); several are named by their directories (as `go build -o DIR/` names them).
fn mains(name: &str, dirs: &[String], binary: Option<&str>) -> Result<Vec<Main>> {
    let base = |dir: &str| dir.rsplit('/').next().unwrap_or(dir).to_string();
    let mains: Vec<Main> = match dirs {
        [dir] => {
            let dir = clean_dir(dir);
            let default = if dir.starts_with("cmd/") {
                base(&dir)
            } else {
                name.to_string()
            };
            vec![Main {
                binary: binary.map_or(default, str::to_string),
                dir,
            }]
        }
        _ => {
            if binary.is_some() {
                bail!("{FILE}: `binary` names the one main package's binary; several are named by their directories");
            }
            dirs.iter()
                .map(|d| {
                    let dir = clean_dir(d);
                    Main {
                        binary: base(&dir),
                        dir,
                    }
                })
                .collect()
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    for m in &mains {
        let ok = !m.binary.is_empty()
            && m.binary
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            && !m.binary.starts_with('.')
            && !["etc", DATA_DIR, "SHA256SUMS", HEALTHCHECK_BINARY].contains(&m.binary.as_str());
        if !ok {
            bail!(
                "the binary name `{}` (of {}) cannot be a file at the image's root: set `binary` \
                 in {FILE} to letters, digits and `._-`",
                m.binary,
                m.dir
            );
        }
        if !seen.insert(m.binary.clone()) {
            bail!(
                "two main packages make the binary `{}`: name them apart in {FILE}",
                m.binary
            );
        }
    }
    Ok(mains)
}

#[cfg(test)]
impl App {
    /// The demo app's contract (go-app/ and app.json), for unit tests.
    pub fn demo() -> App {
        App {
            name: "go-docker-prod".into(),
            import_path: "go-docker-prod".into(),
            mains: vec![Main {
                dir: ".".into(),
                binary: "main".into(),
            }],
            port: 8080,
            port_env: Some("PORT".into()),
            env: BTreeMap::new(),
            health: Health::Command(vec!["-healthcheck".into()]),
            probes: vec![Probe {
                path: "/healthz".into(),
                status: Some(200),
                body: None,
            }],
            stop_exit: 0,
            files: Vec::new(),
        }
    }
}

/// `./cmd/api/` → `cmd/api`; `` and `./` → `.`.
fn clean_dir(dir: &str) -> String {
    let d = dir.trim_start_matches("./").trim_end_matches('/');
    if d.is_empty() {
        ".".into()
    } else {
        d.to_string()
    }
}

fn strings(value: &JsonValue, field: &str) -> Result<Vec<String>> {
    let items: Option<Vec<String>> = match value {
        JsonValue::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => None,
    };
    items.with_context(|| format!("{FILE}: `{field}` must be a list of strings"))
}

fn probe(value: &JsonValue) -> Result<Probe> {
    let path = value["path"]
        .as_str()
        .filter(|p| is_path(p))
        .with_context(|| format!("{FILE}: each probe needs a `path` that starts with `/`"))?;
    let status = match &value["status"] {
        JsonValue::Null => None,
        s => Some(
            s.as_u16()
                .filter(|s| (100..600).contains(s))
                .with_context(|| {
                    format!("{FILE}: probe {path}: `status` must be an HTTP status")
                })?,
        ),
    };
    let body = match &value["body"] {
        JsonValue::Null => None,
        b => Some(
            b.as_str()
                .with_context(|| format!("{FILE}: probe {path}: `body` must be a string"))?
                .to_string(),
        ),
    };
    Ok(Probe {
        path: path.to_string(),
        status,
        body,
    })
}

/// A name image references take: one path component, as the engine's grammar has it.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.contains(['/', ':', '@'])
        && format!("{name}:latest")
            .parse::<crate::domain::ImageRef>()
            .is_ok();
    if !ok {
        bail!(
            "the app's name `{name}` cannot name an image: set `name` in {FILE} to lower-case \
             letters and digits, joined by `.`, `_`, `__` or `-`"
        );
    }
    Ok(())
}

fn check_file(go_app: &Utf8Path, file: &str) -> Result<()> {
    let bad = file.is_empty()
        || file.starts_with('/')
        || file.contains('/')
        || file.starts_with('.')
        || ["vendor", "go.mod", "go.sum", "glide.yaml", "glide.lock"].contains(&file);
    if bad {
        bail!(
            "{FILE}: `files` entry `{file}` must be a file or directory at the top of go-app/ \
             (not vendor/, not a dotfile)"
        );
    }
    let path = go_app.join(file);
    let meta = fs::symlink_metadata(&path)
        .with_context(|| format!("{FILE}: `files` names {path}, which is not there"))?;
    if meta.file_type().is_symlink() {
        bail!("{FILE}: `files` entry {path} is a symbolic link: name what it points to");
    }
    Ok(())
}

/// An HTTP request's path: `/`, then no white space.
fn is_path(path: &str) -> bool {
    path.starts_with('/') && !path.contains(char::is_whitespace)
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What the Go code says, read without running Go: the main packages (a directory with a
/// non-test `package main` file), and from their sources the port, whether `PORT` is read, a
/// `-healthcheck` flag, a `/healthz` route and a SIGTERM handler.
#[derive(Debug, Default)]
struct Code {
    name: String,
    glide_package: Option<String>,
    mains: Vec<String>,
    /// Each main package's non-test sources, by directory.
    sources: BTreeMap<String, String>,
    files: Vec<String>,
}

/// What one main package's sources say: what the program that runs does.
#[derive(Debug, Default)]
struct Facts {
    port: Option<u16>,
    reads_port: bool,
    healthcheck_flag: bool,
    healthz: bool,
    handles_sigterm: bool,
}

impl Facts {
    fn of(sources: &str) -> Facts {
        Facts {
            port: listen_port(sources),
            reads_port: sources.contains("Getenv(\"PORT\")")
                || sources.contains("LookupEnv(\"PORT\")"),
            healthcheck_flag: sources.contains("(\"healthcheck\""),
            healthz: sources.contains("\"/healthz\""),
            handles_sigterm: sources.contains("signal.Notify"),
        }
    }
}

impl Code {
    fn read(go_app: &Utf8Path) -> Result<Code> {
        let mut code = Code::default();
        let module = fs::read_to_string(go_app.join("go.mod"))
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.trim().strip_prefix("module "))
                    .map(|p| p.trim().trim_matches('"').to_string())
            });
        code.glide_package = glide_package(go_app);
        // The name: the last element of the module or import path, as images take it.
        let path = module
            .as_deref()
            .or(code.glide_package.as_deref())
            .unwrap_or("app");
        let last = path
            .rsplit('/')
            .find(|s| !s.is_empty() && !is_major(s))
            .unwrap_or("app");
        code.name = image_name(last);
        walk(go_app, Utf8Path::new("."), &mut code.sources)?;
        code.mains = code.sources.keys().cloned().collect();
        code.files = CONVENTIONAL_FILES
            .iter()
            .filter(|f| go_app.join(f).is_dir())
            .map(|f| f.to_string())
            .collect();
        Ok(code)
    }
}

/// glide.yaml's `package` (the app's GOPATH import path), unless empty: the tutorial's says
/// `package: ""`.
pub fn glide_package(go_app: &Utf8Path) -> Option<String> {
    fs::read_to_string(go_app.join("glide.yaml"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("package:"))
        .map(|p| p.trim().trim_matches(['"', '\'']).to_string())
        .filter(|p| !p.is_empty() && p != ".")
}

/// `v2`, `v3`: a module path's major version, not its name.
fn is_major(s: &str) -> bool {
    s.len() > 1 && s.starts_with('v') && s[1..].chars().all(|c| c.is_ascii_digit())
}

/// `My_App` → `my_app`; characters images cannot take become `-`.
fn image_name(raw: &str) -> String {
    let name: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if check_name(&name).is_ok() {
        name
    } else {
        "app".into()
    }
}

/// Collects the main packages under `dir` (relative `rel`) with their sources into `mains`.
fn walk(root: &Utf8Path, rel: &Utf8Path, mains: &mut BTreeMap<String, String>) -> Result<()> {
    let dir = root.join(rel);
    // Names that are not UTF-8 are no Go package's or source's: passed over.
    let mut entries: Vec<_> = dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by(|a, b| a.file_name().cmp(b.file_name()));
    let mut main_sources = String::new();
    let mut is_main = false;
    for entry in entries {
        let name = entry.file_name();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            let skip = name.starts_with(['.', '_']) || ["vendor", "testdata"].contains(&name);
            if !skip {
                walk(root, &rel.join(name), mains)?;
            }
        } else if kind.is_file() && name.ends_with(".go") && !name.ends_with("_test.go") {
            let Ok(text) = fs::read_to_string(entry.path()) else {
                continue;
            };
            if package_clause(&text) == Some("main") {
                is_main = true;
                main_sources.push_str(&text);
            }
        }
    }
    if is_main {
        let rel = rel.as_str().trim_start_matches("./");
        let dir = if rel.is_empty() || rel == "." {
            ".".into()
        } else {
            rel.to_string()
        };
        mains.insert(dir, main_sources);
    }
    Ok(())
}

/// The package a Go file declares: the first line that starts with `package `, comments aside.
fn package_clause(text: &str) -> Option<&str> {
    let mut in_block = false;
    for line in text.lines() {
        let line = line.trim();
        if in_block {
            if line.contains("*/") {
                in_block = false;
            }
            continue;
        }
        if line.starts_with("/*") && !line.contains("*/") {
            in_block = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("package ") {
            return rest.split_whitespace().next();
        }
    }
    None
}

/// The port of a `":8080"`-like string literal (the address a server listens on), if any.
fn listen_port(sources: &str) -> Option<u16> {
    sources
        .match_indices("\":")
        .find_map(|(i, _)| {
            let digits: String = sources[i + 2..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let closed = sources[i + 2 + digits.len()..].starts_with('"');
            (closed && !digits.is_empty())
                .then(|| digits.parse().ok())
                .flatten()
        })
        .or_else(|| {
            // `defaultPort = "8080"`, `port := "8080"`.
            sources.lines().find_map(|l| {
                let l = l.to_ascii_lowercase();
                if !l.contains("port") {
                    return None;
                }
                let (_, rest) = l.split_once('"')?;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                (rest[digits.len()..].starts_with('"') && digits.len() >= 2)
                    .then(|| digits.parse().ok())?
            })
        })
}

/// The contract file's path in the checkout at `root`.
pub fn file(root: &Utf8Path) -> Utf8PathBuf {
    root.join(FILE)
}

/// The app's extra files as the image holds them, in a fixed order: `app/`, then each entry of
/// `files` (read from `go_app`) and what a directory holds, sorted; each with the file it is read
/// from (None: a directory). Empty when there are none.
pub fn data_files(go_app: &Utf8Path, app: &App) -> Result<Vec<crate::pipeline::oci::DataFile>> {
    let mut out = Vec::new();
    if app.files.is_empty() {
        return Ok(out);
    }
    out.push((DATA_DIR.to_string(), None));
    let mut files = app.files.clone();
    files.sort();
    for file in files {
        add_data(&go_app.join(&file), &format!("{DATA_DIR}/{file}"), &mut out)?;
    }
    Ok(out)
}

fn add_data(
    from: &Utf8Path,
    to: &str,
    out: &mut Vec<crate::pipeline::oci::DataFile>,
) -> Result<()> {
    let meta = fs::symlink_metadata(from).with_context(|| format!("reading {from}"))?;
    if meta.is_file() {
        out.push((to.to_string(), Some(from.to_path_buf())));
        return Ok(());
    }
    if !meta.is_dir() {
        bail!("{from} is neither a file nor a directory (a link?): the image takes files and directories only");
    }
    out.push((to.to_string(), None));
    let mut names = Vec::new();
    for entry in fs::read_dir(from).with_context(|| format!("reading {from}"))? {
        let name = entry
            .with_context(|| format!("reading {from}"))?
            .file_name();
        let name = name.into_string().map_err(|n| {
            anyhow::anyhow!("{from} holds a file whose name is not UTF-8 ({n:?}): rename it")
        })?;
        names.push(name);
    }
    names.sort();
    for name in names {
        add_data(&from.join(&name), &format!("{to}/{name}"), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images_with(files: &[(&str, &str)], json: &str) -> Result<Vec<App>> {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        for (path, text) in files {
            let p = root.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        App::images(root, &Code::read(root)?, &jzon::parse(json).unwrap())
    }

    fn app_with(files: &[(&str, &str)], json: &str) -> Result<App> {
        let mut apps = images_with(files, json)?;
        assert_eq!(apps.len(), 1, "{json}");
        Ok(apps.remove(0))
    }

    const TUTORIAL: &str =
        "package main\nimport \"net/http\"\nfunc main() { http.ListenAndServe(\":8080\", nil) }\n";

    #[test]
    fn a_tutorial_app_needs_no_file() {
        let app = app_with(
            &[
                ("src/main.go", TUTORIAL),
                ("glide.yaml", "package: \"\"\nimport: []\n"),
            ],
            "{}",
        )
        .unwrap();
        assert_eq!(app.name, "app");
        assert_eq!(
            app.mains,
            [Main {
                dir: "src".into(),
                binary: "app".into()
            }]
        );
        assert_eq!((app.port, app.port_env.as_deref()), (8080, None));
        assert_eq!(app.health, Health::None);
        assert_eq!(app.stop_exit, GO_UNHANDLED_SIGTERM_EXIT);
        assert_eq!(app.probes[0].path, "/");
        assert!(app.env.is_empty());
    }

    #[test]
    fn a_modules_app_in_cmd_is_named_by_its_module() {
        let main = "package main\nimport (\"os\"; \"os/signal\")\nfunc main() { p := os.Getenv(\"PORT\"); signal.Notify(nil); _ = p }\n";
        let app = app_with(
            &[
                ("go.mod", "module example.com/team/Ping-Svc/v2\n\ngo 1.22\n"),
                ("cmd/ping/main.go", main),
                ("internal/x/x.go", "package x\n"),
            ],
            "{}",
        )
        .unwrap();
        assert_eq!(app.name, "ping-svc");
        assert_eq!(
            app.mains,
            [Main {
                dir: "cmd/ping".into(),
                binary: "ping".into()
            }]
        );
        assert_eq!(app.port_env.as_deref(), Some("PORT"));
        // It has no port of its own: the image sets the variable.
        assert_eq!(app.env_lines(), ["PORT=8080"]);
        assert_eq!(app.stop_exit, 0);
    }

    #[test]
    fn several_mains_must_be_chosen() {
        let files = [
            ("go.mod", "module m\n"),
            ("cmd/api/main.go", TUTORIAL),
            ("cmd/worker/main.go", TUTORIAL),
        ];
        let err = app_with(&files, "{}").unwrap_err().to_string();
        assert!(
            err.contains("cmd/api, cmd/worker") && err.contains("\"main\""),
            "{err}"
        );
        let app = app_with(&files, r#"{"main": ["./cmd/worker", "cmd/api/"]}"#).unwrap();
        assert_eq!(app.binaries().collect::<Vec<_>>(), ["worker", "api"]);
        assert_eq!(app.entrypoint(), "worker");
        let err = app_with(&files, r#"{"main": ["cmd/nope"]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cmd/nope"), "{err}");
    }

    #[test]
    fn images_one_per_main_each_detected_from_its_own_code() {
        let worker = "package main\nimport \"os/signal\"\nfunc main() { signal.Notify(nil) }\n";
        let files = [
            ("go.mod", "module m\n"),
            ("cmd/api/main.go", TUTORIAL),
            ("cmd/worker/main.go", worker),
        ];
        let json = r#"{"env": {"A": "1"}, "images": {
            "api": {"main": ["cmd/api"]},
            "worker": {"main": ["cmd/worker"], "probes": []}}}"#;
        let apps = images_with(&files, json).unwrap();
        let [api, worker] = apps.as_slice() else {
            panic!("{apps:?}")
        };
        assert_eq!((api.name.as_str(), api.entrypoint()), ("api", "api"));
        assert_eq!(
            (worker.name.as_str(), worker.entrypoint()),
            ("worker", "worker")
        );
        // Each from its own main package: the api has no handler, the worker has one.
        assert_eq!((api.stop_exit, worker.stop_exit), (143, 0));
        assert!(api.serves_http() && !worker.serves_http());
        assert_eq!(worker.env_lines(), ["A=1"]);
        let all = App::union(&apps).unwrap();
        assert_eq!(all.binaries().collect::<Vec<_>>(), ["api", "worker"]);
        assert_eq!(all.builds().len(), 1, "Go names both");
        // A binary named otherwise is built alone; two main packages as one name are refused.
        let renamed = r#"{"images": {"api": {"main": ["cmd/api"], "binary": "server"},
            "worker": {"main": ["cmd/worker"]}}}"#;
        let all = App::union(&images_with(&files, renamed).unwrap()).unwrap();
        let builds: Vec<Vec<String>> = all
            .builds()
            .iter()
            .map(|b| b.binaries().map(str::to_string).collect())
            .collect();
        assert_eq!(builds, [vec!["worker"], vec!["server"]]);
        let clash = r#"{"images": {"api": {"main": ["cmd/api"], "binary": "x"},
            "worker": {"main": ["cmd/worker"], "binary": "x"}}}"#;
        let err = App::union(&images_with(&files, clash).unwrap()).unwrap_err();
        assert!(format!("{err}").contains("as one binary `x`"), "{err}");
        for bad in [
            r#"{"images": {}}"#,
            r#"{"images": []}"#,
            r#"{"name": "x", "images": {"a": {}}}"#,
            r#"{"images": {"a": 1}}"#,
            r#"{"images": {"a": {"name": "b"}}}"#,
            r#"{"images": {"a": {"main": ["cmd/api"], "nope": 1}}}"#,
            r#"{"images": {"A b": {"main": ["cmd/api"]}}}"#,
        ] {
            assert!(images_with(&files, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_file_overrides_and_is_checked() {
        let files = [
            ("glide.yaml", "package: go-docker-prod\n"),
            ("main.go", TUTORIAL),
            ("templates/a.html", "x"),
        ];
        let app = app_with(
            &files,
            r#"{"binary": "main", "health": {"command": ["-healthcheck"]}, "env": {"GIN_MODE": "release"},
                "probes": [{"path": "/hello/x", "status": 200, "body": "Hello, x!\n"}], "stop_exit": 0}"#,
        )
        .unwrap();
        assert_eq!(app.name, "go-docker-prod");
        assert_eq!(app.import_path, "go-docker-prod");
        assert_eq!(
            app.health_command("/"),
            Some(vec!["/main".to_string(), "-healthcheck".into()])
        );
        assert_eq!(app.files, ["templates"]);
        assert_eq!(app.workdir(), "/srv");
        assert!(app.probes[0].accepts(200, "Hello, x!\n") && !app.probes[0].accepts(200, "Hello"));
        for bad in [
            r#"{"prot": 1}"#,
            r#"{"port": 0}"#,
            r#"{"name": "Bad Name"}"#,
            r#"{"binary": "etc"}"#,
            r#"{"files": ["nope"]}"#,
            r#"{"files": ["../x"]}"#,
            r#"{"health": "curl"}"#,
            r#"{"probes": [{"path": "x"}]}"#,
            r#"{"env": {"1X": "y"}}"#,
        ] {
            assert!(app_with(&files, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_http_health_check_asks_the_app_port_with_our_binary() {
        let files = [
            ("go.mod", "module m\n"),
            ("main.go", "package main\n// os.Getenv(\"PORT\")\n"),
        ];
        let app = app_with(&files, r#"{"health": {"http": "/ready"}}"#).unwrap();
        assert_eq!(app.health, Health::Http("/ready".into()));
        assert_eq!(
            app.health_command("/out/"),
            Some(vec![
                "/out/healthcheck".to_string(),
                "http://127.0.0.1:8080/ready".into(),
                "PORT".into()
            ])
        );
        assert_eq!(
            app.shipped_binaries().collect::<Vec<_>>(),
            ["m", "healthcheck"]
        );
        assert_eq!(app_with(&files, &app.to_json().dump()).unwrap(), app);
        assert_eq!(app.suggested_health(), None, "it has one");
        // A /healthz route and no health check: init suggests asking it.
        let healthz = [
            ("go.mod", "module m\n"),
            ("main.go", "package main\n// \"/healthz\"\n"),
        ];
        let app = app_with(&healthz, "{}").unwrap();
        assert_eq!(app.suggested_health(), Some("/healthz"));
        assert_eq!(app_with(&files, "{}").unwrap().suggested_health(), None);
        for bad in [
            r#"{"health": {"http": "ready"}}"#,
            r#"{"health": {"http": "/a", "command": ["-x"]}}"#,
            r#"{"health": {"http": 1}}"#,
            r#"{"binary": "healthcheck"}"#,
        ] {
            assert!(app_with(&files, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_init_writes_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        fs::write(root.join("main.go"), TUTORIAL).unwrap();
        fs::create_dir(root.join("static")).unwrap();
        let code = Code::read(root).unwrap();
        let detected = App::from_code(root, &code, &JsonValue::new_object()).unwrap();
        let again = App::from_code(root, &code, &detected.to_json()).unwrap();
        assert_eq!(again, detected);
    }

    #[test]
    fn ports_are_read_from_literals() {
        assert_eq!(
            listen_port("ln, err := net.Listen(\"tcp\", \":9090\")"),
            Some(9090)
        );
        assert_eq!(listen_port("const defaultPort = \"3000\""), Some(3000));
        assert_eq!(listen_port("fmt.Println(\"a:b\")"), None);
        assert_eq!(
            package_clause("// c\n/* x\npackage no\n*/\npackage main // x\n"),
            Some("main")
        );
    }
}
