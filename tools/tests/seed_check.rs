//! `lightwhale seed check` as a person runs it: the built binary on seed directories, its
//! output and its exit code.

use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lightwhale")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_shipped_example_checks_clean_and_a_broken_seed_fails() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules/provision/example");
    let (code, text) = run(&["seed", "check", example.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("hostname web1") && text.contains("0 errors"), "{text}");

    let dir = std::env::temp_dir().join(format!("lw-seed-check-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("meta-data"), "instance-id: broken\n").unwrap();
    std::fs::write(dir.join("user-data"), "#cloud-config\nruncmd: [ls]\nhostname: [a\n").unwrap();
    let (code, text) = run(&["seed", "check", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("user-data line 3 column"), "{text}");
    std::fs::write(dir.join("user-data"), "#cloud-config\nruncmd: [ls]\n").unwrap();
    assert_eq!(run(&["seed", "check", dir.to_str().unwrap()]).0, 0, "a refusal alone passes");
    let (code, text) = run(&["seed", "check", "--strict", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "--strict fails on a refusal: {text}");
    let (code, json) = run(&["seed", "check", "--json", dir.to_str().unwrap()]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["refused"][0]["what"], "user-data: runcmd");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(run(&["seed", "check", "/no/such/seed"]).0, 2);
}
