//! apt, as a guest. Packages the host's own suites provide come from them. A package they lack
//! comes from one Debian suite (Debian hosts only), named for that one install through a private
//! configuration (`-o Dir::Etc::SourceParts=…` in a temporary directory that links the host's own
//! files beside ours), pinned at priority 1 and checked with `apt-get -s` to bring nothing else:
//! `/etc/apt` is never written. Not root: through `sudo -n` when sudo allows it, else the exact
//! commands are printed and nothing runs.

use std::fs;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::{
    cmd,
    infra::{ctx::Ctx, fsx},
    project,
};

/// How long apt waits for another apt or dpkg (unattended-upgrades on a fresh VM) to finish.
const LOCK_TIMEOUT_S: u32 = 300;

/// The host, from /etc/os-release.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Host {
    pub id: String,
    pub codename: String,
}

impl Host {
    pub fn read() -> Host {
        let text = fs::read_to_string("/etc/os-release").unwrap_or_default();
        Host::parse(&text)
    }

    fn parse(text: &str) -> Host {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
                .unwrap_or_default()
        };
        Host {
            id: field("ID"),
            codename: field("VERSION_CODENAME"),
        }
    }

    /// Only Debian hosts get Debian suites (Ubuntu lacks Debian's keyring, and mixing breaks it).
    pub fn is_debian(&self) -> bool {
        self.id == "debian"
    }
}

/// A tool as apt sees it: the Debian package that brings it, from which suite, what may come
/// with it, and what a user elsewhere does instead.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// The tool's name, for messages.
    pub name: &'static str,
    pub package: &'static str,
    /// None: the host's own suites.
    pub suite: Option<&'static str>,
    /// Packages apt may install along with it (and nothing else).
    pub companions: &'static [&'static str],
    /// From `suite` even where the host's suites have it.
    pub suite_only: bool,
    pub elsewhere: &'static str,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn has_apt() -> bool {
    which::which("apt-get").is_ok() && Utf8Path::new("/etc/debian_version").exists()
}

/// Whether a step may install a missing required tool without being asked: root with apt.
/// (Ordinary users run `cargo xtask setup`, which uses sudo.)
pub fn may_install_unasked() -> bool {
    is_root() && has_apt()
}

/// How apt commands run here.
enum Privilege {
    Root,
    Sudo,
    /// Neither: print the commands.
    None,
}

/// Installs the packages behind `tools`, each decision announced.
pub fn install(ctx: &Ctx, tools: &[Package]) -> Result<()> {
    let mut wanted: Vec<Package> = Vec::new();
    for t in tools {
        if !wanted.iter().any(|w| w.package == t.package) {
            wanted.push(*t);
        }
    }
    let names = wanted
        .iter()
        .map(|t| t.package)
        .collect::<Vec<_>>()
        .join(" ");
    ctx.step(&format!("setup: install {names}"), || {
        if !has_apt() {
            bail!(
                "not a Debian/Ubuntu system with apt-get: install these yourself:\n{}",
                hints(&wanted)
            );
        }
        let host = Host::read();
        let privilege = if is_root() {
            Privilege::Root
        } else if which::which("sudo").is_ok() && ctx.read(cmd!("sudo -n true")).is_ok() {
            ctx.announce("not root: apt runs through sudo");
            Privilege::Sudo
        } else {
            Privilege::None
        };
        // The suites the host lacks, for the tools that name one.
        let mut foreign: Vec<&str> = wanted
            .iter()
            .filter_map(|t| t.suite)
            .filter(|s| *s != host.codename)
            .collect();
        foreign.sort_unstable();
        foreign.dedup();
        let config = if foreign.is_empty() || !host.is_debian() {
            None
        } else {
            Some(PrivateConfig::new(&foreign)?)
        };
        let lock = format!("DPkg::Lock::Timeout={LOCK_TIMEOUT_S}");
        let mut options = vec!["-o".to_string(), lock.clone()];
        options.extend(config.as_ref().map(|c| c.options()).unwrap_or_default());
        let opts = &options;
        // apt runs as `env DEBIAN_FRONTEND=noninteractive apt-get …`, through `sudo -n` when not root.
        let (program, prefix): (&str, &[&str]) = match privilege {
            Privilege::Root => ("env", &["DEBIAN_FRONTEND=noninteractive"]),
            Privilege::Sudo => ("sudo", &["-n", "env", "DEBIAN_FRONTEND=noninteractive"]),
            Privilege::None => return print_for_user(ctx, &wanted, &host, config, opts, &lock),
        };
        ctx.announce(format!(
            "apt-get update (waits up to {LOCK_TIMEOUT_S} s for another apt or dpkg to finish)"
        ));
        ctx.run(cmd!("{program} {prefix...} apt-get {opts...} update -q"))?;
        // What the host's own suites provide comes from them.
        let (native, other): (Vec<Package>, Vec<Package>) =
            wanted.iter().partition(|t| from_host(ctx, t));
        if !native.is_empty() {
            let packages: Vec<&str> = native.iter().map(|t| t.package).collect();
            ctx.announce(format!("installing {} from the host's suites", packages.join(" ")));
            ctx.run(cmd!("{program} {prefix...} apt-get -o {lock} install -y -q --no-install-recommends {packages...}"
            ))?;
        }
        for tool in other {
            let suite = tool.suite.unwrap_or_default();
            if config.is_none() {
                bail!(
                    "{} is not in this system's package suites, and Debian's suites are only added on \
                     Debian: {}",
                    tool.package,
                    tool.elsewhere
                );
            }
            let spec = format!("{}/{suite}", tool.package);
            check_installs_alone(ctx, opts, &spec, tool)?;
            ctx.announce(format!("installing {spec} (alone: nothing else comes from {suite})"));
            ctx.run(cmd!("{program} {prefix...} apt-get {opts...} install -y -q --no-install-recommends {spec}"
            ))?;
        }
        Ok(())
    })
}

/// Downloads `packages` from Debian's `suite` and unpacks them under `into` (`dpkg-deb -x`), never
/// installing them: apt's lists, cache and sources stay private to a scratch directory beside
/// `into` (`/etc/apt` and `/var/lib/apt` untouched). For the tests' second Docker engine.
pub fn unpack(ctx: &Ctx, suite: &str, packages: &[&str], into: &Utf8Path) -> Result<()> {
    let parent = into.parent().context("no parent directory")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {parent}"))?;
    let scratch = fsx::Temp::dir_in(parent, ".apt-")?;
    let root = scratch.path();
    let (sources, lists, cache, debs) = (
        root.join("sources"),
        root.join("lists"),
        root.join("cache"),
        root.join("debs"),
    );
    for dir in [
        &sources,
        &lists.join("partial"),
        &cache.join("archives/partial"),
        &debs,
    ] {
        fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    }
    fs::write(
        sources.join("suite.list"),
        format!("deb {} {suite} main\n", project::DEBIAN_MIRROR),
    )
    .context("writing the private sources list")?;
    let options = &[
        "-o".to_string(),
        "Dir::Etc::SourceList=/dev/null".into(),
        "-o".into(),
        format!("Dir::Etc::SourceParts={sources}"),
        "-o".into(),
        format!("Dir::State::Lists={lists}"),
        "-o".into(),
        format!("Dir::Cache={cache}"),
    ];
    ctx.run(cmd!("apt-get {options...} update -q"))?;
    ctx.run(cmd!("apt-get {options...} download {packages...}").dir(&debs))?;
    let unpacked = fsx::scratch_beside(into)?;
    for deb in fsx::files_in(&debs)? {
        let to = unpacked.path();
        ctx.run(cmd!("dpkg-deb -x {deb} {to}").quiet())?;
    }
    ctx.change(format!("move the unpacked packages to {into}"), || {
        fsx::replace_dir(unpacked.path(), into)
    })?;
    unpacked.keep();
    Ok(())
}

/// Whether the host's own configuration has a candidate for `package`.
/// Whether `tool` comes from the host's own suites: it names no other, or the host has it and
/// may give it.
fn from_host(ctx: &Ctx, tool: &Package) -> bool {
    tool.suite.is_none() || (!tool.suite_only && host_provides(ctx, tool.package))
}

fn host_provides(ctx: &Ctx, package: &str) -> bool {
    ctx.try_read(cmd!("apt-cache policy {package}"))
        .and_then(|out| {
            out.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("Candidate:")
                    .map(|c| c.trim() != "(none)")
            })
        })
        .unwrap_or(false)
}

/// Refuses an install that would bring, upgrade or remove anything besides the tool's packages (a
/// trixie package would happily upgrade libc6 to trixie's).
fn check_installs_alone(ctx: &Ctx, opts: &[String], spec: &str, tool: Package) -> Result<()> {
    let plan = ctx
        .read(cmd!(
            "apt-get {opts...} -s install --no-install-recommends {spec}"
        ))
        .with_context(|| format!("simulating `apt-get install {spec}`"))?;
    let others = unexpected(&plan, tool);
    if !others.is_empty() {
        bail!(
            "refusing to install {spec}: apt would also {}",
            others.join(", ")
        );
    }
    Ok(())
}

/// What an `apt-get -s` plan does beyond installing the tool's packages.
fn unexpected(plan: &str, tool: Package) -> Vec<String> {
    plan.lines()
        .filter_map(|l| {
            let (verb, rest) = l.split_once(' ')?;
            let name = rest.split_whitespace().next()?;
            match verb {
                "Inst" if name == tool.package || tool.companions.contains(&name) => None,
                "Inst" => Some(format!("install or upgrade {name}")),
                "Remv" => Some(format!("remove {name}")),
                _ => None,
            }
        })
        .collect()
}

fn hints(tools: &[Package]) -> String {
    tools
        .iter()
        .map(|t| format!("  {}: {}", t.name, t.elsewhere))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Not root and no sudo without a password: the exact commands, for the user to run.
fn print_for_user(
    ctx: &Ctx,
    tools: &[Package],
    host: &Host,
    config: Option<PrivateConfig>,
    opts: &[String],
    lock: &str,
) -> Result<()> {
    let quote = |s: &str| {
        if s.contains(' ') {
            format!("'{s}'")
        } else {
            s.to_string()
        }
    };
    let opts = opts.iter().map(|o| quote(o)).collect::<Vec<_>>().join(" ");
    let native: Vec<&str> = tools
        .iter()
        .filter(|t| from_host(ctx, t))
        .map(|t| t.package)
        .collect();
    let foreign: Vec<String> = tools
        .iter()
        .filter(|t| t.suite.is_some() && !native.contains(&t.package))
        .map(|t| format!("{}/{}", t.package, t.suite.unwrap_or_default()))
        .collect();
    let mut lines = vec![format!("sudo apt-get {opts} update")];
    if !native.is_empty() {
        lines.push(format!(
            "sudo apt-get -o {lock} install --no-install-recommends {}",
            native.join(" ")
        ));
    }
    if !foreign.is_empty() && host.is_debian() {
        lines.push(format!(
            "sudo apt-get {opts} install --no-install-recommends {}",
            foreign.join(" ")
        ));
    }
    // The private configuration must outlive us: the printed commands name it.
    let kept = config.map(|c| c.keep());
    let note = match kept {
        Some(dir) => format!(
            "\n(The -o options point apt at {dir}, which links your own sources beside Debian's \
             suites for these packages only; /etc/apt is not changed. Remove it afterwards.)"
        ),
        None if !foreign.is_empty() => format!(
            "\nNot in this system's suites, get them elsewhere:\n{}",
            hints(
                &tools
                    .iter()
                    .filter(|t| t.suite.is_some() && !native.contains(&t.package))
                    .copied()
                    .collect::<Vec<_>>()
            )
        ),
        None => String::new(),
    };
    bail!(
        "installing packages needs root, and `sudo -n` is not allowed here. Run these yourself, then \
         run `cargo xtask setup` again (it never runs cargo as root):\n  {}{note}",
        lines.join("\n  ")
    )
}

/// A private apt configuration: the host's own sources and preferences (linked, not copied) plus
/// the foreign suites pinned at priority 1, so that apt takes from them only what is named.
struct PrivateConfig {
    dir: fsx::Temp,
}

impl PrivateConfig {
    fn new(suites: &[&str]) -> Result<PrivateConfig> {
        let dir = fsx::Temp::dir_in("/var/tmp".into(), "go-docker-prod-apt-")
            .context("creating a private apt configuration in /var/tmp")?;
        let root = dir.path().to_path_buf();
        for (host, ours, name, text) in [
            (
                "/etc/apt/sources.list.d",
                root.join("sources.list.d"),
                "zz-go-docker-prod.sources",
                format!(
                    "Types: deb\nURIs: {}\nSuites: {}\nComponents: main\n\
                     Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
                    project::DEBIAN_MIRROR,
                    suites.join(" ")
                ),
            ),
            (
                "/etc/apt/preferences.d",
                root.join("preferences.d"),
                "zz-go-docker-prod",
                suites
                    .iter()
                    .map(|s| format!("Package: *\nPin: release n={s}\nPin-Priority: 1\n"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ] {
            fs::create_dir(&ours).with_context(|| format!("creating {ours}"))?;
            if let Ok(entries) = Utf8Path::new(host).read_dir_utf8() {
                for entry in entries.flatten() {
                    std::os::unix::fs::symlink(entry.path(), ours.join(entry.file_name()))
                        .with_context(|| format!("linking {}", entry.path()))?;
                }
            }
            fs::write(ours.join(name), text).with_context(|| format!("writing {ours}/{name}"))?;
        }
        Ok(PrivateConfig { dir })
    }

    fn root(&self) -> &Utf8Path {
        self.dir.path()
    }

    fn options(&self) -> Vec<String> {
        vec![
            "-o".into(),
            format!("Dir::Etc::SourceParts={}/sources.list.d", self.root()),
            "-o".into(),
            format!("Dir::Etc::PreferencesParts={}/preferences.d", self.root()),
        ]
    }

    fn keep(self) -> Utf8PathBuf {
        self.dir.keep()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::tools;

    #[test]
    fn os_release() {
        let h = Host::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\nVERSION_CODENAME=trixie\n",
        );
        assert_eq!(
            h,
            Host {
                id: "debian".into(),
                codename: "trixie".into()
            }
        );
        assert!(h.is_debian());
        assert!(!Host::parse("ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n").is_debian());
    }

    #[test]
    fn the_simulation_refuses_extras_and_removals() {
        let go = "Inst golang-1.27-src (1.27.4-1~bpo13+1 Debian Backports [all])\n\
                  Inst golang-1.27-go (1.27.4-1~bpo13+1 Debian Backports [amd64])\n\
                  Conf golang-1.27-go (1.27.4-1~bpo13+1 Debian Backports [amd64])\n";
        assert!(unexpected(go, tools::GO.debian()).is_empty());
        let libc = "Inst libc6 [2.36-9] (2.41-12 Debian:13 [amd64])\nInst docker-buildx (0.13 Debian:13 [amd64])\n";
        assert_eq!(
            unexpected(libc, tools::BUILDX.debian()),
            ["install or upgrade libc6"]
        );
        let remv = "Remv golang-1.19-go [1.19.8-2]\nInst golang-glide (0.13.1 Debian:11 [amd64])\n";
        assert_eq!(
            unexpected(remv, tools::GLIDE.debian()),
            ["remove golang-1.19-go"]
        );
    }
}
