//! The one way a file named by the config (token, page, certificate, key)
//! and the config file itself are read, so that no such file can hang the
//! process or blow up its memory:
//!
//! 1. `stat` (following symlinks, so a ConfigMap's `..data` links resolve):
//!    anything but a regular file is refused before it is opened (opening a
//!    device can have side effects of its own);
//! 2. opened with `O_NONBLOCK | O_NOCTTY`, so a path swapped to a FIFO after
//!    the `stat` still cannot block the open;
//! 3. `fstat` on the opened descriptor: it must be a regular file (what was
//!    checked is what is read);
//! 4. read to at most `cap + 1` bytes, whatever the metadata says (it says 0
//!    for `/dev/zero` and for `/proc` files): more than `cap` is refused.

use std::fs::{FileType, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `admin.token_file`, `maintenance.bypass_token_file`.
pub const TOKEN_CAP: u64 = 4 * 1024;
/// `maintenance.page`.
pub const PAGE_CAP: u64 = 1024 * 1024;
/// `tls.cert_file`, `tls.key_file` (each).
pub const PEM_CAP: u64 = 1024 * 1024;
/// The config file itself.
pub const CONFIG_CAP: u64 = 4 * 1024 * 1024;

/// Why a config-named file was not read. The messages name the path; the
/// caller puts the config field in front.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read \"{}\": {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("\"{}\" is not a regular file ({kind})", .path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("\"{}\" is larger than {}", .path.display(), show_size(*.cap))]
    TooLarge { path: PathBuf, cap: u64 },
    #[error("\"{}\" is not UTF-8 text", .path.display())]
    NotText { path: PathBuf },
}

/// The file's bytes: a regular file (after symlinks) of at most `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    let io_err = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    let regular = |ft: FileType| match kind(ft) {
        None => Ok(()),
        Some(kind) => Err(FileError::NotRegular {
            path: path.to_owned(),
            kind,
        }),
    };
    regular(std::fs::metadata(path).map_err(io_err)?.file_type())?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    regular(meta.file_type())?;
    // The length is only a hint for the first allocation, never a limit.
    let hint = meta.len().min(cap) as usize + 1;
    let mut bytes = Vec::with_capacity(hint);
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io_err)?;
    if bytes.len() as u64 > cap {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            cap,
        });
    }
    Ok(bytes)
}

/// `read_capped`, as UTF-8 text.
pub fn read_text(path: &Path, cap: u64) -> Result<String, FileError> {
    String::from_utf8(read_capped(path, cap)?).map_err(|_| FileError::NotText {
        path: path.to_owned(),
    })
}

/// The config file's text (capped at `CONFIG_CAP`); used by `Config::load`
/// and by the reloader.
pub fn read_config_file(path: &Path) -> Result<String, FileError> {
    read_text(path, CONFIG_CAP)
}

/// `None` for a regular file, else what it is.
fn kind(ft: FileType) -> Option<&'static str> {
    if ft.is_file() {
        return None;
    }
    Some(if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_dir() {
        "directory"
    } else {
        "special file"
    })
}

fn show_size(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{}MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{}KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(path: &str, cap: u64) -> String {
        read_capped(Path::new(path), cap).unwrap_err().to_string()
    }

    #[test]
    fn devices_and_directories_are_refused_without_reading() {
        assert_eq!(
            msg("/dev/zero", PAGE_CAP),
            "\"/dev/zero\" is not a regular file (character device)"
        );
        assert_eq!(
            msg("/dev/urandom", TOKEN_CAP),
            "\"/dev/urandom\" is not a regular file (character device)"
        );
        assert_eq!(msg("/", 10), "\"/\" is not a regular file (directory)");
        assert!(msg("/nonexistent/x", 10).starts_with("cannot read \"/nonexistent/x\": "));
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = read_capped(&fifo, TOKEN_CAP).unwrap_err();
        assert!(
            matches!(e, FileError::NotRegular { kind: "FIFO", .. }),
            "{e}"
        );
    }

    #[test]
    fn the_cap_is_exact_and_symlinks_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, vec![b'x'; 4096]).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_capped(&link, 4096).unwrap().len(), 4096);
        let e = read_capped(&link, 4095).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("\"{}\" is larger than 4095 bytes", link.display())
        );
        assert_eq!(show_size(TOKEN_CAP), "4KiB");
        assert_eq!(show_size(CONFIG_CAP), "4MiB");
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_text(&file, 10),
            Err(FileError::NotText { .. })
        ));
    }
}
