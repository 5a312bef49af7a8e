//! The lock on `model.dir` that serialises retrains and rollbacks.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{io, StoreError, LOCK_FILE};
use crate::fsio;

/// An exclusive lock on `model.dir`, held until dropped (the kernel releases
/// it when the process dies, so a crash never leaves it stuck).
pub struct Lock {
    _file: File,
}

/// Takes the lock of `model_dir` (creating the directory and the lock file
/// if missing), waiting up to `wait` for another holder to finish.
pub fn lock(model_dir: &Path, wait: Duration) -> Result<Lock, StoreError> {
    std::fs::create_dir_all(model_dir).map_err(io(model_dir))?;
    let path = model_dir.join(LOCK_FILE);
    let file = fsio::open_lock_file(&path)?;
    let started = Instant::now();
    loop {
        match try_lock(&file) {
            Ok(true) => return Ok(Lock { _file: file }),
            Ok(false) if started.elapsed() < wait => std::thread::sleep(Duration::from_millis(50)),
            Ok(false) => {
                return Err(StoreError::Busy {
                    path,
                    waited_secs: started.elapsed().as_secs(),
                })
            }
            Err(e) => return Err(io(&path)(e)),
        }
    }
}

#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock takes a descriptor this File owns for the whole call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        Some(libc::EINTR) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path(), Duration::ZERO).unwrap();
        let e = lock(dir.path(), Duration::from_millis(120)).err().unwrap();
        assert!(matches!(e, StoreError::Busy { .. }), "{e}");
        drop(held);
        lock(dir.path(), Duration::ZERO).unwrap();
    }
}
