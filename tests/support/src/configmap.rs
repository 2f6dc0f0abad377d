//! A config directory laid out the way the kubelet mounts a ConfigMap:
//! `dir/config.yaml` → `..data/config.yaml`, `..data` → a timestamped
//! directory. An update writes a new timestamped directory, points a
//! `..data_tmp` symlink at it and renames that over `..data` (one atomic
//! rename), so the file at the config path changes without being written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct ConfigMapDir {
    pub dir: tempfile::TempDir,
    version: AtomicUsize,
}

impl ConfigMapDir {
    /// Creates the layout with `files` (name, content), one symlink per name.
    pub fn new(files: &[(&str, &str)]) -> ConfigMapDir {
        let dir = tempfile::tempdir().unwrap();
        let cm = ConfigMapDir {
            dir,
            version: AtomicUsize::new(0),
        };
        cm.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(Path::new("..data").join(name), cm.dir.path().join(name))
                .unwrap();
        }
        cm
    }

    /// The path a process is given (`dir/NAME`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Swaps in a new version of every file, as the kubelet does.
    pub fn update(&self, files: &[(&str, &str)]) {
        let n = self.version.fetch_add(1, Ordering::SeqCst);
        let stamp = format!("..2024_01_01_00_00_{n:02}.{}", 1000 + n);
        let root = self.dir.path();
        std::fs::create_dir(root.join(&stamp)).unwrap();
        for (name, content) in files {
            std::fs::write(root.join(&stamp).join(name), content).unwrap();
        }
        let tmp = root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
    }
}
