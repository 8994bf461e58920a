//! The drift file: the clock's frequency correction in ppm, one number on one line, as
//! classic ntpd writes it. Read at start so the clock is right from the first minute;
//! written atomically (temporary file, fsync, rename) so a crash or a full disk never
//! leaves a truncated file behind.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The largest frequency accepted from a drift file, ppm (ntpd ignores wilder values).
pub const MAX_DRIFT_PPM: f64 = 500.0;

/// Read the frequency from `path`: `Ok(None)` when there is no file yet.
pub fn read(path: &Path) -> io::Result<Option<f64>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let word = text.split_whitespace().next().unwrap_or("");
    match word.parse::<f64>() {
        Ok(ppm) if ppm.is_finite() && ppm.abs() <= MAX_DRIFT_PPM => Ok(Some(ppm)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a frequency in ppm: {word:?}", path.display()),
        )),
    }
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".TEMP");
    path.with_file_name(name)
}

/// Write `ppm` to `path` atomically, in ntpd's format (`%.3f`).
pub fn write(path: &Path, ppm: f64) -> io::Result<()> {
    let temp = temporary_path(path);
    let result = (|| {
        let mut file = File::create(&temp)?;
        writeln!(file, "{ppm:.3}")?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        // Leave nothing half-written behind; the old file, if any, is untouched.
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "meridian-drift-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn missing_file_is_no_drift() {
        assert_eq!(read(&dir().join("none")).unwrap(), None);
    }

    #[test]
    fn round_trip_in_classic_format() {
        let path = dir().join("drift");
        write(&path, -12.3456).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "-12.346\n");
        assert_eq!(read(&path).unwrap(), Some(-12.346));
        assert!(!temporary_path(&path).exists());
    }

    #[test]
    fn garbage_or_absurd_values_are_errors() {
        let d = dir();
        for (name, text) in [("a", "hello\n"), ("b", "900.0\n"), ("c", "")] {
            let p = d.join(name);
            fs::write(&p, text).unwrap();
            assert!(read(&p).is_err(), "{text:?}");
        }
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let d = dir();
        let path = d.join("drift");
        write(&path, 1.5).unwrap();
        // A directory in the temporary file's place makes the write fail.
        fs::create_dir(temporary_path(&path)).unwrap();
        assert!(write(&path, 99.0).is_err());
        assert_eq!(read(&path).unwrap(), Some(1.5));
    }
}
