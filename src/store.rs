//! The state directory: atomic writes, permissions, locking, and the layout of what lives there.
//!
//! Layout under `state_dir` (0700):
//! ```text
//! lock                      flock(2) so two gatecert processes never race
//! accounts/<id>/key.pem     ACME account key (0600); <id> is derived from the directory URL
//! accounts/<id>/account.json
//! certs/<name>/gen-<N>/     one generation: key.pem cert.pem chain.pem fullchain.pem combined.pem
//! certs/<name>/live         symlink -> gen-<N>, swapped with one rename(2)
//! certs/<name>/state.json   renewal schedule state (ARI choice, failures); written only on change
//! ca/                       the local CA (see `ca`)
//! ```
//!
//! Every credential write is atomic: a temp file in the same directory, fsync, rename, fsync the
//! directory. A set of files that belong together is written into a fresh generation directory
//! and published by swapping one symlink, so a reader that resolves `live/` once sees a key and
//! cert that match.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An error from the state directory. Every I/O error carries its path.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    Io {
        /// What we were doing: "write", "rename", "read", ...
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another gatecert holds the state directory's lock.
    Locked(PathBuf),
    /// A path to be written exists and is not a regular file (a device, a FIFO, a directory,
    /// or, for an operator's `--out`, a symlink): it is never replaced.
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is ("a character device", ...).
        kind: &'static str,
    },
    /// A file under the state directory has content we can't use.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, .. } => write!(f, "cannot {op} {}", path.display()),
            Error::Locked(p) => write!(f, "{} is locked by another gatecert process", p.display()),
            Error::Corrupt { path, what } => write!(f, "{}: {what}", path.display()),
            Error::NotRegular { path, kind } => write!(
                f,
                "refusing to write {}: it is {kind}, not a regular file or a new path",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Wraps an io::Error with the operation and path.
pub fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// File mode for secrets.
pub const SECRET: u32 = 0o600;
/// File mode for public material (certificates).
pub const PUBLIC: u32 = 0o644;

/// Creates `dir` (and parents) with mode 0700, and tightens it to 0700 if it exists looser.
pub fn private_dir(dir: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("create directory", dir))?;
    let meta = fs::metadata(dir).map_err(io_err("stat", dir))?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod", dir))?;
    }
    Ok(())
}

/// Creates `dir` and its parents (0755) if missing, for files other programs read (an
/// `install_dir`); an existing directory's mode is left as its owner set it.
pub fn public_dir(dir: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io_err("create directory", dir))
}

/// Writes `data` to `path` atomically with `mode`: temp file in the same directory, fsync,
/// rename over the target, fsync the directory. A crash leaves the old file or the new one.
///
/// The temp file has an unpredictable name (16 random bytes) and is created with
/// `O_CREAT|O_EXCL|O_NOFOLLOW` and `mode` (then fchmod'ed on the descriptor, past the umask), so
/// a symlink or file planted in a directory others can write (a metrics textfile directory) is
/// never opened, truncated or chmod'ed. `path` itself must be new, a regular file or a symlink
/// (rename(2) replaces the link, never what it points at); a device, FIFO, socket or directory
/// is refused with [`Error::NotRegular`] instead of being replaced machine-wide.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    write_atomic_with(path, mode, |f, tmp| {
        f.write_all(data).map_err(io_err("write", tmp))
    })
}

/// [`write_atomic`] of what `write` writes (to the temp file, whose path it is given): the
/// content is streamed, never held whole in memory. An error from `write` leaves `path` as it
/// was (and no temp file).
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut dyn Write, &Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let dir = parent(path);
    if let Some(kind) = special_kind(path)? {
        return Err(Error::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    let (f, tmp) = create_temp(dir, path, mode)?;
    let result = (|| {
        let mut f = f;
        // The mode passed to open() is filtered by the umask; set it exactly. The file is ours
        // (O_EXCL), so this never touches anything else.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", &tmp))?;
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, &mut f);
        write(&mut w, &tmp)?;
        w.flush().map_err(io_err("write", &tmp))?;
        drop(w);
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates a fresh temp file beside `path`: random name, `O_EXCL|O_NOFOLLOW`, `mode`.
fn create_temp(dir: &Path, path: &Path, mode: u32) -> Result<(fs::File, PathBuf), Error> {
    use rustix::fs::{Mode, OFlags};
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Keep the temp name within NAME_MAX whatever the target's name is.
    let short: String = name.chars().take(64).collect();
    let mut last = None;
    for _ in 0..8 {
        let rand = crate::crypto::random_bytes::<16>().map_err(|e| Error::Io {
            op: "draw a temp name for",
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let tmp = dir.join(format!(".{short}.{}.tmp", crate::crypto::hex(&rand)));
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::open(&tmp, flags, Mode::from_raw_mode(mode & 0o777)) {
            Ok(fd) => return Ok((fs::File::from(fd), tmp)),
            Err(rustix::io::Errno::EXIST) => last = Some(tmp),
            Err(e) => return Err(io_err("create", &tmp)(e.into())),
        }
    }
    let tmp = last.unwrap_or_else(|| dir.join(".tmp"));
    Err(io_err("create", &tmp)(
        std::io::ErrorKind::AlreadyExists.into(),
    ))
}

/// What `path` is when it exists and is neither a regular file nor a symlink ("a character
/// device", ...); `None` when it is new, a regular file or a symlink. Does not follow links.
fn special_kind(path: &Path) -> Result<Option<&'static str>, Error> {
    use std::os::unix::fs::FileTypeExt as _;
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("stat", path)(e)),
    };
    let t = meta.file_type();
    Ok(if t.is_file() || t.is_symlink() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    })
}

/// Checks an output path the operator named (`--out FILE`): it must be a new path or an
/// existing regular file. A symlink, device, FIFO, socket or directory is refused, so
/// `--out /dev/null` never replaces the device with a regular file and a planted link never
/// redirects the write. Does not follow links.
pub fn check_output_path(path: &Path) -> Result<(), Error> {
    if let Some(kind) = special_kind(path)? {
        return Err(Error::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::NotRegular {
            path: path.to_path_buf(),
            kind: "a symlink",
        }),
        _ => Ok(()),
    }
}

/// Writes `data` only if the file doesn't already hold exactly that (flash wear).
/// Returns whether it wrote. Only an existing regular file is read for the comparison.
pub fn write_if_changed(path: &Path, data: &[u8], mode: u32) -> Result<bool, Error> {
    let regular = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    if regular && fs::read(path).is_ok_and(|old| old == data) {
        return Ok(false);
    }
    write_atomic(path, data, mode)?;
    Ok(true)
}

/// fsyncs a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Reads a file to a string, naming the path on error. `Ok(None)` when it doesn't exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            op: "read",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Reads a file to a string, naming the path on error.
pub fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(io_err("read", path))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An exclusive flock(2) on `<path>.lock`, held until dropped: one read-modify-write of `path`
/// at a time across processes (the service and the command line).
#[derive(Debug)]
pub struct FileLock {
    _file: fs::File,
}

impl FileLock {
    /// Waits for the lock on `<path>.lock`: forever with `wait: None` (the command line), or
    /// `wait` at most, then [`Error::Locked`] (the service's loop must never block on it).
    pub fn acquire(path: &Path, wait: Option<std::time::Duration>) -> Result<FileLock, Error> {
        use rustix::fs::FlockOperation;
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(SECRET)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        let io = |e: rustix::io::Errno| Error::Io {
            op: "lock",
            path: lock_path.clone(),
            source: e.into(),
        };
        match wait {
            None => rustix::fs::flock(&file, FlockOperation::LockExclusive).map_err(io)?,
            Some(wait) => {
                let start = std::time::Instant::now();
                loop {
                    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                        Ok(()) => break,
                        Err(rustix::io::Errno::WOULDBLOCK) if start.elapsed() < wait => {
                            std::thread::sleep(std::time::Duration::from_millis(5).min(wait));
                        }
                        Err(rustix::io::Errno::WOULDBLOCK) => return Err(Error::Locked(lock_path)),
                        Err(e) => return Err(io(e)),
                    }
                }
            }
        }
        Ok(FileLock { _file: file })
    }
}

/// See [`stamp`].
pub type FileStamp = (u64, u64, u64, i64, i64);

/// What identifies one version of a file written by [`write_atomic`] (each write is a new inode):
/// device, inode, size and mtime; `None` when it does not exist. One stat(2), no read.
pub fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// An exclusive lock on the state directory, released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: fs::File,
}

impl Lock {
    /// Takes `<state_dir>/lock` without waiting. `Err(Locked)` when another process holds it.
    pub fn acquire(state_dir: &Path) -> Result<Lock, Error> {
        private_dir(state_dir)?;
        let path = state_dir.join("lock");
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(SECRET)
            .open(&path)
            .map_err(io_err("open", &path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Lock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Locked(path)),
            Err(e) => Err(Error::Io {
                op: "lock",
                path,
                source: e.into(),
            }),
        }
    }
}

/// The files of one certificate set, as PEM text.
pub struct CertSet {
    /// The private key (written 0600); or, for a key in a PKCS#11 token, its RFC 7512 URI
    /// without any PIN (written to `key.uri` instead; no `key.pem`, no `combined.pem`).
    pub key_pem: String,
    /// The end-entity certificate.
    pub cert_pem: String,
    /// The issuer chain, without the end-entity certificate.
    pub chain_pem: String,
}

impl CertSet {
    /// cert + chain.
    pub fn fullchain(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_pem)
    }
}

/// File names inside a generation directory.
pub const KEY: &str = "key.pem";
/// The end-entity certificate.
pub const CERT: &str = "cert.pem";
/// The chain without the end-entity certificate.
pub const CHAIN: &str = "chain.pem";
/// cert + chain.
pub const FULLCHAIN: &str = "fullchain.pem";
/// key + cert + chain in one file: one open(2) gives a consistent set.
pub const COMBINED: &str = "combined.pem";
/// For a key in a PKCS#11 token: its RFC 7512 URI (no PIN), in place of `key.pem`.
pub const KEY_URI: &str = "key.uri";

/// True when a set's key is a token key's URI rather than a PEM key.
pub fn is_token_key(key: &str) -> bool {
    key.starts_with("pkcs11:")
}

/// A directory holding generations of one certificate set and the `live` symlink.
#[derive(Clone, Debug)]
pub struct SetDir {
    dir: PathBuf,
}

impl SetDir {
    /// The set directory at `dir` (created 0700 on first install).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SetDir { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/live`: readers use `live/key.pem`, `live/fullchain.pem`, ...
    pub fn live(&self) -> PathBuf {
        self.dir.join("live")
    }

    /// The generation `live` points at, if any.
    pub fn current(&self) -> Option<String> {
        fs::read_link(self.live())
            .ok()
            .and_then(|t| t.to_str().map(str::to_owned))
    }

    /// Reads the live set's cert PEM and key PEM, if installed.
    pub fn read_live(&self) -> Result<Option<(String, String)>, Error> {
        let live = self.live();
        let Some(cert) = read_optional(&live.join(FULLCHAIN))? else {
            return Ok(None);
        };
        let key = match read_optional(&live.join(KEY_URI))? {
            Some(uri) => uri,
            None => read(&live.join(KEY))?,
        };
        Ok(Some((cert, key)))
    }

    /// Writes `set` as a new generation and swaps `live` to it with one rename(2).
    /// Returns the generation that was live before, for [`SetDir::restore`].
    pub fn install(&self, set: &CertSet) -> Result<Option<String>, Error> {
        private_dir(&self.dir)?;
        let previous = self.current();
        let next = self.next_generation();
        let gen_dir = self.dir.join(&next);
        // A half-written generation from a crash is never live; clear it and start over.
        let _ = fs::remove_dir_all(&gen_dir);
        private_dir(&gen_dir)?;
        let fullchain = set.fullchain();
        let token = is_token_key(&set.key_pem);
        let key_file = if token { KEY_URI } else { KEY };
        write_atomic(&gen_dir.join(key_file), set.key_pem.as_bytes(), SECRET)?;
        write_atomic(&gen_dir.join(CERT), set.cert_pem.as_bytes(), PUBLIC)?;
        write_atomic(&gen_dir.join(CHAIN), set.chain_pem.as_bytes(), PUBLIC)?;
        write_atomic(&gen_dir.join(FULLCHAIN), fullchain.as_bytes(), PUBLIC)?;
        if !token {
            let combined = format!("{}{}", set.key_pem, fullchain);
            write_atomic(&gen_dir.join(COMBINED), combined.as_bytes(), SECRET)?;
        }
        self.point_live_at(&next)?;
        self.prune(&next, previous.as_deref());
        Ok(previous)
    }

    /// Points `live` back at `generation` (the value [`SetDir::install`] returned).
    pub fn restore(&self, generation: &str) -> Result<(), Error> {
        self.point_live_at(generation)
    }

    fn point_live_at(&self, generation: &str) -> Result<(), Error> {
        // symlink(2) never follows or replaces what is there; a random name never collides.
        let rand = crate::crypto::random_bytes::<8>().map_err(|e| Error::Io {
            op: "draw a temp name for",
            path: self.live(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let tmp = self
            .dir
            .join(format!(".live.{}.tmp", crate::crypto::hex(&rand)));
        std::os::unix::fs::symlink(generation, &tmp).map_err(io_err("symlink", &tmp))?;
        let live = self.live();
        if let Err(e) = fs::rename(&tmp, &live) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("rename into place", &live)(e));
        }
        sync_dir(&self.dir)
    }

    fn generations(&self) -> Vec<u64> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut gens: Vec<u64> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("gen-"))
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        gens.sort_unstable();
        gens
    }

    fn next_generation(&self) -> String {
        let n = self.generations().last().map_or(1, |g| g + 1);
        format!("gen-{n}")
    }

    /// Keeps the new and the previous generation; removes older ones.
    fn prune(&self, keep_a: &str, keep_b: Option<&str>) {
        for g in self.generations() {
            let name = format!("gen-{g}");
            if name != keep_a && Some(name.as_str()) != keep_b {
                let _ = fs::remove_dir_all(self.dir.join(name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "gatecert-store-{tag}-{}-{}",
            std::process::id(),
            crate::crypto::hex(&crate::crypto::random_bytes::<4>().unwrap())
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn set(tag: &str) -> CertSet {
        CertSet {
            key_pem: format!("KEY {tag}\n"),
            cert_pem: format!("CERT {tag}\n"),
            chain_pem: format!("CHAIN {tag}\n"),
        }
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let d = tempdir("atomic");
        let p = d.join("k.pem");
        write_atomic(&p, b"one", SECRET).unwrap();
        write_atomic(&p, b"two", SECRET).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // no temp file left behind
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn write_if_changed_skips_identical_content() {
        let d = tempdir("changed");
        let p = d.join("s.json");
        assert!(write_if_changed(&p, b"x", PUBLIC).unwrap());
        assert!(!write_if_changed(&p, b"x", PUBLIC).unwrap());
        assert!(write_if_changed(&p, b"y", PUBLIC).unwrap());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn install_swaps_sets_and_restore_goes_back() {
        let d = tempdir("install");
        let sd = SetDir::new(d.join("gw"));
        assert_eq!(sd.install(&set("a")).unwrap(), None);
        let prev = sd.install(&set("b")).unwrap().unwrap();
        let live = sd.live();
        assert_eq!(fs::read_to_string(live.join(KEY)).unwrap(), "KEY b\n");
        assert_eq!(
            fs::read_to_string(live.join(FULLCHAIN)).unwrap(),
            "CERT b\nCHAIN b\n"
        );
        let mode = fs::metadata(live.join(KEY)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = fs::metadata(sd.path()).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        sd.restore(&prev).unwrap();
        assert_eq!(fs::read_to_string(live.join(CERT)).unwrap(), "CERT a\n");
        // a third install prunes everything but the new and the previous generation
        sd.install(&set("c")).unwrap();
        sd.install(&set("d")).unwrap();
        let gens = sd.generations();
        assert_eq!(gens.len(), 2, "{gens:?}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn lock_is_exclusive() {
        let d = tempdir("lock");
        let l = Lock::acquire(&d).unwrap();
        assert!(matches!(Lock::acquire(&d), Err(Error::Locked(_))));
        drop(l);
        Lock::acquire(&d).unwrap();
        fs::remove_dir_all(d).unwrap();
    }

    /// Issue 10 item 4: the old temp name was `.NAME.tmpPID`; a symlink planted there (by
    /// anyone who can write the directory) must not be followed, truncated or chmod'ed.
    #[test]
    fn planted_symlink_at_temp_name_does_not_redirect_write() {
        let d = tempdir("plant");
        let victim = d.join("victim");
        fs::write(&victim, b"root secret").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        let target = d.join("gatecert.prom");
        let old_tmp = d.join(format!(".gatecert.prom.tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        write_atomic(&target, b"metrics", PUBLIC).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"root secret");
        let mode = fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "victim chmod'ed");
        assert_eq!(fs::read(&target).unwrap(), b"metrics");
        fs::remove_dir_all(d).unwrap();
    }

    /// A symlink at the destination is replaced by rename(2); what it points at is untouched.
    #[test]
    fn symlink_at_destination_is_replaced_not_followed() {
        let d = tempdir("dest-link");
        let victim = d.join("victim");
        fs::write(&victim, b"keep").unwrap();
        let target = d.join("out.pem");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write_atomic(&target, b"new", PUBLIC).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&target).unwrap().file_type().is_file());
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert!(matches!(check_output_path(&victim), Ok(())));
        fs::remove_dir_all(d).unwrap();
    }

    /// A FIFO (anyone can make one) stands for any device node: never replaced, never read.
    #[test]
    fn special_file_destination_is_refused_and_kept() {
        use std::os::unix::fs::FileTypeExt as _;
        let d = tempdir("fifo");
        let fifo = d.join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = write_atomic(&fifo, b"x", PUBLIC).unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        let e = write_if_changed(&fifo, b"x", PUBLIC).unwrap_err();
        assert!(matches!(e, Error::NotRegular { .. }), "{e}");
        assert!(matches!(
            check_output_path(&d),
            Err(Error::NotRegular { .. })
        ));
        // only the FIFO is there: no temp file was left behind
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn io_errors_name_the_path() {
        let e = read(Path::new("/nonexistent/gatecert/x.pem")).unwrap_err();
        assert_eq!(e.to_string(), "cannot read /nonexistent/gatecert/x.pem");
    }
}
