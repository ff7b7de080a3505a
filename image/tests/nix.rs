//! The Nix files, checked without nixpkgs: every .nix file parses, and the pure part
//! (nix/manifest.nix) reads the modules' manifests exactly as the Rust builder does.
//! Needs `nix-instantiate` (Debian's nix-bin, installed by `cargo xtask deps`). The whole
//! flake is evaluated against the nixpkgs stand-in by `cargo xtask test` (xtask/src/flake.rs).

use lightwhale_image::manifest::{self, Module};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn nix_instantiate(args: &[&str]) -> String {
    // On a machine where Nix never ran, its first run creates /nix/var/nix; the tests run
    // side by side, and two first runs at once fail ("creating symlink ... File exists").
    // One run before all others does that alone.
    static STATE_MADE: std::sync::Once = std::sync::Once::new();
    STATE_MADE.call_once(|| {
        let _ = nix_command(&["--eval", "--expr", "1"]);
    });
    let out = nix_command(args);
    assert!(out.status.success(), "nix-instantiate {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn nix_command(args: &[&str]) -> std::process::Output {
    Command::new("nix-instantiate")
        .args(args)
        .current_dir(repo())
        // Debian's nix-bin names a build group that a plain host does not have.
        .env("NIX_CONFIG", "build-users-group =")
        .output()
        .expect("nix-instantiate is missing: run `cargo xtask deps`")
}

fn nix_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir_nix(&repo().join("nix"));
    v.push(repo().join("flake.nix"));
    v.sort();
    v
}

fn walkdir_nix(dir: &Path) -> Vec<PathBuf> {
    lightwhale_image::tree::walk(dir)
        .unwrap()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "nix"))
        .collect()
}

#[test]
#[ignore = "needs nix-instantiate: run with `cargo xtask test`"]
fn every_nix_file_parses() {
    let files = nix_files();
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        nix_instantiate(&["--parse", f.to_str().unwrap()]);
    }
}

/// The Rust side's reading, in the shape nix/manifest.nix returns.
fn rust_view(mods: &[Module]) -> Value {
    let per_module: Vec<Value> = mods
        .iter()
        .map(|m| {
            let t = &m.toml;
            json!({
                "name": m.name,
                "description": t.description,
                "nixPackages": t.nix.packages,
                "nixLinks": t.nix.links,
                "nixFirmware": t.nix.firmware,
                "users": t.users,
                "groups": t.groups,
                "systemUsers": t.system_users,
                "initramfsKernelModules": t.initramfs.kernel_modules,
                "dropKernelModules": t.prune.drop_kernel_modules,
                "requireKernelModules": t.prune.require_kernel_modules,
                "workspaceBinaries": t.workspace.binaries,
            })
        })
        .collect();
    let mut packages: Vec<String> = Vec::new();
    for p in mods.iter().flat_map(|m| &m.toml.nix.packages) {
        if !packages.contains(p) {
            packages.push(p.clone());
        }
    }
    let mut firmware: Vec<String> = Vec::new();
    for f in mods.iter().flat_map(|m| &m.toml.nix.firmware) {
        if !firmware.contains(f) {
            firmware.push(f.clone());
        }
    }
    let links: serde_json::Map<String, Value> =
        mods.iter().flat_map(|m| &m.toml.nix.links).map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({
        "modules": per_module,
        "moduleNames": mods.iter().map(|m| &m.name).collect::<Vec<_>>(),
        "nixPackages": packages,
        "nixLinks": links,
        "nixFirmware": firmware,
        "users": manifest::all(mods, |m| &m.users),
        "groups": manifest::all(mods, |m| &m.groups),
        "systemUsers": system_users(mods),
        "initramfsKernelModules": manifest::all(mods, |m| &m.initramfs.kernel_modules),
        "dropKernelModules": manifest::all(mods, |m| &m.prune.drop_kernel_modules),
        "requireKernelModules": manifest::all(mods, |m| &m.prune.require_kernel_modules),
        "workspaceBinaries": manifest::all(mods, |m| &m.workspace.binaries),
        "modulesWithoutNixPackages": mods
            .iter()
            .filter(|m| m.toml.nix.packages.is_empty() && m.toml.nix.firmware.is_empty())
            .map(|m| &m.name)
            .collect::<Vec<_>>(),
    })
}

fn system_users(mods: &[Module]) -> Vec<manifest::SystemUser> {
    manifest::all(mods, |m| &m.system_users)
}

#[test]
#[ignore = "needs nix-instantiate: run with `cargo xtask test`"]
fn the_pure_nix_part_reads_the_manifests_as_the_rust_builder_does() {
    let mods = manifest::load(&repo().join("modules")).unwrap();
    let nix: Value = serde_json::from_str(&nix_instantiate(&[
        "--eval",
        "--strict",
        "--json",
        "-E",
        "import ./nix/manifest.nix { }",
    ]))
    .unwrap();
    let rust = rust_view(&mods);
    for key in rust.as_object().unwrap().keys() {
        assert_eq!(nix[key], rust[key], "nix/manifest.nix and the Rust builder disagree on `{key}`");
    }
    assert_eq!(nix.as_object().unwrap().len(), rust.as_object().unwrap().len(), "{nix:#}");
    assert_eq!(nix["modulesWithoutNixPackages"], json!([]), "every module needs a [nix] package list");
    assert!(nix["users"].as_array().unwrap().iter().any(|u| u["name"] == "op"));
}

#[test]
#[ignore = "needs nix-instantiate: run with `cargo xtask test`"]
fn a_module_without_nix_packages_is_reported() {
    let dir = repo().join("target/test-scratch/nix-manifest");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("lonely")).unwrap();
    std::fs::write(dir.join("lonely/module.toml"), "description = \"x\"\n[debian]\npackages = [\"hello\"]\n").unwrap();
    let expr = format!("(import ./nix/manifest.nix {{ modulesDir = {}; }}).modulesWithoutNixPackages", dir.display());
    let out = nix_instantiate(&["--eval", "--strict", "--json", "-E", &expr]);
    assert_eq!(out.trim(), "[\"lonely\"]");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// flake.lock pins nixpkgs to the known-good nixos-25.11 revision (DESIGN.md section 2).
#[test]
fn the_lock_pins_the_known_good_nixpkgs() {
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(repo().join("flake.lock")).unwrap()).unwrap();
    let node = &lock["nodes"]["nixpkgs"];
    assert_eq!(node["locked"]["rev"], "b6018f87da91d19d0ab4cf979885689b469cdd41");
    assert_eq!(node["locked"]["narHash"], "sha256-twXPFqFsrrY5r28Zh7Homgcp2gUMBgQ6WDS98Q/3xFI=");
    assert_eq!(node["locked"]["lastModified"], 1782847189);
    assert_eq!(node["original"]["ref"], "nixos-25.11");
    assert_eq!(lock["nodes"]["root"]["inputs"]["nixpkgs"], "nixpkgs");
}

/// The flake builds from a filtered copy of the repository: a workspace member left out of
/// it would make every Rust derivation fail on a machine with nixpkgs, which CI here cannot
/// see by building.
#[test]
fn the_nix_source_keeps_every_workspace_member() {
    let nix = std::fs::read_to_string(repo().join("nix/lightwhale.nix")).unwrap();
    let line =
        nix.lines().find(|l| l.trim_start().starts_with("kept = [")).expect("the kept list in nix/lightwhale.nix");
    let kept: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    let cargo: toml::Value = toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let members = cargo["workspace"]["members"].as_array().expect("workspace members");
    assert!(!members.is_empty());
    for m in members {
        let m = m.as_str().unwrap();
        assert!(kept.contains(&m), "workspace member {m} is missing from `kept` in nix/lightwhale.nix");
    }
    assert!(kept.contains(&"Cargo.lock") && kept.contains(&"modules"));
}
