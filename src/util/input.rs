//! Reading an input file whole (training data, `--file` texts, templates) with two checks made
//! before any byte is read: the path is a regular file (not a directory, FIFO, socket or device
//! such as `/dev/zero`, which would never end) and it is not larger than a limit
//! (`--max-data-size`, default [`DEFAULT_MAX_INPUT_BYTES`]). The read itself stops at the limit
//! too, so a file that grows while it is read cannot get past it.

use std::io::Read;
use std::path::Path;

/// Default most bytes of one input file (1 GiB).
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 1 << 30;

/// What a path is when it is not a regular file.
fn kind_of(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Check that `path` is a regular file of at most `max` bytes; its size.
pub fn check_input(path: &Path, max: u64) -> std::io::Result<u64> {
    let meta = std::fs::metadata(path)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("is {}, not a regular file; give a file", kind_of(&ft))));
    }
    if meta.len() > max {
        return Err(too_large(meta.len(), max));
    }
    Ok(meta.len())
}

fn too_large(len: u64, max: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "is {} ({len} bytes), more than the input limit of {} ({max} bytes); raise it with --max-data-size",
            crate::train::plan::human(len),
            crate::train::plan::human(max)
        ),
    )
}

/// The bytes of `path` after [`check_input`]; never more than `max`.
pub fn read_input(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let len = check_input(path, max)?;
    let f = std::fs::File::open(path)?;
    let mut out = Vec::with_capacity(len as usize);
    f.take(max.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(too_large(out.len() as u64, max));
    }
    Ok(out)
}

/// [`read_input`] as UTF-8 text.
pub fn read_input_string(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_input(path, max)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("is not valid UTF-8 text ({})", e.utf8_error())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_directories_and_large_files() {
        let e = read_input(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let e = read_input(Path::new("/"), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let dir = std::env::temp_dir().join(format!("finetune-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.txt");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_input(&f, 10).unwrap(), b"0123456789");
        let e = read_input(&f, 9).unwrap_err();
        assert!(e.to_string().contains("more than the input limit") && e.to_string().contains("--max-data-size"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
