//! `setup-wifi`: connects the machine to a WPA2 network at once and at every boot after
//! this one (the configuration lives in /etc, which is kept on the persistence disk).
//! Bad input gets one line saying what to do, and changes nothing.

use clap::Parser;
use lightwhale_tools::wifi::{self, Invalid};
use lightwhale_types::constants::RECHECK_SIGNAL;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Connect this machine to a Wi-Fi network (WPA2 or WPA2/WPA3 with a password): now, and
/// at every boot after this one when /etc persists. DHCP gives it its address.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  sudo setup-wifi --ssid home --password 'correct horse' --country DE\n  sudo setup-wifi --off\n\nOnly the key derived from the password is stored (/etc/wpa_supplicant/lightwhale.conf, mode 600).\n`wpa_cli -i wlan0 status` shows the connection, `ip addr show wlan0` the address."
)]
struct Cli {
    /// The network's name (1 to 32 bytes).
    #[arg(long, value_name = "NAME")]
    ssid: Option<String>,
    /// The network's password: 8 to 63 characters (or the 64-hex-digit key itself).
    #[arg(long, value_name = "PASSWORD")]
    password: Option<String>,
    /// The two-letter code of the country the machine is in (DE, US, GB, ...): it decides
    /// which channels and transmit power are allowed.
    #[arg(long, value_name = "CC")]
    country: Option<String>,
    /// Forget the network and turn Wi-Fi off.
    #[arg(long)]
    off: bool,
}

fn invalid(e: Invalid) -> String {
    format!("{e}; nothing was changed")
}

/// Asks PID 1 to start or stop the services that depend on a configuration file.
fn tell_init() -> Result<(), String> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(1, RECHECK_SIGNAL) } != 0 {
        return Err(format!("telling the init (pid 1) to re-check its services: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Writes the configuration readable by root only, replacing an earlier one at once.
fn write_config(text: &str) -> Result<(), String> {
    let path = Path::new(wifi::CONFIG);
    let dir = path.parent().unwrap_or(Path::new("/etc"));
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(".lightwhale.conf.new");
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("writing {}: {e}", path.display())
    })
}

fn off() -> Result<String, String> {
    lightwhale_tools::root::require("setup-wifi --off")?;
    match std::fs::remove_file(wifi::CONFIG) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok("Wi-Fi was not configured; nothing to do".into())
        }
        Err(e) => return Err(format!("removing {}: {e}", wifi::CONFIG)),
    }
    tell_init()?;
    Ok("Wi-Fi is off: the network is forgotten and wpa_supplicant stops".into())
}

fn run(cli: Cli) -> Result<String, String> {
    if cli.off {
        if cli.ssid.is_some() || cli.password.is_some() || cli.country.is_some() {
            return Err("--off takes no other options; nothing was changed".into());
        }
        return off();
    }
    // Everything is checked before anything is written.
    let ssid = wifi::ssid(cli.ssid.as_deref()).map_err(invalid)?;
    let psk = wifi::psk(cli.password.as_deref(), &ssid).map_err(invalid)?;
    let db = std::fs::read(wifi::REGULATORY_DB)
        .map_err(|e| e.to_string())
        .and_then(|data| wifi::regdb_countries(&data))
        .map_err(|e| invalid(Invalid::NoRegulatoryDb(wifi::REGULATORY_DB.into(), e)))?;
    let country = wifi::country(cli.country.as_deref(), &db).map_err(invalid)?;
    let interfaces = wifi::interfaces(Path::new(wifi::SYS_CLASS_NET));
    if interfaces.is_empty() {
        return Err("no Wi-Fi interface found (no wl* device in /sys/class/net): is the adapter's driver loaded? `ip link` lists the interfaces; nothing was changed".into());
    }
    lightwhale_tools::root::require("setup-wifi --ssid ... --password ... --country ...")?;

    write_config(&wifi::config_text(&ssid, &psk, &country))?;
    // wpa_supplicant sets the country from its configuration too; this makes it so now.
    match std::process::Command::new(wifi::IW).args(["reg", "set", &country]).status() {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("setup-wifi: warning: `iw reg set {country}` failed ({s}); wpa_supplicant sets it when it starts")
        }
        Err(e) => eprintln!("setup-wifi: warning: cannot run {}: {e}", wifi::IW),
    }
    tell_init()?;
    Ok(format!(
        "Wi-Fi configured for {:?} (country {country}) on {}: connecting now and at every boot; `ip addr show {}` shows the address",
        String::from_utf8_lossy(&ssid),
        interfaces.join(" "),
        interfaces[0]
    ))
}

fn main() {
    match run(Cli::parse()) {
        Ok(message) => println!("{message}"),
        Err(e) => {
            eprintln!("setup-wifi: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn missing_input_is_refused_before_anything_else() {
        let cli =
            |args: &[&str]| Cli::try_parse_from(std::iter::once("setup-wifi").chain(args.iter().copied())).unwrap();
        let e = run(cli(&["--password", "12345678", "--country", "DE"])).unwrap_err();
        assert!(e.starts_with("missing --ssid") && e.ends_with("nothing was changed") && !e.contains('\n'), "{e}");
        let e = run(cli(&["--ssid", "home", "--password", "short", "--country", "DE"])).unwrap_err();
        assert!(e.contains("8 to 63 characters") && !e.contains('\n'), "{e}");
        let e = run(cli(&["--off", "--ssid", "home"])).unwrap_err();
        assert!(e.starts_with("--off takes no other options"), "{e}");
    }
}
