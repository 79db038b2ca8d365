//! What `clean` removes, by the record (the rule is in `record`): our temporary containers (by
//! the label only the xtask sets at `docker create`, with this checkout's random id); the images
//! on this checkout's record (our tags, then the image when no other name is left, never with
//! `-f`), and what a stopped build left (nameless images with a build id the record noted);
//! directories the xtask made.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use crate::{
    infra::{
        ctx::Ctx,
        docker::{self, Present, Store},
        fsx,
    },
    pipeline::{
        base, deps,
        record::{self, Record},
    },
    project::Paths,
};

/// What `images` removed, and what stayed with the engine's reason.
pub struct Cleaned {
    pub containers: usize,
    /// Images of ours the engine listed before and no longer lists.
    pub images: usize,
    pub stayed: Vec<String>,
}

/// The directories the xtask makes, and what a killed run left beside them.
pub fn dirs(paths: &Paths) -> Vec<camino::Utf8PathBuf> {
    let mut dirs = vec![paths.dist()];
    dirs.extend(deps::made_paths(paths));
    let leftovers: Vec<_> = dirs.iter().flat_map(|d| fsx::leftovers_beside(d)).collect();
    dirs.extend(leftovers);
    dirs
}

/// Removes our temporary containers and the images `record` (and a damaged record) names on this
/// engine, then what our stopped builds left; `all`: the local base images too. The record keeps
/// what stayed. Stops at a signal (the error), the record saved.
pub fn images(ctx: &Ctx, store: Store, record: &mut Record, all: bool) -> Result<Cleaned> {
    let containers = docker::remove_temp_containers(ctx, &record.checkout)?;
    // Ours: the record's images and those a damaged record still names.
    let mut ours: BTreeMap<String, BTreeSet<String>> = record.images.clone();
    for file in &record::damaged(&ctx.paths) {
        // Its IDs are ASCII: whatever else is in it (bytes not UTF-8 too) does not hide them.
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap_or_default()).into_owned();
        for id in record::ids_in(&text) {
            ours.entry(id).or_default();
        }
    }
    // What went is what the engine no longer lists of what this run removed: with an image, an
    // engine may remove the intermediate images it was built on (Podman does); what another
    // client removed meanwhile is not counted.
    let listed_before: BTreeSet<String> = docker::images(ctx, &[])?.into_iter().collect();
    let mut asked: BTreeSet<String> = ours.keys().cloned().collect();
    let mut tally = Tally::default();
    let interrupted = tally.remove(ctx, store, &ours);
    // What stayed stays on record.
    record.images.retain(|id, _| tally.kept.contains(id));
    if interrupted.is_err() {
        record.save(ctx)?;
        interrupted?;
    }
    // Then what our stopped builds left.
    let swept = record.sweep(ctx, &tally.ancestors)?;
    tally.stayed.extend(swept.refused);
    asked.extend(swept.removed);
    asked.extend(tally.ancestors.iter().cloned());
    if all {
        for id in base::ours(ctx)? {
            asked.insert(id.clone());
            if let Err(e) = docker::remove_image(ctx, &id) {
                let why = docker::refusal(&e);
                tally.stayed.push(format!("base image {id}: {why}"));
            }
        }
    }
    let listed_after: BTreeSet<String> = docker::images(ctx, &[])?.into_iter().collect();
    Ok(Cleaned {
        containers,
        images: removed(&listed_before, &listed_after, &asked),
        stayed: tally.stayed,
    })
}

/// How many of `asked` the engine listed `before` and no longer lists `after`.
fn removed(before: &BTreeSet<String>, after: &BTreeSet<String>, asked: &BTreeSet<String>) -> usize {
    before
        .difference(after)
        .filter(|id| asked.contains(*id))
        .count()
}

/// Removes `dirs` that exist: how many.
pub fn remove_dirs(ctx: &Ctx, dirs: &[camino::Utf8PathBuf]) -> Result<usize> {
    let mut removed = 0;
    for dir in dirs.iter().filter(|d| d.exists()) {
        ctx.change(format!("rm -rf {dir}"), || fsx::remove_dir(dir))?;
        removed += 1;
    }
    Ok(removed)
}

/// Which images of ours stay, and why.
#[derive(Default)]
struct Tally {
    kept: BTreeSet<String>,
    stayed: Vec<String>,
    /// What the removed images were built on: `Record::sweep` takes what is left of it.
    ancestors: Vec<String>,
}

impl Tally {
    /// Removes `ours` (image ID → our tags): our tags first, then the image when no name is left,
    /// never with `-f`. Stops at a signal (the error), with `kept` saying what is still there.
    fn remove(
        &mut self,
        ctx: &Ctx,
        store: Store,
        ours: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<()> {
        let ids: Vec<&str> = ours.keys().map(String::as_str).collect();
        let present = docker::names(ctx, &ids)?;
        self.kept = present.keys().cloned().collect();
        for (id, Present { names, parent }) in &present {
            ctx.check_signal("clean")?;
            let tags = &ours[id];
            let (mine, theirs): (Vec<&String>, Vec<&String>) = names.iter().partition(|n| {
                tags.iter()
                    .any(|t| store.normalise(t) == store.normalise(n))
            });
            if !theirs.is_empty() {
                // Our tags go; the image stays theirs.
                for tag in mine {
                    if let Err(e) = docker::remove_image(ctx, tag) {
                        self.stayed.push(format!("{tag}: {}", docker::refusal(&e)));
                    }
                }
                let names: Vec<&str> = theirs.iter().map(|s| s.as_str()).collect();
                self.stayed.push(format!(
                    "{id}: also named {}, which is not ours",
                    names.join(" ")
                ));
                continue;
            }
            // All but one of our tags by name (an image with several names is refused by ID),
            // then the image by ID, with what it was built on and nothing else uses.
            for tag in mine.iter().skip(1) {
                if let Err(e) = docker::remove_image(ctx, tag) {
                    self.stayed.push(format!("{tag}: {}", docker::refusal(&e)));
                }
            }
            self.ancestors
                .extend(docker::ancestors(ctx, id, parent.clone())?);
            if let Err(e) = docker::remove_image(ctx, id) {
                self.stayed.push(format!("{id}: {}", docker::refusal(&e)));
            }
        }
        self.kept = docker::names(ctx, &ids)?.keys().cloned().collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_this_run_removed_counts() {
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        // Ours went, with an intermediate image the engine took along; theirs went meanwhile.
        let before = set(&["ours", "its-parent", "theirs", "kept"]);
        let after = set(&["kept"]);
        assert_eq!(
            removed(
                &before,
                &after,
                &set(&["ours", "its-parent", "gone-already"])
            ),
            2
        );
        assert_eq!(removed(&before, &before, &set(&["ours"])), 0);
    }
}
