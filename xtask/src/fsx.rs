//! File helpers for "nothing half-written": build aside, then move into place with renames.

use std::fs;

use anyhow::{Context, Result};
use camino::Utf8Path;

/// Copies the directory tree `src` to `dst` (created; must not exist).
pub fn copy_dir(src: &Utf8Path, dst: &Utf8Path) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("creating {dst}"))?;
    for entry in src
        .read_dir_utf8()
        .with_context(|| format!("reading {src}"))?
    {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(entry.path(), &to)?;
        } else {
            fs::copy(entry.path(), &to)
                .with_context(|| format!("copying {} to {to}", entry.path()))?;
        }
    }
    Ok(())
}

/// Replaces the directory `dst` by `new` (a sibling on the same filesystem): the old one is moved
/// aside, the new one renamed in, the old one removed. `dst` is never half-written.
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

/// A fresh, empty directory (whatever was there is removed).
pub fn fresh_dir(dir: &Utf8Path) -> Result<()> {
    remove_dir(dir)?;
    fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))
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

/// A scratch directory removed however the step ends.
pub struct TempDir(pub camino::Utf8PathBuf);

impl TempDir {
    pub fn new(dir: camino::Utf8PathBuf) -> Result<TempDir> {
        fresh_dir(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_dir_swaps_whole_directories() {
        let base = camino::Utf8PathBuf::try_from(std::env::temp_dir())
            .unwrap()
            .join(format!("fsx-test-{}", std::process::id()));
        let (new, dst) = (base.join("new"), base.join("dst"));
        fresh_dir(&new).unwrap();
        fs::write(new.join("a"), "1").unwrap();
        replace_dir(&new, &dst).unwrap(); // no previous dst
        fresh_dir(&new).unwrap();
        fs::write(new.join("b"), "2").unwrap();
        replace_dir(&new, &dst).unwrap(); // over a previous one: nothing of it stays
        let names: Vec<String> = dst
            .read_dir_utf8()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string())
            .collect();
        assert_eq!(names, ["b"]);
        assert!(!new.exists());
        let leftovers = base.read_dir_utf8().unwrap().count();
        assert_eq!(leftovers, 1, "an old copy was left beside dst");
        remove_dir(&base).unwrap();
    }
}
