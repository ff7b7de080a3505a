//! The seed as the init reads it: in the sandboxed child, at the documented limits.

use super::*;

/// The documented limits hold end to end: a user-data just under 512 KiB holding files of
/// just under 160 KiB in all comes back whole from the sandboxed child, as the init reads it.
#[test]
fn a_seed_at_the_documented_limits_comes_back_whole_from_the_sandboxed_reader() {
    use std::fmt::Write;
    let dir = std::env::temp_dir().join(format!("lw-seed-limits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let line = "0123456789abcdef".repeat(4);
    let block = |lines: usize| {
        (0..lines).fold(String::new(), |mut s, _| {
            let _ = writeln!(s, "      {line}");
            s
        })
    };
    // Two files, 159 KiB of content in all, one of them base64 (cloud-init's b64 encoding).
    let plain = block(1400);
    let binary = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![0xa5u8; 70 * 1024]);
    let mut user = format!(
        "#cloud-config\nwrite_files:\n  - path: /etc/big\n    content: |\n{plain}  - path: /var/www/blob\n    encoding: b64\n    content: {binary}\nssh_authorized_keys:\n"
    );
    let mut n = 0;
    while user.len() < parse::MAX_USER_DATA - 200 {
        let _ = writeln!(user, "  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{n:032} key{n}@example");
        n += 1;
    }
    assert!(user.len() <= parse::MAX_USER_DATA, "{}", user.len());
    std::fs::write(dir.join("user-data"), &user).unwrap();
    std::fs::write(dir.join("meta-data"), "instance-id: limits\n").unwrap();
    let p = read_sandboxed(&dir, &sandbox::Sandbox::default()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let sizes: Vec<usize> = p.user.files.iter().map(|f| f.content().len()).collect();
    assert_eq!(sizes, [plain.len() - 6 * 1400, 70 * 1024]);
    assert!(sizes.iter().sum::<usize>() <= parse::MAX_FILES_TOTAL && sizes.iter().sum::<usize>() > 150 * 1024);
    assert_eq!(p.user.op_keys.len(), n, "every key arrives");
}
