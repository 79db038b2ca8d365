//! The pipeline's steps: plain functions and types that take plain values (paths, a tag, a
//! strategy), run things only through `Ctx`, and never see a CLI struct or a command module.

pub mod app;
pub mod audit;
pub mod base;
pub mod build;
pub mod checkout;
pub mod clean;
pub mod compare;
pub mod deps;
pub mod dev;
pub mod distdir;
pub mod dockerfile;
pub mod glide;
pub mod gobuild;
pub mod handoff;
pub mod load;
pub mod meta;
pub mod migrate;
pub mod oci;
pub mod publish;
pub mod record;
pub mod sbom;
pub mod smoke;
