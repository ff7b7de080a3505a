//! The ACPI power button: the kernel reports it as a key press on an input device, and
//! without acpid nobody would act on it. PID 1 watches it and powers off cleanly.

use std::fs::File;
use std::path::Path;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// struct input_event on 64-bit: timeval (16) + type (2) + code (2) + value (4).
pub const EVENT_SIZE: usize = 24;

/// Pure: true when `buf` holds a press of the power key.
pub fn is_power_press(buf: &[u8]) -> bool {
    buf.chunks_exact(EVENT_SIZE).any(|e| {
        let ty = u16::from_ne_bytes([e[16], e[17]]);
        let code = u16::from_ne_bytes([e[18], e[19]]);
        let value = i32::from_ne_bytes([e[20], e[21], e[22], e[23]]);
        ty == EV_KEY && code == KEY_POWER && value == 1
    })
}

/// Opens every input device named "Power Button" (ACPI exposes one or two).
pub fn open_power_buttons(sys_class_input: &Path, dev_input: &Path) -> Vec<File> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(sys_class_input) else { return out };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("event") {
            continue;
        }
        let dev_name = std::fs::read_to_string(e.path().join("device/name")).unwrap_or_default();
        if dev_name.trim() == "Power Button" {
            match File::open(dev_input.join(&name)) {
                Ok(f) => out.push(f),
                Err(err) => log::warn!("power button {name}: {err}"),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ty: u16, code: u16, value: i32) -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e.extend_from_slice(&ty.to_ne_bytes());
        e.extend_from_slice(&code.to_ne_bytes());
        e.extend_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn press_is_detected_release_is_not() {
        let mut both = event(EV_KEY, KEY_POWER, 1);
        both.extend(event(0, 0, 0));
        assert!(is_power_press(&both));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)));
        assert!(!is_power_press(&event(EV_KEY, 30, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 1)[..20]));
    }
}
