//! A test tool, not part of the image: the VM scenarios copy it into a container to try
//! things a container should not be able to do, and print what the kernel answered.
//! Built statically with the init (`cargo xtask iso`), so it runs in any container.
//!
//! `lightwhale-tryout socket FAMILY TYPE PROTOCOL` prints `ok` or `errno N`.
//! `lightwhale-tryout bpf` tries to create a BPF map and prints the same.

fn result(r: libc::c_long) -> i32 {
    if r >= 0 {
        println!("ok");
        0
    } else {
        println!("errno {}", std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        1
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| args.get(i).and_then(|a| a.parse::<i32>().ok()).unwrap_or(-1);
    let code = match args.first().map(String::as_str) {
        // SAFETY: socket with integer arguments.
        Some("socket") => result(unsafe { libc::socket(num(1), num(2), num(3)) } as libc::c_long),
        Some("bpf") => {
            // BPF_MAP_CREATE of a 1-entry array: the smallest thing bpf() can be asked for.
            let mut attr = [0u32; 32];
            attr[0] = 2; // BPF_MAP_TYPE_ARRAY
            attr[1] = 4; // key size
            attr[2] = 4; // value size
            attr[3] = 1; // max entries
                         // SAFETY: attr is a valid, large enough bpf_attr buffer.
            result(unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), std::mem::size_of_val(&attr)) })
        }
        _ => {
            eprintln!("usage: lightwhale-tryout socket FAMILY TYPE PROTOCOL | bpf");
            2
        }
    };
    std::process::exit(code);
}
