//! Every command and flag of `cargo xtask`, parsed by xflags (which also generates `--help`)
//! before any work starts. Values with a fixed set of names are `FromStr` types whose errors list
//! the valid names; a usage error exits with 2.

use crate::domain::{Builder, ImageRef, Platforms, Strategy, Version};

xflags::xflags! {
    /// Turn the Go app in go-app/ into a lean, reproducible production image.
    cmd xtask {
        /// Print the commands that would change something; run none of them.
        optional --dry-run
        /// Never install anything: a missing tool is an error.
        optional --no-setup
        /// Never reach GitHub or a registry (Debian-sourced glide mirror, local base images).
        optional --offline
        /// Of the images app.json's `images` makes, only this one (dev, publish, verify need one).
        optional --app name: String

        /// Install what the pipeline needs (apt; through sudo when not root) and start a local
        /// dockerd when no engine answers. Leaves /etc/apt as it found it.
        cmd setup {}

        /// Print the app's contract as detected from go-app/ (main packages, port, health check,
        /// probes, files) and write it to app.json, to read and edit.
        cmd init {
            /// Write app.json even where there is one (it is replaced by what it says, in full).
            optional --force
        }

        /// Glide, then static Linux binaries: dist/BINARY (every image's) and dist/SHA256SUMS.
        cmd dist {
            /// Also build for these platforms, comma separated (dist/BINARY-linux-arm64, ...).
            optional --platform platforms: Platforms
            /// The version stamped into the binary (default: git describe, else dev).
            optional --app-version version: Version
        }

        /// The production image (multi-stage by default); one per entry of app.json's `images`.
        cmd image {
            /// multistage (default) | handoff | single | direct.
            optional --strategy strategy: Strategy
            /// The image tag (default: the app's name, `NAME:latest`).
            optional --tag tag: ImageRef
            /// buildkit | legacy (default: buildkit when the client has it).
            optional --builder builder: Builder
            /// The Go builder base image (default golang:1.27-bookworm, else the local one).
            optional --builder-image image: ImageRef
            /// The runtime base image (default scratch).
            optional --runtime-image image: ImageRef
            /// UPX the binary (goes through the dist handoff; needs upx on the host).
            optional --compress
            /// Run the image hardened on a loopback port, wait until healthy, check it, stop it.
            optional --smoke
            /// Build without the builder's cache (base images are kept).
            optional --no-cache
            /// As for dist.
            optional --app-version version: Version
        }

        /// Push a multi-platform image (assembled as by --strategy direct), with SBOMs and provenance
        /// attached, to a registry; digests to dist/digests.txt.
        cmd publish {
            /// Where: REGISTRY/REPO[:TAG] (the tag defaults to the version).
            required --to reference: ImageRef
            /// Platforms, comma separated (default linux/amd64,linux/arm64).
            optional --platform platforms: Platforms
            /// Sign the index digest with this cosign key (no transparency log; COSIGN_PASSWORD).
            optional --sign key: String
            /// Only check the signature of what --to names with this cosign public key.
            optional --verify-signature key: String
            /// As for dist.
            optional --app-version version: Version
        }

        /// Rebuild the image's revision with --strategy direct; exit 0 only when the image IDs match.
        cmd verify {
            /// The image to check (default: the app's, `NAME:latest`).
            optional image: ImageRef
        }

        /// Build the local builder base image from Debian's mirror (mmdebstrap; no registry, no root).
        cmd base-images {
            /// The Debian mirror (default http://deb.debian.org/debian).
            optional --mirror url: String
        }

        /// Remove what the xtask built (by its record) and dist/, target/ state, go-app/vendor/.
        cmd clean {
            /// Also remove the local base images.
            optional --all
        }

        /// Build, run and serve the image on a loopback port; rebuild and swap on every saved change.
        cmd dev {
            /// The port served on 127.0.0.1 (default 8080; 0: any free one, printed).
            optional --port port: u16
            /// direct (default) | multistage.
            optional --strategy strategy: Strategy
            /// The image tag (default: the app's, `NAME:latest`).
            optional --tag tag: ImageRef
        }

        /// Move the app from Glide to Go modules (go.mod, vendor/), proved before anything changes.
        cmd migrate {}

        /// Known vulnerabilities of what we ship (govulncheck), and what a rebuild would update.
        /// Exit 0: none found; 1: findings; 2: could not check.
        cmd audit {
            /// A local copy of the Go vulnerability database: a directory or a file:// or https:// URL.
            optional --db db: String
        }

        /// The test suite: provisioning, fmt, clippy, go vet, gofmt, go test, all Rust tests.
        cmd ci {}

        /// Measure build time, size and disk use against the tutorial's flow and a host go build.
        cmd bench {
            /// The one-line-edit rebuild only, one run unless --runs (what CI runs).
            optional --quick
            /// Runs per measurement, medians reported (default 5).
            optional --runs n: usize
            /// Only the contenders whose name contains this text (the limit always runs).
            optional --only text: String
            /// Also `direct` on this engine (a DOCKER_HOST value), which must have the builder base.
            optional --remote host: String
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> xflags::Result<Xtask> {
        Xtask::from_vec(args.split_whitespace().map(Into::into).collect())
    }

    #[test]
    fn image_defaults_and_flags_anywhere() {
        let flags = parse("image --dry-run --strategy handoff --tag a/b:c --no-cache").unwrap();
        assert!(flags.dry_run);
        let XtaskCmd::Image(image) = flags.subcommand else {
            panic!()
        };
        assert_eq!(image.strategy, Some(Strategy::Handoff));
        assert_eq!(image.tag.unwrap().as_str(), "a/b:c");
        assert!(image.no_cache && !image.smoke);
        let XtaskCmd::Image(image) = parse("image").unwrap().subcommand else {
            panic!()
        };
        assert_eq!(image.strategy.unwrap_or_default(), Strategy::Multistage);
        assert!(image.tag.is_none(), "the app's name decides");
    }

    #[test]
    fn bad_values_list_the_valid_ones() {
        let err = parse("image --strategy fast").unwrap_err().to_string();
        assert!(err.contains("multistage, handoff, single, direct"), "{err}");
        let err = parse("image --builder kaniko").unwrap_err().to_string();
        assert!(err.contains("buildkit, legacy"), "{err}");
        let err = parse("dist --platform linux/sparc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux/arm64"), "{err}");
        let err = parse("frobnicate").unwrap_err().to_string();
        assert!(!err.is_empty());
        assert!(parse("dist --app-version 'a b'").is_err());
    }
}
