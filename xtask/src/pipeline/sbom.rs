//! What went into an image, as documents anyone can check: an SPDX 2.3 SBOM (the app, every package
//! of glide.lock with its version, commit and license as the vendored files state it, the Go
//! toolchain, the CA bundle's Debian package) and a SLSA v1 provenance statement (in-toto). Every
//! value comes from the commit, the lock, the toolchain and the base image: no build time, no host
//! name, no path, so the same commit gives the same bytes on every machine.

use std::collections::BTreeMap;

use anyhow::Result;
use camino::Utf8Path;
use jzon::{object, JsonValue};

use crate::{
    domain::{Digest, Platform},
    pipeline::{
        deps,
        gobuild::{self, Mode},
        meta::Meta,
    },
    project,
};

pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
pub const PROVENANCE_MEDIA_TYPE: &str = "application/vnd.in-toto+json";

/// A dependency, with its license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub dep: deps::Dependency,
    /// An SPDX license identifier read from the vendored files, else NOASSERTION.
    pub license: String,
}

/// The app's dependencies (`deps::dependencies`) with the licenses of the vendored copies in
/// `vendor`.
pub fn dependencies(go_app: &Utf8Path, vendor: &Utf8Path) -> Result<Vec<Dependency>> {
    Ok(deps::dependencies(go_app)?
        .into_iter()
        .map(|dep| Dependency {
            license: license(&vendor.join(&dep.name)),
            dep,
        })
        .collect())
}

/// The license a vendored package states in its own files, as an SPDX identifier.
fn license(dir: &Utf8Path) -> String {
    let text = ["LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .unwrap_or_default();
    let has = |s: &str| text.contains(s);
    let id = if has("Redistribution and use in source and binary forms") {
        if has("Neither the name") {
            "BSD-3-Clause"
        } else {
            "BSD-2-Clause"
        }
    } else if has("Permission is hereby granted, free of charge") {
        "MIT"
    } else if has("Apache License") && has("Version 2.0") {
        "Apache-2.0"
    } else {
        "NOASSERTION"
    };
    id.to_string()
}

/// The SPDX 2.3 document of the image for `platform`.
pub fn spdx(
    meta: &Meta,
    platform: Platform,
    binary_sha256: &str,
    deps: &[Dependency],
    ca_version: &str,
) -> JsonValue {
    let slug = platform.to_string().replace('/', "-");
    let go_version = meta.go.trim_start_matches("go");
    let mut packages = vec![object! {
        "SPDXID": "SPDXRef-Package-app",
        "name": meta.app.name.as_str(),
        "versionInfo": meta.version.as_str(),
        "downloadLocation": if meta.source.is_empty() { "NOASSERTION".to_string() } else { format!("git+{}@{}", meta.source, meta.revision) },
        "sourceInfo": format!("revision {}", meta.revision),
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "checksums": [{ "algorithm": "SHA256", "checksumValue": binary_sha256 }],
        "primaryPackagePurpose": "APPLICATION",
    }];
    let mut relationships = vec![object! {
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Package-app",
    }];
    for (i, Dependency { dep, license }) in deps.iter().enumerate() {
        let id = format!("SPDXRef-Package-dep-{i}");
        // GOPATH mode: glide.lock's commit names it; module mode: go.mod's version, as Go writes
        // it (a pseudo-version names its commit too).
        let (pinned, source) = match meta.mode {
            Mode::Gopath => {
                let commit = dep.commit.clone().unwrap_or_default();
                let why = format!("glide.lock pins commit {commit}");
                (commit, why)
            }
            Mode::Modules => {
                let version = dep.version.clone().unwrap_or_default();
                let why = format!("go.mod requires {version} (vendor/modules.txt)");
                (version, why)
            }
        };
        packages.push(object! {
            "SPDXID": id.as_str(),
            "name": dep.name.as_str(),
            "versionInfo": dep.version.clone().unwrap_or_else(|| pinned.clone()),
            "downloadLocation": format!("git+https://{}@{pinned}", dep.name),
            "sourceInfo": source,
            "filesAnalyzed": false,
            "licenseConcluded": license.as_str(),
            "licenseDeclared": license.as_str(),
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:golang/{}@{pinned}", dep.name),
            }],
        });
        relationships.push(object! {
            "spdxElementId": "SPDXRef-Package-app", "relationshipType": "DEPENDS_ON", "relatedSpdxElement": id,
        });
    }
    packages.push(object! {
        "SPDXID": "SPDXRef-Package-go",
        "name": "go",
        "versionInfo": go_version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "BSD-3-Clause",
        "licenseDeclared": "BSD-3-Clause",
        "copyrightText": "NOASSERTION",
        "externalRefs": [{ "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": format!("pkg:golang/stdlib@{go_version}") }],
        "comment": "the Go toolchain and standard library compiled into the binary",
    });
    relationships.push(object! {
        "spdxElementId": "SPDXRef-Package-go", "relationshipType": "BUILD_TOOL_OF", "relatedSpdxElement": "SPDXRef-Package-app",
    });
    packages.push(object! {
        "SPDXID": "SPDXRef-Package-ca-certificates",
        "name": "ca-certificates",
        "versionInfo": ca_version,
        "supplier": "Organization: Debian",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "externalRefs": [{ "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": format!("pkg:deb/debian/ca-certificates@{ca_version}") }],
        "comment": format!("/{} taken from {}", project::CA_BUNDLE, meta.builder_base),
    });
    relationships.push(object! {
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Package-ca-certificates",
    });
    object! {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}-{slug}", meta.app.name, meta.version),
        "documentNamespace": format!("https://spdx.org/spdxdocs/{}-{}-{slug}", meta.app.name, meta.revision),
        "creationInfo": { "created": meta.created(), "creators": ["Tool: cargo-xtask (go-docker-prod)"] },
        "packages": packages,
        "relationships": relationships,
    }
}

/// The SLSA v1 provenance (an in-toto statement) of the image `manifest_digest` for `platform`.
pub fn provenance(
    meta: &Meta,
    platform: Platform,
    manifest_digest: &str,
    base_id: &str,
) -> JsonValue {
    let env: BTreeMap<&str, &str> = meta.mode.env().into_iter().collect();
    let source = if meta.source.is_empty() {
        "git".to_string()
    } else {
        format!("git+{}", meta.source)
    };
    object! {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": meta.app.name.as_str(), "digest": { "sha256": Digest::hex_of(manifest_digest) } }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://github.com/go-docker-prod/xtask/direct@v1",
                "externalParameters": {
                    "command": "cargo xtask publish",
                    "platform": platform.to_string(),
                    "version": meta.version.as_str(),
                },
                "internalParameters": {
                    "env": env,
                    "ldflags": gobuild::ldflags(&meta.version),
                    "go": meta.go.as_str(),
                },
                "resolvedDependencies": [
                    { "uri": format!("{source}@{}", meta.revision), "digest": { "gitCommit": meta.revision.as_str() } },
                    { "uri": meta.builder_base.as_str(), "digest": { "sha256": Digest::hex_of(base_id) } },
                ],
            },
            "runDetails": {
                "builder": { "id": "https://github.com/go-docker-prod/xtask" },
                "metadata": { "invocationId": format!("{}@{}", meta.revision, platform) },
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_the_same_for_the_same_inputs() {
        let meta = Meta {
            version: "v1".into(),
            revision: "abc".into(),
            epoch: 0,
            source: String::new(),
            go: "go1.27.4".into(),
            builder_base: project::LOCAL_BUILDER_IMAGE.into(),
            mode: crate::pipeline::gobuild::Mode::Gopath,
            app: crate::pipeline::app::App::demo(),
        };
        let deps = [Dependency {
            dep: deps::Dependency {
                name: "github.com/a/b".into(),
                version: Some("v1.3.0".into()),
                commit: Some("4eec211".into()),
            },
            license: "NOASSERTION".into(),
        }];
        let arm: Platform = "linux/arm64".parse().unwrap();
        let a = spdx(&meta, arm, "00", &deps, "20230311").dump();
        assert_eq!(a, spdx(&meta, arm, "00", &deps, "20230311").dump());
        let text = a;
        assert!(text.contains("pkg:golang/github.com/a/b@4eec211") && text.contains("\"1.27.4\""));
        // Module mode: the purl names the version go.mod requires.
        let modules = Meta {
            mode: Mode::Modules,
            ..meta.clone()
        };
        let text = spdx(&modules, arm, "00", &deps, "20230311").dump();
        assert!(text.contains("pkg:golang/github.com/a/b@v1.3.0"), "{text}");
        let p = provenance(&meta, arm, "sha256:ff", "sha256:ee");
        assert_eq!(p["subject"][0]["digest"]["sha256"], "ff");
    }
}
