//! How `direct`'s image reaches the engine (one `docker load` of `oci::Image::archive`, started
//! early), and its OCI layout on disk.

use std::io::Write;

use anyhow::{Context, Result};

use crate::{
    infra::{ctx::Ctx, fsx, process::Running},
    pipeline::oci::{self, Image},
};

/// A `docker load` started before its image is known (while Go links), and sent the archive's
/// opening entry at once: the CLI and the engine's unpacking process are under way when the
/// image is ready. `send` sends the rest. Dropped unsent, its input ends inside the archive, and
/// nothing loads. Let finish after a signal: an image half-loaded is never left.
pub struct Load {
    input: os_pipe::PipeWriter,
    running: Running,
}

impl Load {
    pub fn start(ctx: &Ctx) -> Result<Load> {
        let (reader, mut input) = os_pipe::pipe().context("making a pipe to docker load")?;
        let load =
            crate::cmd!("docker load -q").stdin(reader, "(the archive of the image, once built)");
        let running = ctx.start(load.fed())?;
        // A CLI that failed says why when waited for: its error says more than a write's.
        let _ = input.write_all(&oci::opening()?);
        Ok(Load { input, running })
    }

    /// Sends the rest of `image`'s archive (untagged) from a thread of its own, so that an
    /// engine that stops reading cannot block the xtask (`wait` says so, and a signal stops it):
    /// the load under way, to `wait` for.
    pub fn send(self, image: &Image) -> Result<Running> {
        let rest = image.rest_of_archive()?;
        let Load { mut input, running } = self;
        std::thread::spawn(move || {
            let _ = input.write_all(&rest);
        });
        Ok(running)
    }
}

/// Writes the OCI image layout of `images` at `dir` (built aside, swapped in whole), named `tag`:
/// the image index it holds when there are several images (bytes, digest).
pub fn write_layout(
    ctx: &Ctx,
    dir: &camino::Utf8Path,
    images: &[&Image],
    tag: &str,
) -> Result<Option<(Vec<u8>, String)>> {
    let layout = Image::layout(images, tag);
    ctx.change(format!("write the OCI image layout {dir}"), || {
        let tmp = fsx::scratch_beside(dir)?;
        let root = tmp.path();
        std::fs::create_dir_all(root.join("blobs/sha256"))?;
        for (path, bytes) in &layout.files {
            std::fs::write(root.join(path), bytes)?;
        }
        fsx::replace_dir(root, dir)?;
        tmp.keep();
        Ok(())
    })?;
    Ok(layout.index)
}
