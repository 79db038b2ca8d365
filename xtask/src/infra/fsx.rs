//! Files, never half-written: build aside (next to the destination, so that renames stay on one
//! filesystem), then move into place.

use std::fs;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// A fresh directory beside `dst` (same filesystem: the final rename is atomic), removed on drop
/// unless it was moved into place.
pub fn scratch_beside(dst: &Utf8Path) -> Result<tempfile::TempDir> {
    let parent = dst.parent().context("no parent directory")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {parent}"))?;
    tempfile::Builder::new()
        .prefix(&format!(".{}.tmp-", dst.file_name().unwrap_or("dir")))
        .tempdir_in(parent)
        .with_context(|| format!("creating a scratch directory in {parent}"))
}

/// The UTF-8 path of a temporary directory (ours are made under UTF-8 paths).
pub fn utf8(dir: &tempfile::TempDir) -> &Utf8Path {
    Utf8Path::from_path(dir.path()).expect("scratch directories are made under UTF-8 paths")
}

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

/// Writes `bytes` to `path` through a temporary file beside it and a rename.
pub fn write_atomic(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().context("no parent directory")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {parent}"))?;
    let mut file = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("creating a temporary file in {parent}"))?;
    std::io::Write::write_all(&mut file, bytes).with_context(|| format!("writing {path}"))?;
    file.persist(path)
        .with_context(|| format!("moving the new {path} into place"))?;
    Ok(())
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
    hex(&hmac_sha256::Hash::hash(bytes))
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
        let base = utf8(&base);
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
        let file = utf8(&base).join("sub/f.json");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(file.parent().unwrap().read_dir_utf8().unwrap().count(), 1);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
