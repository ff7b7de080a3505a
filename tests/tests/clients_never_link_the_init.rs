//! The administrator's tools, the image assembler and the shared crates never link PID 1 or
//! the crates it confines itself with: what they share with the init is in
//! `lightwhale-types` and `lightwhale-nocloud`.

use std::path::Path;

/// Crates only PID 1 (and the tests that drive it) may depend on.
const PID1_ONLY: [&str; 5] = ["lightwhale-init", "nix", "landlock", "seccompiler", "caps"];

/// The workspace members that are not PID 1 and must stay free of it.
const CLIENTS: [&str; 5] = ["types", "nocloud", "tools", "image", "compose-apps"];

fn dependencies(member: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(member).join("Cargo.toml");
    let manifest: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest.get("dependencies").and_then(|d| d.as_table()).map(|t| t.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn no_client_depends_on_the_init_or_its_confinement_crates() {
    for member in CLIENTS {
        let deps = dependencies(member);
        assert!(!deps.is_empty() || member == "types", "{member}: no [dependencies] read");
        for forbidden in PID1_ONLY {
            assert!(!deps.iter().any(|d| d == forbidden), "{member} depends on {forbidden}");
        }
    }
    assert!(dependencies("init").iter().any(|d| d == "nix"), "the check reads the manifests it names");
}
