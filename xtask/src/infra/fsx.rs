//! Files, never half-written: build aside (next to the destination, so that renames stay on one
//! filesystem), then move into place.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

/// A directory or file of ours under a fresh name (made exclusively: never someone else's),
/// removed with what it holds when dropped, unless kept.
#[derive(Debug)]
pub struct Temp {
    path: Utf8PathBuf,
    kept: bool,
}

impl Temp {
    /// A new directory `{prefix}{random}` in `parent` (made if missing).
    pub fn dir_in(parent: &Utf8Path, prefix: &str) -> Result<Temp> {
        Temp::create(parent, prefix, |p| {
            fs::DirBuilder::new().mode(0o755).create(p)
        })
    }

    /// A new, empty file `{prefix}{random}` in `parent` (made if missing).
    pub fn file_in(parent: &Utf8Path, prefix: &str) -> Result<Temp> {
        Temp::create(parent, prefix, |p| {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(p)
                .map(drop)
        })
    }

    fn create(
        parent: &Utf8Path,
        prefix: &str,
        make: impl Fn(&Utf8Path) -> std::io::Result<()>,
    ) -> Result<Temp> {
        fs::create_dir_all(parent).with_context(|| format!("creating {parent}"))?;
        for _ in 0..16 {
            let path = parent.join(format!("{prefix}{}", random_hex(6)));
            match make(&path) {
                Ok(()) => return Ok(Temp { path, kept: false }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {path}")),
            }
        }
        anyhow::bail!("no free name for a temporary file in {parent}")
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// Leaves it where it is (moved into place, or it must outlive us); its path.
    pub fn keep(mut self) -> Utf8PathBuf {
        self.kept = true;
        std::mem::take(&mut self.path)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_dir_all(&self.path).or_else(|_| fs::remove_file(&self.path));
        }
    }
}

/// A file whose modification time a thread keeps fresh, every `every`, while the value lives:
/// after a kill, its time says when this process was last alive. Removed when dropped.
pub struct Heartbeat {
    path: Utf8PathBuf,
    stop: Option<std::sync::mpsc::Sender<()>>,
    beating: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(path: &Utf8Path, every: std::time::Duration) -> Result<Heartbeat> {
        let parent = path.parent().context("no parent directory")?;
        fs::create_dir_all(parent).with_context(|| format!("creating {parent}"))?;
        fs::write(path, b"").with_context(|| format!("writing {path}"))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let file = path.to_owned();
        let beating = std::thread::spawn(move || {
            // Until told to stop (or the sender is gone): a beat at each timeout.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                let touched = fs::File::options()
                    .write(true)
                    .open(&file)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                if touched.is_err() {
                    return; // removed under us: the record says no more than it can
                }
            }
        });
        Ok(Heartbeat {
            path: path.to_owned(),
            stop: Some(stop),
            beating: Some(beating),
        })
    }

    /// When the file at `path` last beat, if there is one.
    pub fn last(path: &Utf8Path) -> Option<std::time::SystemTime> {
        fs::metadata(path).and_then(|m| m.modified()).ok()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(beating) = self.beating.take() {
            let _ = beating.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// A fresh directory beside `dst` (same filesystem: the final rename is atomic), removed on drop
/// unless it was moved into place.
pub fn scratch_beside(dst: &Utf8Path) -> Result<Temp> {
    let parent = dst.parent().context("no parent directory")?;
    Temp::dir_in(
        parent,
        &format!(".{}.tmp-", dst.file_name().unwrap_or("dir")),
    )
}

/// `n` random bytes, as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    hex(&bytes)
}

/// Copies the directory tree `src` to `dst` (created; must not exist). Names need not be UTF-8: a
/// file Go never reads may have any name.
pub fn copy_dir(src: &Utf8Path, dst: &Utf8Path) -> Result<()> {
    copy_tree(src.as_std_path(), dst.as_std_path())
}

/// `copy_dir` for paths that need not be UTF-8.
pub fn copy_tree(src: &std::path::Path, dst: &std::path::Path) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry.with_context(|| format!("reading {}", src.display()))?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else {
            fs::copy(entry.path(), &to).with_context(|| {
                format!("copying {} to {}", entry.path().display(), to.display())
            })?;
        }
    }
    Ok(())
}

/// Makes `dst` (replaced whole) a mirror of `src`'s entries that `keep` takes (by top-level
/// name): files hard-linked where the filesystem allows (else copied), links as links. What a
/// Docker build context needs, made in milliseconds.
pub fn mirror(src: &Utf8Path, dst: &Utf8Path, keep: impl Fn(&str) -> bool) -> Result<()> {
    remove_dir(dst)?;
    fs::create_dir_all(dst).with_context(|| format!("creating {dst}"))?;
    for entry in fs::read_dir(src).with_context(|| format!("reading {src}"))? {
        let entry = entry.with_context(|| format!("reading {src}"))?;
        // A name that is not UTF-8 is none of the names `keep` asks about: kept.
        if entry.file_name().to_str().is_none_or(&keep) {
            link_entry(&entry.path(), &dst.as_std_path().join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn link_entry(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    let (shown_from, shown_to) = (from.display(), to.display());
    let kind = fs::symlink_metadata(from)
        .with_context(|| format!("reading {shown_from}"))?
        .file_type();
    if kind.is_dir() {
        fs::create_dir(to).with_context(|| format!("creating {shown_to}"))?;
        for entry in fs::read_dir(from).with_context(|| format!("reading {shown_from}"))? {
            let name = entry
                .with_context(|| format!("reading {shown_from}"))?
                .file_name();
            link_entry(&from.join(&name), &to.join(&name))?;
        }
    } else if kind.is_symlink() {
        let target =
            fs::read_link(from).with_context(|| format!("reading the link {shown_from}"))?;
        std::os::unix::fs::symlink(target, to).with_context(|| format!("linking {shown_to}"))?;
    } else if kind.is_file() && fs::hard_link(from, to).is_err() {
        fs::copy(from, to).with_context(|| format!("copying {shown_from} to {shown_to}"))?;
    }
    Ok(())
}

/// Replaces the directory `dst` by `new` (on the same filesystem): the old one is moved aside, the
/// new one renamed in, the old one removed. `dst` is never half-written.
pub fn replace_dir(new: &Utf8Path, dst: &Utf8Path) -> Result<()> {
    let old = dst.with_file_name(format!(
        ".{}.old-{}",
        dst.file_name().unwrap_or("dir"),
        std::process::id()
    ));
    let had_old = dst.exists();
    if had_old {
        fs::rename(dst, &old).with_context(|| format!("moving {dst} aside"))?;
    }
    if let Err(e) = fs::rename(new, dst) {
        if had_old {
            let _ = fs::rename(&old, dst);
        }
        return Err(e).with_context(|| format!("moving {new} to {dst}"));
    }
    if had_old {
        fs::remove_dir_all(&old).with_context(|| format!("removing {old}"))?;
    }
    Ok(())
}

/// Swaps the directories `a` and `b` (one filesystem) in one step: each is, at every instant,
/// either what it was or what the other was. Where the filesystem cannot (no RENAME_EXCHANGE),
/// `replace_dir`'s two renames, `b`'s old self kept at `.NAME.old-*` (what `restore_beside`
/// puts back after a crash between them); then `a` is gone.
pub fn exchange(a: &Utf8Path, b: &Utf8Path) -> Result<()> {
    let (ca, cb) = (path_c(a)?, path_c(b)?);
    // SAFETY: both pointers are NUL-terminated strings alive across the call; AT_FDCWD makes
    // renameat2(2) resolve them as the paths they are. It only renames.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => replace_dir(a, b),
        _ => Err(e).with_context(|| format!("swapping {a} and {b}")),
    }
}

fn path_c(path: &Utf8Path) -> Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_str()).with_context(|| format!("{path} holds a NUL byte"))
}

/// After a crash between `replace_dir`'s two renames `dst` is missing and its old self is at
/// `.NAME.old-*`: put back (whether it was taken). What is left beside `dst` besides is removed
/// when `dst` is there: scratch never moved in, or the old self of a swap that completed.
pub fn restore_beside(dst: &Utf8Path) -> Result<bool> {
    let leftovers = leftovers_beside(dst);
    let mut restored = false;
    if !dst.exists() {
        let prefix = format!(".{}.old-", dst.file_name().unwrap_or("dir"));
        if let Some(old) = leftovers
            .iter()
            .find(|l| l.file_name().is_some_and(|n| n.starts_with(&prefix)))
        {
            fs::rename(old, dst).with_context(|| format!("putting {old} back as {dst}"))?;
            restored = true;
        }
    }
    if dst.exists() {
        for left in leftovers.iter().filter(|l| l.exists()) {
            remove_dir(left)?;
        }
    }
    Ok(restored)
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename.
pub fn write_atomic(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().context("no parent directory")?;
    let tmp = Temp::file_in(
        parent,
        &format!(".{}.tmp-", path.file_name().unwrap_or("file")),
    )?;
    fs::write(tmp.path(), bytes).with_context(|| format!("writing {path}"))?;
    fs::rename(tmp.path(), path).with_context(|| format!("moving the new {path} into place"))?;
    tmp.keep();
    Ok(())
}

/// Makes `dst` a copy of the tree `src`, whole: copied beside it, then swapped in.
pub fn replace_with_copy(src: &Utf8Path, dst: &Utf8Path) -> Result<()> {
    let tmp = scratch_beside(dst)?;
    let name = dst.file_name().unwrap_or("copy");
    let copy = tmp.path().join(name);
    copy_dir(src, &copy)?;
    replace_dir(&copy, dst)
}

/// Removes a directory tree if it exists.
pub fn remove_dir(dir: &Utf8Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {dir}"))
        }
        _ => Ok(()),
    }
}

/// What an interrupted `scratch_beside` or `replace_dir` of `dst` left beside it (a killed run
/// never drops its `Temp`): the directories `.NAME.tmp-*` and `.NAME.old-*` (a file there is not
/// one of ours).
pub fn leftovers_beside(dst: &Utf8Path) -> Vec<Utf8PathBuf> {
    let (Some(parent), Some(name)) = (dst.parent(), dst.file_name()) else {
        return Vec::new();
    };
    let prefixes = [format!(".{name}.tmp-"), format!(".{name}.old-")];
    let Ok(entries) = parent.read_dir_utf8() else {
        return Vec::new();
    };
    let mut found: Vec<Utf8PathBuf> = entries
        .flatten()
        .filter(|e| {
            prefixes
                .iter()
                .any(|p| e.file_name().starts_with(p.as_str()))
        })
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.into_path())
        .collect();
    found.sort();
    found
}

/// A digest of a directory tree: every file's relative path and content, in order (what `vendor/`
/// holds, whatever the glide files say).
pub fn tree_digest(dir: &Utf8Path) -> Result<String> {
    fn walk(root: &Utf8Path, dir: &Utf8Path, hash: &mut Sha256) -> Result<()> {
        let mut entries: Vec<_> = dir
            .read_dir_utf8()
            .with_context(|| format!("reading {dir}"))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {dir}"))?;
        entries.sort_by(|a, b| a.file_name().cmp(b.file_name()));
        for entry in entries {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap_or(path);
            if entry.file_type()?.is_dir() {
                walk(root, path, hash)?;
            } else {
                let bytes = fs::read(path).with_context(|| format!("reading {path}"))?;
                hash.update(format!("{rel}\0{}\0", bytes.len()).as_bytes());
                hash.update(&bytes);
            }
        }
        Ok(())
    }
    let mut hash = Sha256::new();
    walk(dir, dir, &mut hash)?;
    Ok(format!("{:x}", hash.finalize()))
}

/// The files directly in `dir` (not dotfiles), sorted.
pub fn files_in(dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let mut files: Vec<Utf8PathBuf> = dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()) && !e.file_name().starts_with('.'))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    Ok(files)
}

/// sha256 of bytes, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_dir_swaps_whole_directories() {
        let base = tempfile::tempdir().unwrap();
        let base = Utf8Path::from_path(base.path()).unwrap();
        let (new, dst) = (base.join("new"), base.join("dst"));
        fs::create_dir(&new).unwrap();
        fs::write(new.join("a"), "1").unwrap();
        replace_dir(&new, &dst).unwrap(); // no previous dst
        fs::create_dir(&new).unwrap();
        fs::write(new.join("b"), "2").unwrap();
        replace_dir(&new, &dst).unwrap(); // over a previous one: nothing of it stays
        let names: Vec<String> = dst
            .read_dir_utf8()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string())
            .collect();
        assert_eq!(names, ["b"]);
        assert!(!new.exists());
        assert_eq!(
            base.read_dir_utf8().unwrap().count(),
            1,
            "an old copy was left beside dst"
        );
    }

    #[test]
    fn write_atomic_replaces_and_leaves_nothing_beside() {
        let base = tempfile::tempdir().unwrap();
        let file = Utf8Path::from_path(base.path()).unwrap().join("sub/f.json");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(file.parent().unwrap().read_dir_utf8().unwrap().count(), 1);
    }

    #[test]
    fn sha256_hex_gives_the_standard_digest() {
        // FIPS 180-2's example.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
