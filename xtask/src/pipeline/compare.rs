//! What differs between two images: config fields, layers, files in a layer. `verify` says this
//! when a rebuild does not give the image's ID.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use jzon::JsonValue as Value;

use crate::infra::fsx;

/// A file in a layer: its mode, owner, mtime and content's sha256 (or link target).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    mode: u32,
    owner: (u64, u64),
    mtime: u64,
    content: String,
}

fn entries(layer: &[u8]) -> Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(layer);
    for entry in archive.entries().context("reading a layer")? {
        let mut entry = entry?;
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let h = entry.header().clone();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)?;
        let content = match entry.link_name()? {
            Some(target) => format!("-> {}", target.display()),
            None => fsx::sha256_hex(&bytes),
        };
        out.insert(
            path,
            Entry {
                mode: h.mode()?,
                owner: (h.uid()?, h.gid()?),
                mtime: h.mtime()?,
                content,
            },
        );
    }
    Ok(out)
}

/// One line per difference between two layers, by path.
pub fn layer_differences(theirs: &[u8], ours: &[u8]) -> Result<Vec<String>> {
    // Docker's containerd image store keeps (and saves) a built image's layers compressed.
    if theirs.starts_with(&[0x1f, 0x8b]) {
        return Ok(vec![
            "layer: the image's layer is gzip-compressed (not made by `direct`): its files are not compared".into(),
        ]);
    }
    let (a, b) = (entries(theirs)?, entries(ours)?);
    let mut out = Vec::new();
    for (path, entry) in &a {
        match b.get(path) {
            None => out.push(format!("layer: /{path} is only in the image")),
            Some(other) if other == entry => {}
            Some(other) => {
                let mut what = Vec::new();
                if entry.content != other.content {
                    what.push("content".to_string());
                }
                if entry.mode != other.mode {
                    what.push(format!("mode {:o} vs {:o}", entry.mode, other.mode));
                }
                if entry.owner != other.owner {
                    what.push(format!("owner {:?} vs {:?}", entry.owner, other.owner));
                }
                if entry.mtime != other.mtime {
                    what.push(format!("mtime {} vs {}", entry.mtime, other.mtime));
                }
                out.push(format!("layer: /{path} differs ({})", what.join(", ")));
            }
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("layer: /{path} is only in the rebuild"));
    }
    if out.is_empty() && theirs != ours {
        out.push("layer: same files, different tar encoding".into());
    }
    Ok(out)
}

/// One line per differing config field (dotted path), the layers' diff IDs aside.
pub fn config_differences(theirs: &Value, ours: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", theirs, ours, &mut out);
    out
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&str> =
                x.iter().chain(y.iter()).map(|(k, _)| k).collect();
            for k in keys {
                let sub = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                walk(&sub, &a[k], &b[k], out);
            }
        }
        _ if a == b => {}
        _ if path == "rootfs.diff_ids" => {}
        _ => out.push(format!(
            "config: {path} is {} in the image, {} in the rebuild",
            a.dump(),
            b.dump()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jzon::object;

    #[test]
    fn config_fields_are_named() {
        let a = object! {"config": {"Labels": {"v": "1"}, "User": "x"}, "created": "t"};
        let b = object! {"config": {"Labels": {"v": "2"}, "User": "x"}, "created": "t"};
        assert_eq!(
            config_differences(&a, &b),
            ["config: config.Labels.v is \"1\" in the image, \"2\" in the rebuild"]
        );
        assert!(config_differences(&a, &a).is_empty());
    }
}
