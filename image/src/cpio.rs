//! A small newc cpio writer: deterministic (fixed mtime, sequential inode numbers, root
//! owner), which is what makes the initramfs reproducible.

use std::io::{self, Read, Write};

pub struct Writer<W: Write> {
    out: W,
    ino: u32,
    mtime: u32,
    written: u64,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl<W: Write> Writer<W> {
    pub fn new(out: W, mtime: u32) -> Writer<W> {
        Writer { out, ino: 1, mtime, written: 0 }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    fn header(&mut self, name: &str, mode: u32, size: u64, rdev: (u32, u32)) -> io::Result<()> {
        let size32 = u32::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{name} is over 4 GiB")))?;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let h = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            nlink,
            self.mtime,
            size32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.put(h.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.header(name, S_IFDIR | perm, 0, (0, 0))
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.header(name, S_IFREG | perm, data.len() as u64, (0, 0))?;
        self.put(data)?;
        self.pad()
    }

    /// Streams a large file without holding it in memory.
    pub fn file_from(&mut self, name: &str, perm: u32, size: u64, reader: &mut dyn Read) -> io::Result<()> {
        self.header(name, S_IFREG | perm, size, (0, 0))?;
        let copied = io::copy(&mut reader.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: expected {size} bytes, got {copied}"),
            ));
        }
        self.written += copied;
        self.pad()
    }

    pub fn chardev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.header(name, S_IFCHR | perm, 0, (major, minor))
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 0, (0, 0))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_newc_and_aligned() {
        let mut w = Writer::new(Vec::new(), 1_700_000_000);
        w.dir("dev", 0o755).unwrap();
        w.chardev("dev/console", 0o600, 5, 1).unwrap();
        w.file("init", 0o755, b"abcde").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(&out[..6], b"070701");
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("dev/console"));
        assert!(text.ends_with("TRAILER!!!\0\0\0\0") || text.contains("TRAILER!!!"));
        // Same input, same bytes.
        let mut w2 = Writer::new(Vec::new(), 1_700_000_000);
        w2.dir("dev", 0o755).unwrap();
        w2.chardev("dev/console", 0o600, 5, 1).unwrap();
        w2.file("init", 0o755, b"abcde").unwrap();
        assert_eq!(w2.finish().unwrap(), out);
    }

    #[test]
    fn host_cpio_can_read_it() {
        assert!(crate::cmd::which("cpio"), "cpio is missing: run `cargo xtask deps`");
        let mut w = Writer::new(Vec::new(), 0);
        w.dir("a", 0o755).unwrap();
        w.file("a/b.txt", 0o644, b"hello\n").unwrap();
        let bytes = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a\na/b.txt\n");
    }
}
