//! Every file the project reads or writes on purpose goes through here:
//! models, the version history and kept files, reports, `train --out`.
//!
//! - [`open_regular`] / [`read_regular`]: never follow a symlink in the last
//!   component, never block on a FIFO, accept regular files only, and read at
//!   most a cap (a file past it is refused, not read to the end).
//!   [`open_regular_following`] is the same for paths an operator names that
//!   may be symlinks (Kubernetes mounts are: `model.path`, token files).
//! - [`write_atomic`] / [`Replacement`]: a unique temporary file created
//!   beside the target (`O_EXCL`), given the replaced file's mode and owner,
//!   written, fsynced, renamed over the target, and the directory fsynced.
//! - [`create_new`]: a file that must not exist yet (no symlink followed).
//! - [`sha256_hex`]: the fingerprint of file bytes.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The operating system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A symbolic link where only a file the project wrote is expected.
    #[error("{path} is a symbolic link; refusing to follow it")]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A device, FIFO, directory or socket rather than a regular file.
    #[error("{path} is not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// Larger than the reader accepts.
    #[error("{path} is larger than {max_bytes} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max_bytes: u64,
    },
    /// The file being replaced belongs to someone else, and this process
    /// may not give the new file that owner: the replacement could be
    /// unreadable to whoever reads the file today.
    #[error(
        "{path} is owned by uid {uid} gid {gid} with mode {mode:04o}; this process (uid {my_uid}) \
         cannot give its replacement that owner ({source}), and with that mode the owner could \
         no longer read it. Nothing was written: run as uid {uid} (or root), or make the file \
         readable by others"
    )]
    Owner {
        /// The file being replaced.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
        /// Its permission bits.
        mode: u32,
        /// This process's effective uid.
        my_uid: u32,
        /// Why `fchown` failed.
        source: std::io::Error,
    },
}

impl FsError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Symlink { path }
            | Self::NotRegular { path }
            | Self::TooLarge { path, .. }
            | Self::Owner { path, .. } => path,
        }
    }

    /// The cause without the path, for callers whose own message names
    /// the file already.
    pub fn into_io_error(self) -> std::io::Error {
        use std::io::{Error, ErrorKind};
        match self {
            Self::Io { source, .. } => source,
            Self::Symlink { .. } => Error::new(
                ErrorKind::InvalidInput,
                "a symbolic link; refusing to follow it",
            ),
            Self::NotRegular { .. } => Error::new(ErrorKind::InvalidInput, "not a regular file"),
            Self::TooLarge { max_bytes, .. } => Error::new(
                ErrorKind::InvalidData,
                format!("larger than {max_bytes} bytes"),
            ),
            e @ Self::Owner { .. } => Error::other(e.to_string()),
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FsError + '_ {
        move |source| FsError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The sha256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Opens `path` for reading if it is a regular file of at most `max_bytes`,
/// refusing a symlink in its last component (`O_NOFOLLOW`). Opened
/// non-blocking (cleared once the handle is known to be a regular file), so a
/// FIFO never stalls the open; a device, FIFO or directory is refused from
/// the open handle's own `fstat`, so nothing swapped in after a check is
/// read. Use for files the project wrote itself.
pub fn open_regular(path: &Path, max_bytes: u64) -> Result<File, FsError> {
    open_checked(path, max_bytes, false)
}

/// [`open_regular`], but following symlinks: for paths an operator
/// configures, which may be links (a Kubernetes ConfigMap or Secret mount).
pub fn open_regular_following(path: &Path, max_bytes: u64) -> Result<File, FsError> {
    open_checked(path, max_bytes, true)
}

/// [`open_regular`] and [`read_capped`] in one.
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FsError> {
    read_capped(open_regular(path, max_bytes)?, path, max_bytes)
}

/// [`open_regular_following`] and [`read_capped`] in one (e.g. a token
/// file, which Kubernetes mounts as a symlink).
pub fn read_regular_following(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FsError> {
    read_capped(open_regular_following(path, max_bytes)?, path, max_bytes)
}

fn open_checked(path: &Path, max_bytes: u64, follow: bool) -> Result<File, FsError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    open_with(path, &mut options, follow, max_bytes)
}

/// Opens `path` with `options`, the rules of this module added: close on
/// exec, a non-blocking open (cleared on the regular file it must be), no
/// symlink in the last component unless `follow`, and at most `max_bytes`.
fn open_with(
    path: &Path,
    options: &mut std::fs::OpenOptions,
    follow: bool,
    max_bytes: u64,
) -> Result<File, FsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        options.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | nofollow);
    }
    #[cfg(not(unix))]
    if !follow && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(FsError::Symlink {
            path: path.to_owned(),
        });
    }
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if !follow && e.raw_os_error() == Some(libc::ELOOP) {
            return FsError::Symlink {
                path: path.to_owned(),
            };
        }
        FsError::io(path)(e)
    })?;
    check_size(&file, path, max_bytes)?;
    #[cfg(unix)]
    set_blocking(&file).map_err(FsError::io(path))?;
    Ok(file)
}

/// Opens `path` for appending and reading, creating it when missing, as
/// [`open_regular_following`] opens for reading (an operator names it:
/// symlinks followed; a regular file only, a FIFO never stalls the open).
pub fn open_append(path: &Path) -> Result<File, FsError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).read(true).append(true);
    open_with(path, &mut options, true, u64::MAX)
}

/// Refuses a handle that is not a regular file or is over `max_bytes` by
/// its `fstat` size.
fn check_size(file: &File, path: &Path, max_bytes: u64) -> Result<(), FsError> {
    let meta = file.metadata().map_err(FsError::io(path))?;
    if !meta.is_file() {
        return Err(FsError::NotRegular {
            path: path.to_owned(),
        });
    }
    if meta.len() > max_bytes {
        return Err(FsError::TooLarge {
            path: path.to_owned(),
            max_bytes,
        });
    }
    Ok(())
}

/// Clears `O_NONBLOCK` (it was only there for the open).
#[cfg(unix)]
fn set_blocking(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this File owns for the whole call.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above; only the status flags change.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads all of `file` (a regular file, checked again here), but never more
/// than `max_bytes` + 1 bytes: one more than the cap means the file is too
/// large (its size may change while it is read, so the `fstat` size alone
/// is not trusted). `path` only names the file in errors.
pub fn read_capped(file: File, path: &Path, max_bytes: u64) -> Result<Vec<u8>, FsError> {
    check_size(&file, path, max_bytes)?;
    let size = file.metadata().map_err(FsError::io(path))?.len();
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(FsError::io(path))?;
    if bytes.len() as u64 > max_bytes {
        return Err(FsError::TooLarge {
            path: path.to_owned(),
            max_bytes,
        });
    }
    Ok(bytes)
}

/// Creates `path`, which must not exist (`O_CREAT | O_EXCL`: a file, a
/// dangling or planted symlink, anything already there fails with
/// `AlreadyExists`, and nothing is followed), for writing, with permission
/// bits `mode` (before the umask).
pub fn create_new(path: &Path, mode: u32) -> Result<File, FsError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path).map_err(FsError::io(path))
}

/// The directory `path` is in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The marker in every temporary file name [`Replacement`] makes:
/// `.NAME.tmp-RANDOM` beside `NAME`.
pub const TEMP_MARKER: &str = ".tmp-";

/// The prefix of the temporary files that replace `path`.
pub fn temp_prefix(path: &Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    format!(".{name}{TEMP_MARKER}")
}

/// The mode and owner a replacement must keep.
#[derive(Debug, Clone, Copy)]
struct Owner {
    mode: u32,
    #[cfg(unix)]
    uid: u32,
    #[cfg(unix)]
    gid: u32,
}

/// A pending atomic replacement of a file: its temporary file already
/// exists beside it, with the replaced file's mode and owner, so everything
/// that can be refused up front (a read-only directory, an owner this
/// process may not give) has been; [`Replacement::commit`] writes and
/// renames. Dropped uncommitted, the temporary file is removed.
#[derive(Debug)]
pub struct Replacement {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl Replacement {
    /// Prepares the replacement of `path` (creating its directory if
    /// missing). The new file gets the permissions and the owner (uid and
    /// gid) of the file it replaces, whatever this process's umask and user,
    /// so a server running as another user can still read it; when the
    /// owner cannot be kept (not root) and the mode would then lock its
    /// owner out, [`FsError::Owner`] refuses before anything is written. A
    /// symlink at `path` is replaced by a regular file (its target keeps its
    /// content, and lends its mode and owner).
    pub fn new(path: &Path) -> Result<Self, FsError> {
        let dir = parent_dir(path);
        std::fs::create_dir_all(dir).map_err(FsError::io(dir))?;
        let replaced = std::fs::metadata(path).ok().filter(|m| m.is_file());
        let owner = replaced.map(|m| owner_of(&m));
        let prefix = temp_prefix(path);
        // With no file to take after, the umask decides, as for any new file;
        // otherwise private until the replaced file's mode is applied.
        let create_mode = if owner.is_some() { 0o600 } else { 0o666 };
        let (file, tmp) = loop {
            let tmp = dir.join(format!("{prefix}{:016x}", rand::random::<u64>()));
            match create_new(&tmp, create_mode) {
                Ok(f) => break (f, tmp),
                Err(FsError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        };
        let mut r = Self {
            path: path.to_owned(),
            tmp,
            file: Some(file),
        };
        if let Some(owner) = owner {
            r.keep_owner(owner)?;
        }
        Ok(r)
    }

    fn handle(&self) -> &File {
        self.file
            .as_ref()
            .expect("an uncommitted replacement has its file")
    }

    #[cfg(unix)]
    fn set_mode(&self, mode: u32) -> Result<(), FsError> {
        use std::os::unix::fs::PermissionsExt;
        self.handle()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(FsError::io(&self.tmp))
    }

    #[cfg(unix)]
    fn keep_owner(&mut self, owner: Owner) -> Result<(), FsError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let fd = self.handle().as_raw_fd();
        let meta = self.handle().metadata().map_err(FsError::io(&self.tmp))?;
        if (meta.uid(), meta.gid()) != (owner.uid, owner.gid) {
            // SAFETY: fchown on a descriptor this Replacement owns.
            if unsafe { libc::fchown(fd, owner.uid, owner.gid) } != 0 {
                let source = std::io::Error::last_os_error();
                // Not allowed to give files away (not root, no CAP_CHOWN):
                // the group may still be ours to keep. Readable by others,
                // whoever could read the old file can read the new one;
                // otherwise its owner might not: refuse.
                // SAFETY: as above; uid -1 leaves the owner unchanged.
                let _ = unsafe { libc::fchown(fd, u32::MAX, owner.gid) };
                if owner.mode & 0o004 == 0 {
                    return Err(FsError::Owner {
                        path: self.path.clone(),
                        uid: owner.uid,
                        gid: owner.gid,
                        mode: owner.mode,
                        // SAFETY: geteuid cannot fail.
                        my_uid: unsafe { libc::geteuid() },
                        source,
                    });
                }
            }
        }
        // After fchown, which clears set-id bits.
        self.set_mode(owner.mode)
    }

    #[cfg(not(unix))]
    fn keep_owner(&mut self, owner: Owner) -> Result<(), FsError> {
        let mut p = self
            .handle()
            .metadata()
            .map_err(FsError::io(&self.tmp))?
            .permissions();
        p.set_readonly(owner.mode & 0o200 == 0);
        self.handle()
            .set_permissions(p)
            .map_err(FsError::io(&self.tmp))
    }

    /// Writes `bytes`, fsyncs, renames over the target and fsyncs the
    /// directory: readers see the old content or the new, never a mix, and
    /// a crash leaves at most the temporary file.
    pub fn commit(mut self, bytes: &[u8]) -> Result<(), FsError> {
        let mut file = self.file.take().expect("committed once");
        let tmp = self.tmp.clone();
        file.write_all(bytes).map_err(FsError::io(&tmp))?;
        file.sync_all().map_err(FsError::io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(FsError::io(&self.path))?;
        // Renamed: nothing left to remove on drop.
        self.tmp = PathBuf::new();
        sync_dir(parent_dir(&self.path))
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically (see [`Replacement`]): the file is
/// either the old one or entirely the new one, with the old one's mode and
/// owner.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    Replacement::new(path)?.commit(bytes)
}

/// Makes a rename in `dir` durable. A file system that cannot sync a
/// directory (`EINVAL`) has nothing more to do.
fn sync_dir(dir: &Path) -> Result<(), FsError> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        r => r.map_err(FsError::io(dir)),
    }
}

#[cfg(unix)]
fn owner_of(m: &std::fs::Metadata) -> Owner {
    use std::os::unix::fs::MetadataExt;
    Owner {
        mode: m.mode() & 0o777,
        uid: m.uid(),
        gid: m.gid(),
    }
}

#[cfg(not(unix))]
fn owner_of(m: &std::fs::Metadata) -> Owner {
    Owner {
        mode: if m.permissions().readonly() {
            0o444
        } else {
            0o644
        },
    }
}

/// Opens (creating it if missing) a lock file: never through a symlink,
/// never blocking on a FIFO, and only a regular file is accepted.
pub fn open_lock_file(path: &Path) -> Result<File, FsError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    open_with(path, &mut options, false, u64::MAX)
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn sha256_hex_is_the_lowercase_hex_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn open_regular_refuses_links_devices_fifos_and_directories_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("h.json");
        std::fs::write(&file, b"{}").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let zero = dir.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let fifo = dir.path().join("fifo.json");
        mkfifo(&fifo);

        assert_eq!(read_regular(&file, 2).unwrap(), b"{}");
        assert!(matches!(
            read_regular(&link, 2),
            Err(FsError::Symlink { .. })
        ));
        assert!(matches!(
            read_regular(&zero, 1 << 20),
            Err(FsError::Symlink { .. })
        ));
        // Without the link, the device itself: refused from fstat, nothing read.
        let dev = Path::new("/dev/zero");
        assert!(matches!(
            read_regular(dev, 1 << 20),
            Err(FsError::NotRegular { .. })
        ));
        // A FIFO with no writer: neither the open nor the check blocks.
        assert!(matches!(
            read_regular(&fifo, 10),
            Err(FsError::NotRegular { .. })
        ));
        assert!(matches!(
            read_regular(dir.path(), 10),
            Err(FsError::NotRegular { .. })
        ));
        let e = read_regular(&dir.path().join("missing"), 10).unwrap_err();
        assert!(
            matches!(&e, FsError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );

        // Following links is for operator-named paths; the checks still hold.
        assert_eq!(read_regular_following(&link, 2).unwrap(), b"{}");
        assert!(matches!(
            open_regular_following(&zero, 1 << 20),
            Err(FsError::NotRegular { .. })
        ));
    }

    #[test]
    fn reads_are_capped_and_the_handle_blocks_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        // Refused at the open from its size: nothing read.
        assert!(matches!(
            open_regular(&path, 99),
            Err(FsError::TooLarge { max_bytes: 99, .. })
        ));
        // A file that grows after the open is cut at the cap plus one byte.
        let f = open_regular(&path, 100).unwrap();
        {
            use std::os::fd::AsRawFd;
            // SAFETY: F_GETFL on a descriptor `f` owns.
            let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
            assert_eq!(flags & libc::O_NONBLOCK, 0, "O_NONBLOCK cleared");
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[b'y'; 1000])
            .unwrap();
        assert!(matches!(
            read_capped(f, &path, 100),
            Err(FsError::TooLarge { .. })
        ));
        assert_eq!(read_regular(&path, 1100).unwrap().len(), 1100);
    }

    #[test]
    fn create_new_never_follows_or_reuses_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"precious").unwrap();
        let planted = dir.path().join("probe");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        for p in [&planted, &dangling, &victim] {
            let e = create_new(p, 0o600).unwrap_err();
            assert!(
                matches!(&e, FsError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
                "{e}"
            );
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!dir.path().join("nowhere").exists());
        create_new(&dir.path().join("fresh"), 0o600)
            .unwrap()
            .write_all(b"x")
            .unwrap();
    }

    #[test]
    fn an_atomic_write_keeps_mode_replaces_links_and_leaves_no_temp() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        // A symlink is replaced by a regular file; its target is untouched.
        let target = dir.path().join("target.json");
        std::fs::write(&target, b"kept").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, b"served").unwrap();
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&link).unwrap(), b"served");
        assert_eq!(std::fs::read(&target).unwrap(), b"kept");
        // A failed rename (onto a directory) leaves no temporary file.
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/x"), b"").unwrap();
        assert!(write_atomic(&dir.path().join("d"), b"x").is_err());
        assert_eq!(
            names(dir.path()),
            ["d", "link.json", "m.json", "target.json"]
        );
    }

    #[test]
    fn replacements_at_once_get_their_own_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let a = Replacement::new(&path).unwrap();
        let b = Replacement::new(&path).unwrap();
        assert_eq!(names(dir.path()).len(), 2);
        assert!(names(dir.path())
            .iter()
            .all(|n| n.starts_with(&temp_prefix(&path))));
        b.commit(b"b").unwrap();
        drop(a);
        assert_eq!(names(dir.path()), ["m.json"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"b");
    }

    #[test]
    fn an_atomic_write_keeps_the_owner() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: giving a file to another user needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, b"old").unwrap();
        std::os::unix::fs::chown(&path, Some(65532), Some(65533)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"new").unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (65532, 65533, 0o600));
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn a_lock_file_is_never_a_fifo_or_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.lock");
        mkfifo(&fifo);
        // O_NONBLOCK: a write-only open of a FIFO without reader fails at once.
        assert!(open_lock_file(&fifo).is_err());
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"v").unwrap();
        let link = dir.path().join("link.lock");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(matches!(
            open_lock_file(&link),
            Err(FsError::Symlink { .. })
        ));
        open_lock_file(&dir.path().join("ok.lock")).unwrap();
        open_lock_file(&dir.path().join("ok.lock")).unwrap();
    }
}
