//! The default password warning. The image is immutable and /etc is an overlay, so whether
//! `op` still has the password everyone knows cannot be baked in: the init remembers op's
//! hash from the image's own /etc/shadow (read before the overlays go on), compares it with
//! the live /etc/shadow at boot and every half minute after, and writes the warning where
//! the console login prompt (/etc/issue.d), the motd after login (/run/motd.d) and the SSH
//! banner (sshd_config.d/lightwhale.conf) pick it up.

pub const USER: &str = "op";
/// The one command that changes it (sudo asks for the current password, then passwd for
/// the new one twice).
pub const CHANGE_COMMAND: &str = "sudo passwd op";
pub const ISSUE: &str = "/run/lightwhale/password.issue";
/// Holds the warning while op has the default password, empty otherwise.
pub const MOTD: &str = "/run/motd.d/lightwhale-password";
pub const SSH_BANNER: &str = "/run/lightwhale/ssh-banner";
/// What the warning says, for the log and for tests that look for it.
pub const WARNING: &str = "the password of op is still the default, opsecret";
/// The first line of the warning on the screen.
pub const WARNING_HEAD: &str = "WARNING: the password of op is still the default, opsecret";

/// Pure: `user`'s password hash in the text of a shadow file.
pub fn hash_of<'a>(shadow: &'a str, user: &str) -> Option<&'a str> {
    shadow.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(user)).then(|| f.next()).flatten().filter(|h| !h.is_empty())
    })
}

/// Pure: true while the live hash is the one the image was built with.
pub fn is_default(live_shadow: &str, image_hash: Option<&str>) -> bool {
    image_hash.is_some_and(|h| hash_of(live_shadow, USER) == Some(h))
}

/// Whether the init's last check found the default password (for `lightwhale status`,
/// which runs without the right to read /etc/shadow).
pub fn default_notice_shown() -> bool {
    std::fs::metadata(MOTD).is_ok_and(|m| m.len() > 0)
}

pub fn warning() -> String {
    let bar = "!".repeat(72);
    format!(
        "{bar}\n{WARNING_HEAD},\nwhich is public knowledge. Anyone who reaches this machine can log in.\nChange it now:   {CHANGE_COMMAND}\n{bar}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = "root:*:20000:0:99999:7:::\nop:$6$salt$abc:20000:0:99999:7:::\n";

    #[test]
    fn default_until_the_hash_changes() {
        let image = hash_of(IMAGE, USER);
        assert_eq!(image, Some("$6$salt$abc"));
        assert!(is_default(IMAGE, image));
        assert!(!is_default("op:$y$j9T$new$xyz:20001:0:99999:7:::\n", image));
        assert!(!is_default("root:*:1::::::\n", image), "no op at all");
        assert!(!is_default(IMAGE, None), "an image without op warns about nothing");
        assert_eq!(hash_of("op::1::::::\n", USER), None);
        assert_eq!(hash_of("operator:$6$x:1::::::\n", USER), None);
    }

    #[test]
    fn warning_names_the_command() {
        assert!(WARNING_HEAD.ends_with(WARNING));
        let w = warning();
        assert!(w.contains(WARNING_HEAD) && w.contains(CHANGE_COMMAND));
        // agetty interprets backslash escapes in issue files.
        assert!(!w.contains('\\'));
    }
}
