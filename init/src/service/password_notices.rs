//! Keeping the default-password notices in step with /etc/shadow (what they say and
//! when they apply: `lightwhale_types::password`).

pub use lightwhale_types::password::*;
use std::path::Path;

/// Keeps the three notices in step with /etc/shadow.
pub struct Notices {
    image_hash: Option<String>,
    shown: Option<bool>,
}

impl Notices {
    /// `image_shadow`: the image's /etc/shadow, read before the overlays.
    pub fn new(image_shadow: &str) -> Notices {
        Notices { image_hash: hash_of(image_shadow, USER).map(str::to_string), shown: None }
    }

    /// Rewrites the notices when the state changed (or on the first call).
    pub fn refresh(&mut self) {
        let live = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
        let default = is_default(&live, self.image_hash.as_deref());
        if self.shown == Some(default) {
            return;
        }
        let text = if default { warning() } else { String::new() };
        for (path, body) in [
            (ISSUE, text.clone()),
            (MOTD, text.clone()),
            (SSH_BANNER, if default { format!("Lightwhale\n{text}") } else { "Lightwhale\n".to_string() }),
        ] {
            let p = Path::new(path);
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Err(e) = std::fs::write(p, body) {
                log::warn!("writing {path}: {e}");
            }
        }
        if default {
            log::warn!("{WARNING}; change it with `{CHANGE_COMMAND}`");
        } else if self.shown.is_some() {
            log::info!("the password of {USER} was changed; the default-password warning is gone");
        }
        self.shown = Some(default);
    }
}
