//! The data directory itself: created private, checked writable before anything else.

use std::io::Write;
use std::path::Path;

use super::PersistError;

/// Creates `dir` (mode 0700 for the folders it creates) and proves it writable by
/// writing, syncing and removing a probe file, so that an unusable directory stops the
/// node at startup instead of at its first write.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), PersistError> {
    let err = |source| PersistError::Unwritable {
        path: dir.to_path_buf(),
        source,
    };
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(err)?;
    let probe = dir.join(".gossamer-write-test");
    let r = (|| {
        let mut f = private_file(&probe)?;
        f.write_all(b"ok")?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&probe);
    r.map_err(err)
}

/// Opens (creating if needed) a file readable and writable by its owner only.
pub(crate) fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}
