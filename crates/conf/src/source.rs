//! The injected file reader: the only way this crate touches files.
//!
//! The parser never calls `std::fs` itself; it asks a [`ConfigSource`], so
//! the daemon passes [`FsSource`] and tests pass a [`MemorySource`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Something that can return the text of a configuration file.
pub trait ConfigSource {
    /// Return the whole contents of `path` as text.
    fn read(&self, path: &Path) -> io::Result<String>;
}

/// Reads files from the real filesystem with [`std::fs::read_to_string`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FsSource;

impl ConfigSource for FsSource {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// An in-memory file map, for tests and for embedding configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemorySource {
    files: BTreeMap<PathBuf, String>,
}

impl MemorySource {
    /// An empty map: every read fails with `NotFound`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a file, builder style.
    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.insert(path, text);
        self
    }

    /// Add (or replace) a file.
    pub fn insert(&mut self, path: impl Into<PathBuf>, text: impl Into<String>) {
        self.files.insert(path.into(), text.into());
    }
}

impl ConfigSource for MemorySource {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file in memory source"))
    }
}
