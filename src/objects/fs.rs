//! The local filesystem store: a root directory, keys as relative paths below it, resolved so
//! that neither `..` nor a symlink can lead outside the root.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such object")]
    NotFound,
    #[error("the object resolves outside the store's root")]
    Escapes,
    #[error("an object with this key exists already")]
    Exists,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct FsStore {
    pub name: String,
    root: PathBuf,
}

/// An object opened for reading, with what the response needs to describe it.
pub struct FsObject {
    pub file: tokio::fs::File,
    pub size: u64,
    pub modified: SystemTime,
    pub etag: String,
    pub content_type: String,
}

impl FsStore {
    /// `root` is resolved once here (at start), so that each request compares against it
    /// without touching the filesystem for it.
    pub fn new(name: String, root: PathBuf) -> Self {
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        Self { name, root }
    }

    /// Opens `key` (validated by `key::decode_object_path` and the route's template) for reading.
    pub async fn open(&self, key: &str) -> Result<FsObject, FsError> {
        let root = self.root.clone();
        let key = key.to_string();
        let (file, meta, resolved) = tokio::task::spawn_blocking(move || open_beneath(&root, &key))
            .await
            .map_err(|e| FsError::Io(std::io::Error::other(e)))??;
        let mut file = tokio::fs::File::from_std(file);
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let mtime = modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let etag = format!("\"{mtime:x}-{:x}\"", meta.len());
        let content_type = match content_type_by_extension(&resolved) {
            Some(t) => t,
            None => {
                let mut head = [0u8; 16];
                let n = file.read(&mut head).await?;
                file.seek(SeekFrom::Start(0)).await?;
                sniff(&head[..n]).to_string()
            }
        };
        Ok(FsObject {
            file,
            size: meta.len(),
            modified,
            etag,
            content_type,
        })
    }
}

/// Temporary files of uploads in progress start with this, in the store's root.
pub const TEMP_PREFIX: &str = ".postern-upload-";

/// An object as a listing reports it.
#[derive(Debug, Clone)]
pub struct FsListed {
    pub key: String,
    pub size: i64,
    pub etag: String,
}

fn etag_of(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("\"{mtime:x}-{:x}\"", meta.len())
}

impl FsStore {
    /// A new temporary file in the root for an upload (created exclusively).
    pub async fn create_temp(&self) -> Result<(PathBuf, tokio::fs::File), FsError> {
        let path = self.root.join(format!(
            "{TEMP_PREFIX}{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok((path, file))
    }

    /// Moves a complete, synced temporary file to `key` (atomically: readers see nothing or all
    /// of it; never over an existing object) and returns the object's ETag as downloads report it. Directories are created
    /// below the root; one that resolves outside it is refused.
    pub async fn commit_temp(&self, temp: PathBuf, key: &str) -> Result<String, FsError> {
        let root = self.root.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            let relative = Path::new(&key);
            let name = relative.file_name().ok_or(FsError::Escapes)?;
            let resolved_parent =
                dirs_beneath(&root, relative.parent().unwrap_or_else(|| Path::new("")))?;
            let target = resolved_parent.join(name);
            // Never over an existing object (one without a record, put there by other means).
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &temp,
                rustix::fs::CWD,
                &target,
                rustix::fs::RenameFlags::NOREPLACE,
            )
            .map_err(|e| match e {
                rustix::io::Errno::EXIST => FsError::Exists,
                other => FsError::Io(other.into()),
            })?;
            std::fs::File::open(&resolved_parent)?.sync_all()?;
            Ok(etag_of(&std::fs::metadata(&target)?))
        })
        .await
        .map_err(|e| FsError::Io(std::io::Error::other(e)))?
    }

    /// Removes `key`; removing what is not there succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), FsError> {
        let root = self.root.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            let target = root.join(&key);
            let Some(parent) = target.parent() else {
                return Err(FsError::Escapes);
            };
            let resolved_parent = match std::fs::canonicalize(parent) {
                Ok(p) => p,
                Err(e) if is_missing(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if !resolved_parent.starts_with(&root) {
                return Err(FsError::Escapes);
            }
            let Some(name) = target.file_name() else {
                return Err(FsError::Escapes);
            };
            match std::fs::remove_file(resolved_parent.join(name)) {
                Ok(()) => Ok(()),
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
        .map_err(|e| FsError::Io(std::io::Error::other(e)))?
    }

    /// Every regular file whose key starts with `prefix` (a directory path ending in `/`).
    /// Symbolic links are not followed.
    pub async fn list(&self, prefix: &str) -> Result<Vec<FsListed>, FsError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            let start = root.join(&prefix);
            let mut pending = vec![(start, prefix.trim_end_matches('/').to_string())];
            while let Some((dir, key_dir)) = pending.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if is_missing(&e) => continue,
                    Err(e) => return Err(e.into()),
                };
                for entry in entries {
                    let entry = entry?;
                    let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    let key = if key_dir.is_empty() {
                        name.clone()
                    } else {
                        format!("{key_dir}/{name}")
                    };
                    let meta = entry.metadata()?;
                    if meta.is_dir() {
                        pending.push((entry.path(), key));
                    } else if meta.is_file() && !name.starts_with(TEMP_PREFIX) {
                        found.push(FsListed {
                            key,
                            size: i64::try_from(meta.len()).unwrap_or(i64::MAX),
                            etag: etag_of(&meta),
                        });
                    }
                }
            }
            Ok(found)
        })
        .await
        .map_err(|e| FsError::Io(std::io::Error::other(e)))?
    }

    /// Removes upload temporary files older than `max_age` (left by a crash); how many.
    pub async fn sweep_temp(&self, max_age: std::time::Duration) -> Result<usize, FsError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            for entry in std::fs::read_dir(&root)? {
                let entry = entry?;
                let is_temp = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(TEMP_PREFIX));
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age > max_age);
                if is_temp && old && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|e| FsError::Io(std::io::Error::other(e)))?
    }
}

/// Creates the directories of `relative` below `root` one at a time, never below a symlink that
/// leads outside the root (nor through a file); returns the resolved directory.
fn dirs_beneath(root: &Path, relative: &Path) -> Result<PathBuf, FsError> {
    let mut current = root.to_path_buf();
    for component in relative.components() {
        let std::path::Component::Normal(name) = component else {
            return Err(FsError::Escapes);
        };
        current.push(name);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                let resolved = std::fs::canonicalize(&current)?;
                if !resolved.starts_with(root) || !resolved.is_dir() {
                    return Err(FsError::Escapes);
                }
                current = resolved;
            }
            Ok(_) => return Err(FsError::Escapes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::create_dir(&current) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(current)
}

/// Resolves `key` under `root` (symlinks inside the root are followed, one leading outside is
/// refused), then opens what it resolved to component by component with `openat` and
/// `O_NOFOLLOW`, so that a symlink swapped in after the check cannot redirect the open. Anything
/// but a regular file (directory, FIFO, device, socket) is refused before a byte is read;
/// `O_NONBLOCK` keeps a FIFO from blocking the open itself.
fn open_beneath(
    root: &Path,
    key: &str,
) -> Result<(std::fs::File, std::fs::Metadata, PathBuf), FsError> {
    use rustix::fs::{Mode, OFlags};
    let resolved = match std::fs::canonicalize(root.join(key)) {
        Ok(path) => path,
        Err(e) if is_missing(&e) => return Err(FsError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let relative = resolved.strip_prefix(root).map_err(|_| FsError::Escapes)?;
    let components: Vec<_> = relative.components().collect();
    if components.is_empty() {
        return Err(FsError::NotFound);
    }
    let open_error = |e: rustix::io::Errno| match e {
        rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => FsError::NotFound,
        rustix::io::Errno::LOOP => FsError::Escapes,
        other => FsError::Io(other.into()),
    };
    let base = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let mut dir =
        rustix::fs::open(root, base | OFlags::DIRECTORY, Mode::empty()).map_err(open_error)?;
    let last = components.len() - 1;
    for (i, component) in components.into_iter().enumerate() {
        let std::path::Component::Normal(name) = component else {
            return Err(FsError::Escapes);
        };
        let flags = if i == last {
            base | OFlags::NONBLOCK
        } else {
            base | OFlags::DIRECTORY
        };
        dir = rustix::fs::openat(&dir, name, flags, Mode::empty()).map_err(open_error)?;
    }
    let file = std::fs::File::from(dir);
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(FsError::NotFound);
    }
    Ok((file, meta, resolved))
}

fn is_missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    ) || e.raw_os_error() == Some(20) // ENOTDIR on older toolchains' error kinds
}

fn content_type_by_extension(path: &Path) -> Option<String> {
    path.extension()?;
    let mime = mime_guess::from_path(path).first()?;
    let text = mime.essence_str();
    Some(
        if text.starts_with("text/")
            || text == "application/javascript"
            || text == "application/json"
        {
            format!("{text}; charset=utf-8")
        } else {
            text.to_string()
        },
    )
}

/// The type of an object without a known extension, from its first bytes (text stays
/// `application/octet-stream`: without an extension nothing says which text it is).
fn sniff(head: &[u8]) -> &'static str {
    match super::sniff::sniff(head, false) {
        super::sniff::TEXT => super::sniff::BINARY.mime,
        known => known.mime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_extension_and_magic() {
        assert_eq!(
            content_type_by_extension(Path::new("a/b.jpg")).as_deref(),
            Some("image/jpeg")
        );
        assert_eq!(
            content_type_by_extension(Path::new("a.txt")).as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(content_type_by_extension(Path::new("noext")), None);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), "image/png");
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(sniff(b"hello"), "application/octet-stream");
        assert_eq!(sniff(b"MZ\x90\0"), "application/octet-stream");
    }

    #[tokio::test]
    async fn symlinks_cannot_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("shared")).unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"secret").unwrap();
        std::fs::write(root.join("shared/ok.txt"), b"ok").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("shared/link.txt"))
            .unwrap();
        std::os::unix::fs::symlink("ok.txt", root.join("shared/inside.txt")).unwrap();
        let store = FsStore::new("t".into(), root);
        assert!(matches!(
            store.open("shared/link.txt").await,
            Err(FsError::Escapes)
        ));
        assert_eq!(store.open("shared/inside.txt").await.unwrap().size, 2);
        assert!(matches!(
            store.open("shared/missing.txt").await,
            Err(FsError::NotFound)
        ));
        assert!(matches!(
            store.open("shared/ok.txt/x").await,
            Err(FsError::NotFound)
        ));
        assert!(matches!(store.open("shared").await, Err(FsError::NotFound)));
    }

    #[tokio::test]
    async fn uploads_stay_in_the_root_and_never_replace() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let store = FsStore::new("t".into(), root.clone());
        let write = |bytes: &'static [u8]| {
            let store = &store;
            async move {
                let (temp, mut file) = store.create_temp().await.unwrap();
                tokio::io::AsyncWriteExt::write_all(&mut file, bytes)
                    .await
                    .unwrap();
                temp
            }
        };
        let temp = write(b"one").await;
        store.commit_temp(temp, "a/b/c.txt").await.unwrap();
        assert_eq!(std::fs::read(root.join("a/b/c.txt")).unwrap(), b"one");
        let temp = write(b"two").await;
        assert!(matches!(
            store.commit_temp(temp.clone(), "a/b/c.txt").await,
            Err(FsError::Exists)
        ));
        assert_eq!(std::fs::read(root.join("a/b/c.txt")).unwrap(), b"one");
        assert!(matches!(
            store.commit_temp(temp, "escape/sub/x.txt").await,
            Err(FsError::Escapes)
        ));
        assert!(
            !outside.join("sub").exists(),
            "nothing created outside the root"
        );
        let listed = store.list("a/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "a/b/c.txt");
        store.delete("a/b/c.txt").await.unwrap();
        store.delete("a/b/c.txt").await.unwrap();
        assert!(store.list("a/").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let fifo = root.join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let store = FsStore::new("t".into(), root.clone());
        let opened = tokio::time::timeout(std::time::Duration::from_secs(5), store.open("pipe"))
            .await
            .expect("opening a FIFO does not block");
        assert!(matches!(opened, Err(FsError::NotFound)));
    }
}
