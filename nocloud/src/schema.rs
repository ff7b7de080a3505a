//! The cloud-config keys Lightwhale reads, as serde types over the YAML. Keys cloud-init
//! spells in several shapes (a string or a list, `sudo: false` or a rule) get small
//! visitors of their own instead of untagged enums: that keeps the line numbers of errors
//! and lets `serde_ignored` name unknown keys inside them (`users.1.uid`).
//!
//! Keys that exist in cloud-init but have no place on Lightwhale (scripts, packages) are
//! fields of type `Refuse` so that they are reported with a reason, not as unknown.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// A key that is read only to say why it is refused.
pub type Refuse = Option<IgnoredAny>;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CloudConfig {
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    pub prefer_fqdn_over_hostname: Option<bool>,
    pub preserve_hostname: Option<bool>,
    pub manage_etc_hosts: Option<BoolOrText>,
    pub ssh_authorized_keys: Strings,
    pub ssh_pwauth: Option<BoolOrText>,
    pub password: Option<String>,
    pub chpasswd: Option<Chpasswd>,
    pub groups: Option<Groups>,
    pub users: Option<Users>,
    pub write_files: Vec<WriteFile>,
    pub ntp: Option<Ntp>,

    // Refused: Lightwhale runs software in containers and has no package manager.
    pub runcmd: Refuse,
    pub bootcmd: Refuse,
    pub packages: Refuse,
    pub package_update: Refuse,
    pub package_upgrade: Refuse,
    pub package_reboot_if_required: Refuse,
    pub apt: Refuse,
    pub snap: Refuse,
    pub yum_repos: Refuse,
    pub disk_setup: Refuse,
    pub fs_setup: Refuse,
    pub mounts: Refuse,
    pub ssh_import_id: Refuse,
}

impl CloudConfig {
    /// The refused keys present, each with the reason.
    pub fn refused(&self) -> Vec<(&'static str, &'static str)> {
        const SCRIPT: &str = "Lightwhale runs no scripts at boot; run software as containers (a Compose app under /etc/lightwhale/compose/<name>/compose.yaml)";
        const PACKAGES: &str = "the system image is read-only and has no package manager; software comes as containers";
        const DISKS: &str =
            "disks are not partitioned or mounted from a seed; persistence is claimed with the magic header";
        present(&[
            ("runcmd", self.runcmd.is_some(), SCRIPT),
            ("bootcmd", self.bootcmd.is_some(), SCRIPT),
            ("packages", self.packages.is_some(), PACKAGES),
            ("package_update", self.package_update.is_some(), PACKAGES),
            ("package_upgrade", self.package_upgrade.is_some(), PACKAGES),
            ("package_reboot_if_required", self.package_reboot_if_required.is_some(), PACKAGES),
            ("apt", self.apt.is_some(), PACKAGES),
            ("snap", self.snap.is_some(), PACKAGES),
            ("yum_repos", self.yum_repos.is_some(), PACKAGES),
            ("disk_setup", self.disk_setup.is_some(), DISKS),
            ("fs_setup", self.fs_setup.is_some(), DISKS),
            ("mounts", self.mounts.is_some(), DISKS),
            ("ssh_import_id", self.ssh_import_id.is_some(), IMPORT_REFUSED),
        ])
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Chpasswd {
    pub expire: Option<bool>,
    /// Legacy form: `user:password` lines (one string) or a list of them.
    pub list: Strings,
    pub users: Vec<ChpasswdUser>,
}

#[derive(Debug, Deserialize)]
pub struct ChpasswdUser {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    /// `text`, `hash` or `RANDOM`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// Pure: the (key, reason) of the refused keys that are present.
fn present(keys: &[(&'static str, bool, &'static str)]) -> Vec<(&'static str, &'static str)> {
    keys.iter().filter(|(_, given, _)| *given).map(|(k, _, why)| (*k, *why)).collect()
}

/// Why `ssh_import_id` (top level or a user's) is refused.
pub const IMPORT_REFUSED: &str = "keys are not fetched from Launchpad or GitHub at boot (the seed is applied before the network is up); give them in ssh_authorized_keys";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct User {
    pub name: String,
    pub gecos: Option<String>,
    pub groups: Strings,
    pub shell: Option<String>,
    pub ssh_authorized_keys: Strings,
    /// cloud-init's `passwd` is a hash, like `hashed_passwd`.
    pub passwd: Option<String>,
    pub hashed_passwd: Option<String>,
    pub plain_text_passwd: Option<String>,
    pub lock_passwd: Option<bool>,
    pub sudo: Sudo,
    // Read to be refused with a line each.
    pub ssh_import_id: Refuse,
    pub system: Refuse,
    pub homedir: Refuse,
    pub primary_group: Refuse,
    pub uid: Refuse,
}

impl User {
    /// The keys of this user that are refused, each with the reason.
    pub fn refused(&self) -> Vec<(&'static str, &'static str)> {
        present(&[
            ("ssh_import_id", self.ssh_import_id.is_some(), IMPORT_REFUSED),
            (
                "system",
                self.system.is_some(),
                "system accounts come with the image; users from a seed are regular users (uid 1000 and up)",
            ),
            ("homedir", self.homedir.is_some(), "a user's home is /home/<name>, on the persistence disk"),
            (
                "primary_group",
                self.primary_group.is_some(),
                "a user's primary group is its own, named like it; add others with groups",
            ),
            ("uid", self.uid.is_some(), "uids are given from 1000 up, the first free one"),
        ])
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct WriteFile {
    pub path: String,
    pub content: Option<String>,
    pub encoding: Option<String>,
    pub owner: Option<String>,
    pub permissions: Option<String>,
    pub append: Option<bool>,
    /// Files are always written after the users are made, so `defer` changes nothing.
    pub defer: Option<bool>,
    /// Fetching content from a URL at boot.
    pub source: Refuse,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Ntp {
    pub enabled: Option<bool>,
    pub servers: Strings,
    pub pools: Strings,
}

/// A string or a list of strings (numbers and booleans read as their text). cloud-init
/// also splits a single string on commas for lists of names; callers that want that call
/// `split_commas`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Strings(pub Vec<String>);

impl Strings {
    pub fn split_commas(&self) -> Vec<String> {
        self.0.iter().flat_map(|s| s.split(',')).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }
}

struct StringsVisitor;

impl<'de> Visitor<'de> for StringsVisitor {
    type Value = Strings;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Strings, E> {
        Ok(Strings(vec![v.to_string()]))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Strings, E> {
        Ok(Strings(vec![v.to_string()]))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Strings, E> {
        Ok(Strings(vec![v.to_string()]))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Strings, E> {
        Ok(Strings(vec![v.to_string()]))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strings, E> {
        Ok(Strings(vec![v.to_string()]))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Strings, E> {
        Ok(Strings::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<Strings, E> {
        Ok(Strings::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
        let mut v = Vec::new();
        while let Some(s) = seq.next_element::<String>()? {
            v.push(s);
        }
        Ok(Strings(v))
    }
}

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strings, D::Error> {
        d.deserialize_any(StringsVisitor)
    }
}

/// `true`/`false` (YAML 1.1 `yes`/`no` too), or a word such as `unchanged` or `localhost`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoolOrText {
    Bool(bool),
    Text(String),
}

impl<'de> Deserialize<'de> for BoolOrText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BoolOrText, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BoolOrText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or a word")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<BoolOrText, E> {
                Ok(BoolOrText::Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BoolOrText, E> {
                Ok(BoolOrText::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `sudo:` of a user: a rule, a list of rules, or `false`/nothing for none.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sudo(pub Vec<String>);

impl<'de> Deserialize<'de> for Sudo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sudo, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Sudo;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sudoers rule, a list of rules, or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Sudo, E> {
                if v {
                    Err(E::custom("sudo: true is not a rule; write one, e.g. \"ALL=(ALL) NOPASSWD:ALL\""))
                } else {
                    Ok(Sudo::default())
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Sudo, E> {
                Ok(Sudo(vec![v.to_string()]))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Sudo, E> {
                Ok(Sudo::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Sudo, E> {
                Ok(Sudo::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Sudo, A::Error> {
                StringsVisitor.visit_seq(seq).map(|s| Sudo(s.0))
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of `users:`: `default` (the distribution's user, `op` here), a name, or a
/// mapping with the user's settings.
#[derive(Debug)]
pub enum UserItem {
    Default,
    Name(String),
    Full(User),
}

/// `users:` as a list, or one comma-separated string.
#[derive(Debug, Default)]
pub struct Users(pub Vec<UserItem>);

fn user_item_from_str(s: &str) -> UserItem {
    if s == "default" {
        UserItem::Default
    } else {
        UserItem::Name(s.to_string())
    }
}

impl<'de> Deserialize<'de> for UserItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UserItem, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UserItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`default`, a user name, or a mapping with `name:`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<UserItem, E> {
                Ok(user_item_from_str(v.trim()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<UserItem, A::Error> {
                User::deserialize(de::value::MapAccessDeserializer::new(map)).map(UserItem::Full)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Users, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Users;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of users")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Users, E> {
                Ok(Users(Strings(vec![v.into()]).split_commas().iter().map(|s| user_item_from_str(s)).collect()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Users, A::Error> {
                let mut v = Vec::new();
                while let Some(u) = seq.next_element::<UserItem>()? {
                    v.push(u);
                }
                Ok(Users(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `groups:`: names, `name: [members]` mappings, or a mix in a list.
#[derive(Debug, Default)]
pub struct Groups(pub Vec<(String, Vec<String>)>);

struct GroupMap(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for GroupMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GroupMap, D::Error> {
        d.deserialize_map(GroupsVisitor).map(|g| GroupMap(g.0))
    }
}

struct GroupsVisitor;

impl<'de> Visitor<'de> for GroupsVisitor {
    type Value = Groups;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("group names, or `name: [members]`")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Groups, E> {
        Ok(Groups(Strings(vec![v.into()]).split_commas().into_iter().map(|n| (n, Vec::new())).collect()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Groups, A::Error> {
        let mut v = Vec::new();
        while let Some((name, members)) = map.next_entry::<String, Strings>()? {
            v.push((name, members.split_commas()));
        }
        Ok(Groups(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Groups, A::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Name(String),
            Map(GroupMap),
        }
        let mut v = Vec::new();
        while let Some(item) = seq.next_element::<Item>()? {
            match item {
                Item::Name(n) => v.push((n, Vec::new())),
                Item::Map(m) => v.extend(m.0),
            }
        }
        Ok(Groups(v))
    }
}

impl<'de> Deserialize<'de> for Groups {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Groups, D::Error> {
        d.deserialize_any(GroupsVisitor)
    }
}

/// meta-data: the keys NoCloud defines that Lightwhale uses.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MetaData {
    #[serde(rename = "instance-id")]
    pub instance_id: Option<String>,
    #[serde(rename = "local-hostname")]
    pub local_hostname: Option<String>,
    /// SSH keys for the default user, in any of the forms cloud-init reads: one string (keys
    /// on lines of their own), a list, or EC2's map of key names to a key or a list.
    #[serde(rename = "public-keys")]
    pub public_keys: Option<PublicKeys>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PublicKeys {
    Text(String),
    List(Vec<String>),
    Named(BTreeMap<String, Strings>),
}

impl PublicKeys {
    /// Every key, one per item, empty items (EC2's map ends each list with '') left out.
    pub fn keys(self) -> Vec<String> {
        let items: Vec<String> = match self {
            PublicKeys::Text(t) => vec![t],
            PublicKeys::List(l) => l,
            PublicKeys::Named(m) => m.into_values().flat_map(|s| s.0).collect(),
        };
        items.iter().flat_map(|i| i.lines()).map(str::trim).filter(|k| !k.is_empty()).map(str::to_string).collect()
    }
}
