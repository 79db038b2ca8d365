//! How `direct`'s image reaches the engine (one `docker load` of `oci::Image::archive`, started
//! early), and its OCI layout on disk.

use anyhow::Result;

use crate::{
    domain::ImageRef,
    infra::{ctx::Ctx, docker, fsx},
    pipeline::oci::{self, Image},
};

/// A `docker load` started before its image is known (while Go links), and sent the archive's
/// opening entry at once: the engine's side is under way when the image is ready. `send` sends
/// the rest. Dropped unsent, the archive ends inside, and nothing loads. Let finish after a
/// signal: an image half-loaded is never left.
pub struct Load {
    input: docker::LoadInput,
    loading: docker::Loading,
    name: Option<ImageRef>,
}

impl Load {
    /// `name`: the image's name, given by the archive, for Docker's containerd store alone.
    pub fn start(ctx: &Ctx, name: Option<ImageRef>) -> Result<Load> {
        let (mut input, loading) = docker::load(ctx, name.as_ref().map(ImageRef::as_str))?;
        // A load that failed says why when waited for: its error says more than a write's.
        let _ = input.send(&oci::opening()?);
        Ok(Load {
            input,
            loading,
            name,
        })
    }

    /// Sends the rest of `image`'s archive from a thread of its own, so that an engine that
    /// stops reading cannot block the xtask (`wait` says so, and a signal stops it): the load
    /// under way, to `wait` for.
    pub fn send(self, image: &Image) -> Result<docker::Loading> {
        let rest = image.rest_of_archive(self.name.as_ref())?;
        let layer = std::sync::Arc::clone(&image.layer);
        let Load {
            mut input, loading, ..
        } = self;
        std::thread::spawn(move || {
            let sent = [&rest.before_layer, layer.as_slice(), &rest.after_layer]
                .into_iter()
                .try_for_each(|part| input.send(part));
            if sent.is_ok() {
                let _ = input.finish();
            }
        });
        Ok(loading)
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
