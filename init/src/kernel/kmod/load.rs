//! Loads modules with `finit_module`. Debian ships them xz-compressed and the kernel
//! decompresses them itself (CONFIG_MODULE_DECOMPRESS), so no userspace xz is needed.

use super::{AliasTable, DepTable};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("reading module index {path}: {source}")]
    Index { path: PathBuf, source: std::io::Error },
    #[error("opening module {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("kernel refused module {name} ({path}): {source}")]
    Insert { name: String, path: PathBuf, source: std::io::Error },
}

const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

pub struct Loader {
    dir: PathBuf,
    pub deps: DepTable,
    pub aliases: AliasTable,
}

impl Loader {
    /// `dir` is `/lib/modules/<release>` (of whichever root holds the modules).
    pub fn open(dir: &Path) -> Result<Loader, ModuleError> {
        let read = |name: &str, required: bool| -> Result<String, ModuleError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(s),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(source) => Err(ModuleError::Index { path, source }),
            }
        };
        Ok(Loader {
            dir: dir.to_path_buf(),
            deps: DepTable::parse(&read("modules.dep", true)?, &read("modules.builtin", false)?),
            aliases: AliasTable::parse(&read("modules.alias", false)?),
        })
    }

    /// Loads `names` and their dependencies. Returns the names newly inserted; a module that
    /// fails is reported and skipped so one bad driver does not stop the boot. Modules
    /// whose dependencies are in go in parallel, one per CPU: inserting a module is mostly
    /// CPU work (relocations, symbol lookups) and boots load dozens of them.
    pub fn load<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> (Vec<String>, Vec<ModuleError>) {
        let (order, unknown) = self.deps.load_order(names);
        for u in unknown {
            log::debug!("module {u}: not in modules.dep, skipped");
        }
        let pending: Vec<String> = order.into_iter().filter(|n| !is_loaded(n)).collect();
        let threads =
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(4).min(pending.len().max(1));
        let state =
            std::sync::Mutex::new(Schedule { pending, running: Vec::new(), loaded: Vec::new(), errors: Vec::new() });
        let wake = std::sync::Condvar::new();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| self.worker(&state, &wake));
            }
        });
        let done = state.into_inner().unwrap_or_else(|e| e.into_inner());
        (done.loaded, done.errors)
    }

    fn worker(&self, state: &std::sync::Mutex<Schedule>, wake: &std::sync::Condvar) {
        let mut g = state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if g.pending.is_empty() {
                return;
            }
            // A module is ready when none of its dependencies is still waiting or loading.
            let ready = g
                .pending
                .iter()
                .position(|m| self.deps.deps_of(m).iter().all(|d| !g.pending.contains(d) && !g.running.contains(d)));
            let Some(i) = ready else {
                g = wake.wait(g).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let name = g.pending.remove(i);
            g.running.push(name.clone());
            drop(g);
            let rel = self.deps.path(&name).unwrap_or_default().to_string();
            let result = insert(&name, &self.dir.join(rel));
            g = state.lock().unwrap_or_else(|e| e.into_inner());
            g.running.retain(|m| m != &name);
            match result {
                Ok(true) => g.loaded.push(name),
                Ok(false) => {}
                Err(e) => g.errors.push(e),
            }
            wake.notify_all();
        }
    }
}

struct Schedule {
    pending: Vec<String>,
    running: Vec<String>,
    loaded: Vec<String>,
    errors: Vec<ModuleError>,
}

pub fn is_loaded(name: &str) -> bool {
    Path::new("/sys/module").join(name).join("initstate").exists()
}

/// Returns Ok(false) when the kernel already had it (a race with autoloading is harmless).
fn insert(name: &str, path: &Path) -> Result<bool, ModuleError> {
    let file = File::open(path).map_err(|source| ModuleError::Open { path: path.to_path_buf(), source })?;
    let compressed = path.extension().map(|e| e == "xz" || e == "zst" || e == "gz").unwrap_or(false);
    let flags = if compressed { MODULE_INIT_COMPRESSED_FILE } else { 0 };
    let params = c"";
    // SAFETY: fd is valid for the call and params is a NUL-terminated string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), flags) };
    if rc == 0 {
        log::debug!("module {name} loaded");
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EEXIST) {
        return Ok(false);
    }
    Err(ModuleError::Insert { name: name.to_string(), path: path.to_path_buf(), source: err })
}
