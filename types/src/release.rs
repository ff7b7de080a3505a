//! `/usr/lib/lightwhale/release`: what the image is (version, build id, build date). The
//! builders write it (image/src/install.rs); /etc/lightwhale-release links to it. The init
//! reads it from /usr, which no one can change, for the build date the clock must not
//! fall behind and for `lightwhale status`.

/// Where the image's release file lives.
pub const PATH: &str = "/usr/lib/lightwhale/release";
/// The link to it people know from /etc.
pub const ETC_LINK: &str = "/etc/lightwhale-release";

/// The fields of a release file (KEY=value lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    pub build_id: String,
    /// Seconds since 1970: every timestamp in the image.
    pub build_date: u64,
}

/// Pure: reads the fields the system needs; unknown keys are ignored.
pub fn parse(text: &str) -> Release {
    let mut r = Release::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "VERSION" => r.version = v.to_string(),
            "BUILD_ID" => r.build_id = v.to_string(),
            "BUILD_DATE" => r.build_date = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    r
}

/// The running image's release (defaults when the file is missing, as in tests).
pub fn current() -> Release {
    parse(&std::fs::read_to_string(PATH).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_version_build_id_and_date() {
        let r = parse("NAME=Lightwhale\nVERSION=0.1.0\nBUILD_ID=abc123\nBUILD_DATE=1795700000\nHOME_URL=x\n");
        assert_eq!(r, Release { version: "0.1.0".into(), build_id: "abc123".into(), build_date: 1_795_700_000 });
        assert_eq!(parse("BUILD_DATE=soon\n").build_date, 0);
    }
}
