//! Writing the diagram without trusting what is already at its path.
//!
//! On a lab machine `/tmp` is shared. Before the teacher runs
//! `sockdemo tour --diagram /tmp/tour.svg`, another user can make
//! `/tmp/tour.svg` a symbolic link to the teacher's `~/.bashrc`: a plain
//! `fs::write` would follow it and overwrite the file it points to. Or it
//! can be a FIFO, and `fs::write` would wait for a reader forever. So:
//!
//! 1. Before the run, a path that is a link, or exists and is not a
//!    regular file, is refused. `symlink_metadata` (lstat(2)) looks at the
//!    link itself; `metadata` (stat(2)) would look through it.
//! 2. After the run, the diagram goes to a new file beside the path,
//!    created with `create_new` (O_CREAT | O_EXCL): if anything already has
//!    that name, even a dangling link, the creation fails instead of
//!    following it.
//! 3. The path is checked again, and the new file is renamed over it.
//!    rename(2) replaces the *name*: if the path became a link between the
//!    check and the rename, the link itself is replaced and what it pointed
//!    to is untouched. Anyone reading the path sees the old file or the new
//!    one, never half of one.
//!
//! If anything fails, the temporary file is removed.

use crate::engine::errors::UsageError;
use crate::t;
use anyhow::Context;
use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Before the run: the path is new or a regular file, and a file can be
/// made in its folder. A link or an odd file is a usage error (2); a
/// missing or closed folder an error (1).
pub fn check(path: &Path) -> anyhow::Result<()> {
    refuse_unless_replaceable(path)?;
    let folder = folder_of(path);
    if !folder.is_dir() {
        let (shown, folder) = (path.display(), folder.display());
        anyhow::bail!(t!(
            "cannot write the diagram to {shown}: the folder {folder} does not exist",
            "无法把时序图写入 {shown}：文件夹 {folder} 不存在"
        ));
    }
    // A read-only folder is found now, not after the whole run.
    let (temp, _) = create_temp(path).with_context(|| cannot_write(path))?;
    let _ = fs::remove_file(temp);
    Ok(())
}

/// After the run: `bytes` replace whatever regular file is at `path`.
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let (temp_path, mut file) = create_temp(path).with_context(|| cannot_write(path))?;
    let temp = RemovedOnDrop(Some(temp_path));
    // On disk before the rename, so a crash cannot leave an empty diagram.
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| cannot_write(path))?;
    drop(file);
    // The run took seconds, and the path may have changed meanwhile.
    refuse_unless_replaceable(path)?;
    fs::rename(temp.path(), path).with_context(|| cannot_write(path))?;
    temp.keep();
    Ok(())
}

/// Refuses a path that is a symbolic link, or exists and is not a regular
/// file. A new path, or a regular file, may be replaced.
fn refuse_unless_replaceable(path: &Path) -> anyhow::Result<()> {
    let kind = match fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow::Error::new(e).context(cannot_write(path))),
    };
    let shown = path.display();
    let problem = if kind.is_symlink() {
        // What the link points to is not shown: its text is someone else's.
        t!(
            "{shown} is a symbolic link, and sockdemo does not write through links (on a shared machine it may point at someone's file): remove it or choose another file name",
            "{shown} 是一个符号链接，sockdemo 不会透过链接写入（在共用的机器上它可能指向别人的文件）：请删除它，或换一个文件名"
        )
    } else if kind.is_dir() {
        t!(
            "{shown} is a folder: give the name of a file in it, such as {shown}/tour.svg",
            "{shown} 是一个文件夹：请给出其中的一个文件名，例如 {shown}/tour.svg"
        )
    } else if !kind.is_file() {
        t!(
            "{shown} is not a regular file (a FIFO, a socket or a device): choose another file name",
            "{shown} 不是普通文件（而是 FIFO、套接字或设备）：请换一个文件名"
        )
    } else {
        return Ok(());
    };
    Err(UsageError(problem).into())
}

/// A new, empty file beside `path`, made with O_EXCL and mode 0644.
fn create_temp(path: &Path) -> io::Result<(PathBuf, File)> {
    let folder = folder_of(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let random = std::collections::hash_map::RandomState::new();
    let mut taken = None;
    for attempt in 0..8u32 {
        // Hidden, unguessable, and ending in `.svg.tmp`, which .gitignore
        // ignores whichever format is written.
        let nonce = random.hash_one((std::process::id(), attempt));
        let temp = folder.join(format!(".{name}.{nonce:016x}.svg.tmp"));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
        match options.open(&temp) {
            Ok(file) => return Ok((temp, file)),
            // The name is taken (perhaps by a planted link): draw another.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => taken = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(taken.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

/// The folder a relative file name like `tour.svg` is in: `.`.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn cannot_write(path: &Path) -> String {
    let shown = path.display();
    t!(
        "cannot write the diagram to {shown}",
        "无法把时序图写入 {shown}"
    )
}

/// A temporary file that is removed unless it was renamed into place.
struct RemovedOnDrop(Option<PathBuf>);

impl RemovedOnDrop {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A folder of its own for one test, removed when the test ends.
    struct Folder(PathBuf);

    impl Folder {
        fn new(name: &str) -> Folder {
            let dir = std::env::temp_dir()
                .join(format!("sockdemo-replace-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Folder(dir)
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// What step 3 relies on: rename(2) over a link replaces the link,
    /// not the file it points to.
    #[test]
    fn rename_replaces_a_link_not_its_target() {
        let dir = Folder::new("rename");
        let (victim, link, new) = (dir.0.join("victim"), dir.0.join("d.svg"), dir.0.join("new"));
        fs::write(&victim, "precious").unwrap();
        symlink(&victim, &link).unwrap();
        fs::write(&new, "diagram").unwrap();
        fs::rename(&new, &link).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
        assert_eq!(fs::read_to_string(&link).unwrap(), "diagram");
    }

    /// A link planted during the run is refused at the second check, and
    /// the temporary file goes away.
    #[test]
    fn a_link_planted_during_the_run_is_refused() {
        let dir = Folder::new("planted");
        let (victim, path) = (dir.0.join("victim"), dir.0.join("d.svg"));
        fs::write(&victim, "precious").unwrap();
        check(&path).unwrap();
        symlink(&victim, &path).unwrap();
        let err = write(&path, b"diagram").unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err:#}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(dir.names(), ["d.svg", "victim"], "no temporary file left");
    }

    #[test]
    fn a_regular_file_is_replaced_with_mode_0644() {
        use std::os::unix::fs::PermissionsExt;
        let dir = Folder::new("regular");
        let path = dir.0.join("d.mmd");
        fs::write(&path, "old").unwrap();
        check(&path).unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // The umask may take bits away, never add them.
        assert_eq!(mode & !0o644, 0, "{mode:o}");
        assert_eq!(dir.names(), ["d.mmd"], "no temporary file left");
    }
}
