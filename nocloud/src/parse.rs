//! The seed's files to `Parsed`, in the sandboxed child: reading with size limits, the YAML,
//! the encodings of `write_files`, and hashing plain passwords at once (so a clear-text
//! password never leaves the child). Nothing here decides what is allowed on the system:
//! that is `plan`, in PID 1, on the child's answer.

use crate::network;
use crate::schema::{self, CloudConfig, UserItem};
use crate::Refused;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;

pub const META_DATA: &str = "meta-data";
pub const USER_DATA: &str = "user-data";
pub const NETWORK_CONFIG: &str = "network-config";
pub const VENDOR_DATA: &str = "vendor-data";

/// Largest user-data read; meta-data and network-config get SMALL_FILE.
pub const MAX_USER_DATA: usize = 512 * 1024;
pub const SMALL_FILE: usize = 64 * 1024;
/// All decoded `write_files` contents together. The child's answer carries them to PID 1,
/// which bounds what it accepts from a sandboxed child.
pub const MAX_FILES_TOTAL: usize = 160 * 1024;

/// The user-data header cloud-init requires for a cloud-config.
pub const CLOUD_CONFIG: &str = "#cloud-config";

/// What the child found in the seed. File contents travel base64-encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parsed {
    pub instance_id: String,
    /// meta-data named no instance-id: `instance_id` is derived from the seed's contents.
    pub instance_id_from_content: bool,
    pub local_hostname: Option<String>,
    pub user: UserData,
    pub network: Vec<network::Ethernet>,
    pub unknown_keys: Vec<String>,
    pub refused: Vec<Refused>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserData {
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    pub prefer_fqdn: bool,
    pub preserve_hostname: bool,
    /// `manage_etc_hosts: false` leaves /etc/hosts alone; anything else keeps the
    /// hostname's line in it (sudo complains about a hostname it cannot resolve).
    pub manage_etc_hosts: bool,
    /// Top-level `ssh_authorized_keys`: for `op`.
    pub op_keys: Vec<String>,
    pub ssh_pwauth: Option<bool>,
    /// (user, crypt hash) from `password` (for op) and `chpasswd`.
    pub passwords: Vec<(String, String)>,
    pub groups: Vec<(String, Vec<String>)>,
    pub users: Vec<NewUser>,
    pub files: Vec<File>,
    pub ntp: Option<Ntp>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    pub name: String,
    pub gecos: Option<String>,
    pub groups: Vec<String>,
    pub shell: Option<String>,
    pub keys: Vec<String>,
    /// A crypt hash (given, or made here from a plain password).
    pub hash: Option<String>,
    /// cloud-init's default: a user from `users:` cannot log in with a password.
    pub lock: bool,
    pub sudo: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub path: String,
    pub content_b64: String,
    pub owner: Option<String>,
    pub mode: Option<u32>,
    pub append: bool,
}

impl File {
    pub fn content(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(&self.content_b64).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ntp {
    pub enabled: bool,
    pub servers: Vec<String>,
    pub pools: Vec<String>,
}

/// Makes crypt salts; injected so tests are deterministic.
pub type Salt<'a> = &'a mut dyn FnMut() -> String;

/// A salt from the kernel's random numbers.
pub fn random_salt() -> String {
    let mut buf = [0u8; 16];
    // SAFETY: buf is valid for writes of its length.
    unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    let a = lightwhale_types::accounts::CRYPT_ALPHABET;
    buf.iter().map(|b| a[(*b as usize) % a.len()] as char).collect()
}

/// Reads at most `limit` bytes of `dir/name`: None when it does not exist.
fn read_limited(dir: &Path, name: &str, limit: usize) -> Result<Option<Vec<u8>>, String> {
    let path = dir.join(name);
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{name}: cannot be read: {e}")),
    };
    let mut buf = Vec::new();
    f.take(limit as u64 + 1).read_to_end(&mut buf).map_err(|e| format!("{name}: cannot be read: {e}"))?;
    if buf.len() > limit {
        return Err(format!("{name} is larger than {} KiB; not read", limit / 1024));
    }
    Ok(Some(buf))
}

/// The whole seed directory, as the child reads it.
pub fn read_seed(dir: &Path, salt: Salt) -> Parsed {
    let mut errors = Vec::new();
    let mut read = |name: &str, limit: usize| match read_limited(dir, name, limit) {
        Ok(b) => b,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let meta = read(META_DATA, SMALL_FILE);
    let user = read(USER_DATA, MAX_USER_DATA);
    let net = read(NETWORK_CONFIG, SMALL_FILE);
    let vendor = read(VENDOR_DATA, SMALL_FILE);
    let mut p = parse_seed(meta.as_deref(), user.as_deref(), net.as_deref(), salt);
    if vendor.is_some_and(|v| !v.iter().all(u8::is_ascii_whitespace)) {
        p.refused.push(Refused::new(
            VENDOR_DATA,
            "only meta-data, user-data and network-config are read; put it into user-data",
        ));
    }
    errors.append(&mut p.errors);
    p.errors = errors;
    p
}

/// "user-data line 4 column 3: expected a string" from a YAML error.
fn yaml_error(file: &str, e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let text = text.trim_start_matches("error: ");
    match e.location() {
        Some(l) => {
            let prefix = format!("line {} column {}: ", l.line(), l.column());
            let suffix = format!(" at line {}, column {}", l.line(), l.column());
            let text = text.trim_start_matches(&prefix).trim_end_matches(&suffix);
            format!("{file} line {} column {}: {text}", l.line(), l.column())
        }
        None => format!("{file}: {text}"),
    }
}

/// Keys read only to be refused with a reason (`schema::Refuse`): not "unknown". A `*`
/// matches any one part of the path.
const REFUSED_PATHS: &[&str] = &[
    "runcmd",
    "bootcmd",
    "packages",
    "package_update",
    "package_upgrade",
    "package_reboot_if_required",
    "apt",
    "snap",
    "yum_repos",
    "disk_setup",
    "fs_setup",
    "mounts",
    "ssh_import_id",
    "users.*.ssh_import_id",
    "users.*.system",
    "users.*.homedir",
    "users.*.primary_group",
    "users.*.uid",
    "write_files.*.source",
    "wifis",
    "bonds",
    "bridges",
    "vlans",
    "config",
    "network.wifis",
    "network.bonds",
    "network.bridges",
    "network.vlans",
    "network.config",
];

/// serde_ignored's path without its `?` parts (an Option on the way), or None when the
/// key is one that is refused rather than unknown.
fn unknown_path(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('.').filter(|p| *p != "?").collect();
    let refused = REFUSED_PATHS.iter().any(|pat| {
        let pat: Vec<&str> = pat.split('.').collect();
        parts.len() >= pat.len() && pat.iter().zip(&parts).all(|(a, b)| *a == "*" || a == b)
    });
    (!refused).then(|| parts.join("."))
}

/// Deserializes `text` into T, listing every key T does not read as `file: path`.
fn yaml<T: serde::de::DeserializeOwned>(file: &str, text: &str, unknown: &mut Vec<String>) -> Result<T, String> {
    use serde_saphyr::options::DuplicateKeyPolicy;
    match yaml_with(file, text, unknown, DuplicateKeyPolicy::Error) {
        // PyYAML, which cloud-init reads seeds with, keeps the last of repeated keys (two of
        // cloud-init's own examples repeat one). Read so only when a key repeats: keeping the
        // last buffers whole mappings, many times slower on a large seed.
        Err(serde_saphyr::Error::DuplicateMappingKey { .. }) => {
            yaml_with(file, text, unknown, DuplicateKeyPolicy::LastWins).map_err(|e| yaml_error(file, &e))
        }
        r => r.map_err(|e| yaml_error(file, &e)),
    }
}

fn yaml_with<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    unknown: &mut Vec<String>,
    duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy,
) -> Result<T, serde_saphyr::Error> {
    let mut found = Vec::new();
    let mut options = serde_saphyr::Options::default();
    // `content: !!binary |` (cloud-init's examples for gzip'd files) arrives as its base64
    // text, decoded with the entry's `encoding`.
    options.ignore_binary_tag_for_string = true;
    options.with_snippet = false;
    options.duplicate_keys = duplicate_keys;
    let r = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_ignored::deserialize(de, |path| {
            if let Some(p) = unknown_path(&path.to_string()) {
                found.push(format!("{file}: {p}"));
            }
        })
    });
    if r.is_ok() {
        unknown.append(&mut found);
    }
    r
}

fn text<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("{file} is not UTF-8 text (byte {})", e.valid_up_to()))
}

fn blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// Pure: the three files (None when absent) to `Parsed`.
pub fn parse_seed(meta: Option<&[u8]>, user: Option<&[u8]>, net: Option<&[u8]>, salt: Salt) -> Parsed {
    let mut p = Parsed::default();
    let mut instance_id = None;
    let mut meta_keys = Vec::new();
    if let Some(m) = meta.filter(|m| !blank(m)) {
        match text(META_DATA, m).and_then(|t| yaml::<schema::MetaData>(META_DATA, t, &mut p.unknown_keys)) {
            Ok(md) => {
                instance_id = md.instance_id.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
                p.local_hostname = md.local_hostname.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
                meta_keys = md.public_keys.map(schema::PublicKeys::keys).unwrap_or_default();
            }
            Err(e) => p.errors.push(e),
        }
    }
    p.instance_id = match instance_id {
        Some(id) => id,
        None => {
            p.instance_id_from_content = true;
            content_id(meta, user, net)
        }
    };
    if let Some(u) = user {
        user_data(u, salt, &mut p);
    }
    // meta-data's keys are the default user's, as cloud-init gives them.
    p.user.op_keys.extend(meta_keys);
    if let Some(n) = net.filter(|n| !blank(n)) {
        let parsed = text(NETWORK_CONFIG, n)
            .and_then(|t| yaml::<network::RawConfig>(NETWORK_CONFIG, t, &mut p.unknown_keys))
            .and_then(network::from_raw);
        match parsed {
            Ok(n) => {
                p.network = n.ethernets;
                p.refused.extend(n.refused.into_iter().map(|(what, why)| Refused { what, why }));
            }
            Err(e) => p.errors.push(e),
        }
    }
    p
}

/// An instance id for a seed whose meta-data names none: any change to the seed is a new
/// instance, and the same seed is applied once.
pub fn content_id(meta: Option<&[u8]>, user: Option<&[u8]>, net: Option<&[u8]>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [meta, user, net] {
        h.update(part.unwrap_or_default());
        h.update([0]);
    }
    let d = h.finalize();
    format!("content-{}", d.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>())
}

/// What a user-data that is not a cloud-config is, for the refusal.
fn other_format(head: &[u8]) -> Option<&'static str> {
    let starts = |p: &str| head.starts_with(p.as_bytes());
    if starts("#!") {
        Some("it is a script (#!); Lightwhale runs no scripts at boot: run software as containers (a Compose app under /etc/lightwhale/compose/<name>/compose.yaml, placed with write_files)")
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some("it is gzip-compressed; write it as plain #cloud-config text")
    } else if starts("Content-Type:") || starts("MIME-Version:") {
        Some("multi-part MIME user-data is not supported; give one #cloud-config document")
    } else if starts("#include") || starts("#cloud-boothook") || starts("#part-handler") || starts("## template:") {
        Some("only #cloud-config user-data is supported")
    } else {
        None
    }
}

fn user_data(bytes: &[u8], salt: Salt, p: &mut Parsed) {
    if blank(bytes) {
        return;
    }
    if let Some(why) = other_format(bytes) {
        p.refused.push(Refused::new(USER_DATA, why));
        return;
    }
    let t = match text(USER_DATA, bytes) {
        Ok(t) => t,
        Err(e) => return p.errors.push(e),
    };
    if t.lines().next().map(str::trim_end) != Some(CLOUD_CONFIG) {
        return p.errors.push(format!("{USER_DATA} line 1: does not start with {CLOUD_CONFIG}; not read"));
    }
    let cfg: CloudConfig = match yaml(USER_DATA, t, &mut p.unknown_keys) {
        Ok(c) => c,
        Err(e) => return p.errors.push(e),
    };
    for (key, why) in cfg.refused() {
        p.refused.push(Refused::new(&format!("{USER_DATA}: {key}"), why));
    }
    p.user = convert(cfg, salt, p);
}

/// A crypt hash (`$id$...`), as opposed to a password in clear.
pub fn looks_hashed(s: &str) -> bool {
    s.starts_with('$') && s.matches('$').count() >= 3 && !s.contains(char::is_whitespace)
}

fn hash_of(s: &str, salt: Salt) -> String {
    if looks_hashed(s) {
        s.to_string()
    } else {
        lightwhale_types::accounts::sha512_crypt(s, &salt())
    }
}

fn convert(cfg: CloudConfig, salt: Salt, p: &mut Parsed) -> UserData {
    let mut u = UserData {
        hostname: cfg.hostname.map(|s| s.trim().to_string()),
        fqdn: cfg.fqdn.map(|s| s.trim().to_string()),
        prefer_fqdn: cfg.prefer_fqdn_over_hostname.unwrap_or(false),
        preserve_hostname: cfg.preserve_hostname.unwrap_or(false),
        manage_etc_hosts: !matches!(cfg.manage_etc_hosts, Some(schema::BoolOrText::Bool(false))),
        op_keys: cfg.ssh_authorized_keys.0,
        ssh_pwauth: match cfg.ssh_pwauth {
            Some(schema::BoolOrText::Bool(b)) => Some(b),
            _ => None,
        },
        groups: cfg.groups.map(|g| g.0).unwrap_or_default(),
        ..Default::default()
    };
    if let Some(pw) = cfg.password {
        u.passwords.push((crate::DEFAULT_USER.into(), hash_of(&pw, salt)));
    }
    if let Some(c) = cfg.chpasswd {
        chpasswd(c, salt, &mut u, p);
    }
    for item in cfg.users.map(|u| u.0).unwrap_or_default() {
        let user = match item {
            UserItem::Default => continue,
            UserItem::Name(name) => NewUser { name, lock: true, ..Default::default() },
            UserItem::Full(x) => {
                for (key, why) in x.refused() {
                    p.refused.push(Refused::new(&format!("user-data: users {} {key}", x.name.trim()), why));
                }
                let given_hash = x.hashed_passwd.or(x.passwd);
                let hash = match (given_hash, x.plain_text_passwd) {
                    (Some(h), _) => Some(h),
                    (None, Some(plain)) => Some(lightwhale_types::accounts::sha512_crypt(&plain, &salt())),
                    (None, None) => None,
                };
                NewUser {
                    name: x.name.trim().to_string(),
                    gecos: x.gecos,
                    groups: x.groups.split_commas(),
                    shell: x.shell,
                    keys: x.ssh_authorized_keys.0,
                    hash,
                    lock: x.lock_passwd.unwrap_or(true),
                    sudo: x.sudo.0,
                }
            }
        };
        u.users.push(user);
    }
    let mut total = 0;
    for f in cfg.write_files {
        if let Some(file) = write_file(f, &mut total, p) {
            u.files.push(file);
        }
    }
    if let Some(n) = cfg.ntp {
        u.ntp = Some(Ntp { enabled: n.enabled.unwrap_or(true), servers: n.servers.0, pools: n.pools.0 });
    }
    u
}

fn chpasswd(c: schema::Chpasswd, salt: Salt, u: &mut UserData, p: &mut Parsed) {
    if c.expire == Some(true) {
        p.refused.push(Refused::new(
            "user-data: chpasswd.expire",
            "passwords are not expired: there is no console to change them at on a headless machine",
        ));
    }
    for line in c.list.0.iter().flat_map(|l| l.lines()).map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once(':') {
            Some((user, pw)) if pw == "R" || pw == "RANDOM" => p.refused.push(Refused::new(
                &format!("user-data: chpasswd for {user}"),
                "RANDOM passwords are not supported; give a hash",
            )),
            Some((user, pw)) => u.passwords.push((user.trim().into(), hash_of(pw, salt))),
            None => p.errors.push("user-data: chpasswd.list: an entry is not `user:password`".into()),
        }
    }
    for c in c.users {
        let what = format!("user-data: chpasswd for {}", c.name);
        if c.kind.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("random")) {
            p.refused.push(Refused::new(&what, "RANDOM passwords are not supported; give a hash"));
            continue;
        }
        let Some(pw) = c.password else {
            p.refused.push(Refused::new(&what, "no password given"));
            continue;
        };
        match c.kind.as_deref().unwrap_or("hash") {
            "hash" => u.passwords.push((c.name, pw)),
            "text" => u.passwords.push((c.name, lightwhale_types::accounts::sha512_crypt(&pw, &salt()))),
            other => p.refused.push(Refused::new(
                &format!("user-data: chpasswd for {}", c.name),
                &format!("type {other} is not supported; use hash (preferred) or text"),
            )),
        }
    }
}

/// `permissions: '0644'`, `0644` or `644`: cloud-init's modes are octal.
pub fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    let digits = s.strip_prefix("0o").unwrap_or(s);
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

fn write_file(f: schema::WriteFile, total: &mut usize, p: &mut Parsed) -> Option<File> {
    let what = format!("write_files {}", f.path);
    if f.source.is_some() {
        p.refused.push(Refused::new(&what, "`source` (fetching a URL at boot) is not supported; give `content`"));
        return None;
    }
    let content = f.content.unwrap_or_default();
    let bytes = match decode(f.encoding.as_deref(), &content) {
        Ok(b) => b,
        Err(e) => {
            p.errors.push(format!("user-data: {what}: {e}"));
            return None;
        }
    };
    *total += bytes.len();
    if *total > MAX_FILES_TOTAL {
        p.refused.push(Refused::new(
            &what,
            &format!(
                "the files of one seed may hold {} KiB in all; put large files into a container image",
                MAX_FILES_TOTAL / 1024
            ),
        ));
        return None;
    }
    let mode = match f.permissions.as_deref().map(parse_mode) {
        Some(None) => {
            p.errors.push(format!(
                "user-data: {what}: permissions {:?} is not an octal mode like '0644'",
                f.permissions.unwrap_or_default()
            ));
            return None;
        }
        Some(m) => m,
        None => None,
    };
    Some(File {
        path: f.path,
        content_b64: base64::engine::general_purpose::STANDARD.encode(bytes),
        owner: f.owner,
        mode,
        append: f.append.unwrap_or(false),
    })
}

/// cloud-init's `encoding:` values.
/// Base64 as cloud-init decodes it (Python's `base64.b64decode`): characters outside the
/// alphabet are skipped (line breaks, spaces, the `...` of a shortened example), and the
/// unused bits of the last character need not be zero.
pub fn python_b64decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let kept: String = text.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')).collect();
    LENIENT.decode(kept)
}

fn decode(encoding: Option<&str>, content: &str) -> Result<Vec<u8>, String> {
    let b64 = |s: &str| python_b64decode(s).map_err(|e| format!("content is not base64: {e}"));
    let gunzip = |data: Vec<u8>| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&data[..])
            .take(MAX_FILES_TOTAL as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("content is not gzip data: {e}"))?;
        Ok::<_, String>(out)
    };
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("text/plain") | Some("") => Ok(content.as_bytes().to_vec()),
        Some("b64") | Some("base64") => b64(content),
        // A gzip stream is binary: in YAML it is base64 text (`!!binary` or plain).
        Some("gz") | Some("gzip") | Some("gz+base64") | Some("gzip+base64") | Some("gz+b64") | Some("gzip+b64") => {
            gunzip(b64(content)?)
        }
        Some(other) => Err(format!("encoding {other} is not one of b64, gzip, gz+b64, text/plain")),
    }
}
