//! Where a job's connectors may read and write: the data roots a node's
//! operator allows (read-write or read-only), and the check of every path a
//! job file names against them.
//!
//! This is the one module of weir-core that touches the file system, and
//! only to look: [`DataRoots::new`] and [`DataRoots::check`] canonicalize
//! paths and read symlink metadata (in [`resolve_existing_prefix`]) so that
//! a symlink cannot lead a path out of its root. Nothing is created or
//! opened.
//!
//! The check holds when it runs (at submission and again at deployment).
//! A job cannot create symlinks itself (sinks write regular files), so a
//! path checked inside a root stays inside unless someone with a shell on
//! the node changes the tree.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::job::{JobError, JobSpec, SinkKind, SourceKind};

/// What a job does with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "reading",
            Access::ReadWrite => "writing",
        })
    }
}

/// The directory trees a node lets jobs use, canonicalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoots {
    read_write: Vec<PathBuf>,
    read_only: Vec<PathBuf>,
}

impl DataRoots {
    /// Roots are canonicalized; a root that does not exist is an error naming it.
    pub fn new(read_write: &[PathBuf], read_only: &[PathBuf]) -> Result<DataRoots, String> {
        let canonical = |roots: &[PathBuf], kind: &str| -> Result<Vec<PathBuf>, String> {
            roots
                .iter()
                .map(|root| {
                    std::fs::canonicalize(root)
                        .map_err(|e| format!("{kind} data root {}: {e}", root.display()))
                })
                .collect()
        };
        Ok(DataRoots {
            read_write: canonical(read_write, "read-write")?,
            read_only: canonical(read_only, "read-only")?,
        })
    }

    /// Resolves `path` and checks it lies inside a root that allows
    /// `access`. A relative path is taken relative to the current directory
    /// (as opening it would). Any `..` component is refused; symlinks in the
    /// longest existing prefix are resolved (one that leads outside is
    /// refused like any outside path); a path that does not exist yet is
    /// judged by its existing ancestor. Returns the resolved path.
    pub fn check(&self, path: &Path, access: Access) -> Result<PathBuf, String> {
        if path.as_os_str().is_empty() {
            return Err("an empty path".into());
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(format!(
                "{} contains `..`; data paths must not climb out of a directory",
                path.display()
            ));
        }
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| format!("{}: cannot find the current directory: {e}", path.display()))?
                .join(path)
        };
        let resolved = resolve_existing_prefix(&absolute)?;
        let inside = |roots: &[PathBuf]| roots.iter().any(|root| resolved.starts_with(root));
        if inside(&self.read_write) || (access == Access::Read && inside(&self.read_only)) {
            return Ok(resolved);
        }
        let shown = if resolved == path {
            path.display().to_string()
        } else {
            format!("{} (resolved: {})", path.display(), resolved.display())
        };
        if inside(&self.read_only) {
            return Err(format!(
                "{shown} is under a read-only data root; {access} needs a read-write root ({})",
                self.describe()
            ));
        }
        Err(format!(
            "{shown} is outside the allowed data roots ({})",
            self.describe()
        ))
    }

    /// "read-write: /a, /b; read-only: /c" for error messages.
    pub fn describe(&self) -> String {
        let list = |roots: &[PathBuf]| {
            if roots.is_empty() {
                "none".to_string()
            } else {
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let mut text = format!("read-write: {}", list(&self.read_write));
        if !self.read_only.is_empty() {
            text.push_str(&format!("; read-only: {}", list(&self.read_only)));
        }
        text
    }
}

/// Canonicalizes the longest prefix of `absolute` that exists (as a
/// directory entry: a dangling symlink counts, and is refused because it is
/// where a write would follow it) and appends the rest unchanged. The rest
/// holds only plain names: `absolute` has no `..` (checked by the caller).
fn resolve_existing_prefix(absolute: &Path) -> Result<PathBuf, String> {
    for existing in absolute.ancestors() {
        if std::fs::symlink_metadata(existing).is_err() {
            continue;
        }
        let canonical = std::fs::canonicalize(existing).map_err(|e| {
            format!(
                "{}: cannot resolve {} (a symlink to nowhere?): {e}",
                absolute.display(),
                existing.display()
            )
        })?;
        let rest = absolute
            .strip_prefix(existing)
            .expect("an ancestor is a prefix");
        return Ok(if rest.as_os_str().is_empty() {
            canonical
        } else {
            canonical.join(rest)
        });
    }
    Err(format!(
        "{}: no part of this path exists",
        absolute.display()
    ))
}

/// One path a job file names, what the job does with it, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathUse {
    pub path: PathBuf,
    pub access: Access,
    pub line: usize,
    /// E.g. "sink `late-words` field `path`".
    pub field: String,
}

impl JobSpec {
    /// Every path the job reads or writes: file sources and operator
    /// artifacts (read), file sinks (write; an exactly-once sink writes a
    /// directory), `[job] state_dir` and `[checkpoint] dir` (write).
    pub fn path_uses(&self) -> Vec<PathUse> {
        let mut uses = Vec::new();
        let mut add = |path: &Path, access, line, field: String| {
            uses.push(PathUse {
                path: path.to_path_buf(),
                access,
                line,
                field,
            })
        };
        if let Some(dir) = &self.state_dir {
            add(
                dir,
                Access::ReadWrite,
                self.state_dir_line,
                "[job] field `state_dir`".into(),
            );
        }
        for s in &self.sources {
            if let SourceKind::File { path, .. } = &s.kind {
                add(
                    path,
                    Access::Read,
                    s.path_line,
                    format!("source `{}` field `path`", s.name),
                );
            }
        }
        for o in &self.operators {
            add(
                &o.wasm,
                Access::Read,
                o.wasm_line,
                format!("operator `{}` field `wasm`", o.name),
            );
        }
        for s in &self.sinks {
            match &s.kind {
                SinkKind::File { path } | SinkKind::TransactionalFile { dir: path } => add(
                    path,
                    Access::ReadWrite,
                    s.path_line,
                    format!("sink `{}` field `path`", s.name),
                ),
                SinkKind::Stdout | SinkKind::Discard => {}
            }
        }
        if let Some(c) = &self.checkpoint {
            add(
                &c.dir,
                Access::ReadWrite,
                c.dir_line,
                "[checkpoint] field `dir`".into(),
            );
        }
        uses
    }
}

/// The first path of `spec` outside `roots`, as a job-file error, e.g.
/// `job.toml:41: sink `late-words` field `path`: /root/.probe.txt is outside
/// the allowed data roots (read-write: /srv/weir)`.
pub fn check_paths(spec: &JobSpec, roots: &DataRoots) -> Result<(), JobError> {
    for u in spec.path_uses() {
        roots.check(&u.path, u.access).map_err(|reason| JobError {
            file: spec.file.clone(),
            line: Some(u.line),
            message: format!("{}: {reason}", u.field),
        })?;
    }
    Ok(())
}

/// Checks a directory given on the command line or over REST (a savepoint
/// or resume directory), which the node will write.
pub fn check_dir(roots: &DataRoots, dir: &Path) -> Result<PathBuf, String> {
    roots.check(dir, Access::ReadWrite)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tree {
        _tmp: tempfile::TempDir,
        rw: PathBuf,
        ro: PathBuf,
        outside: PathBuf,
        roots: DataRoots,
    }

    fn tree() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let (rw, ro, outside) = (base.join("rw"), base.join("ro"), base.join("outside"));
        for d in [&rw, &ro, &outside] {
            std::fs::create_dir(d).unwrap();
        }
        let roots = DataRoots::new(std::slice::from_ref(&rw), std::slice::from_ref(&ro)).unwrap();
        Tree {
            _tmp: tmp,
            rw,
            ro,
            outside,
            roots,
        }
    }

    #[test]
    fn paths_inside_a_root_pass_even_before_they_exist() {
        let t = tree();
        std::fs::write(t.rw.join("in.txt"), "x").unwrap();
        assert_eq!(
            t.roots.check(&t.rw.join("in.txt"), Access::Read).unwrap(),
            t.rw.join("in.txt")
        );
        let later = t.rw.join("out/deeper/part-0");
        assert_eq!(t.roots.check(&later, Access::ReadWrite).unwrap(), later);
        assert_eq!(t.roots.check(&t.rw, Access::ReadWrite).unwrap(), t.rw);
        t.roots.check(&t.ro.join("data.csv"), Access::Read).unwrap();
    }

    #[test]
    fn absolute_paths_outside_are_refused_naming_the_roots() {
        let t = tree();
        let e = t
            .roots
            .check(Path::new("/root/.probe.txt"), Access::ReadWrite)
            .unwrap_err();
        assert!(
            e.starts_with("/root/.probe.txt is outside the allowed data roots (read-write: "),
            "{e}"
        );
        assert!(e.contains(&format!("read-only: {}", t.ro.display())), "{e}");
        // A sibling whose name merely starts like a root is outside too.
        let sibling = PathBuf::from(format!("{}-evil/x", t.rw.display()));
        assert!(t.roots.check(&sibling, Access::Read).is_err());
    }

    #[test]
    fn parent_components_are_refused() {
        let t = tree();
        let e = t
            .roots
            .check(&t.rw.join("../outside/x"), Access::Read)
            .unwrap_err();
        assert!(e.contains("contains `..`"), "{e}");
    }

    #[test]
    fn symlinks_that_escape_are_refused() {
        let t = tree();
        std::fs::write(t.outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(&t.outside, t.rw.join("link")).unwrap();
        let e = t
            .roots
            .check(&t.rw.join("link/secret"), Access::Read)
            .unwrap_err();
        assert!(e.contains("is outside") && e.contains("resolved: "), "{e}");
        // A not-yet-existing file behind the escaping link: judged by the link's target.
        assert!(
            t.roots
                .check(&t.rw.join("link/new"), Access::ReadWrite)
                .is_err()
        );
        // A dangling symlink: a write would create its target wherever it points.
        std::os::unix::fs::symlink(t.outside.join("nothing"), t.rw.join("dangling")).unwrap();
        let e = t
            .roots
            .check(&t.rw.join("dangling"), Access::ReadWrite)
            .unwrap_err();
        assert!(e.contains("cannot resolve"), "{e}");
        // A link that stays inside is fine.
        std::fs::create_dir(t.rw.join("real")).unwrap();
        std::os::unix::fs::symlink(t.rw.join("real"), t.rw.join("alias")).unwrap();
        assert_eq!(
            t.roots
                .check(&t.rw.join("alias/f"), Access::ReadWrite)
                .unwrap(),
            t.rw.join("real/f")
        );
    }

    #[test]
    fn read_only_roots_refuse_writes() {
        let t = tree();
        let e = t
            .roots
            .check(&t.ro.join("out.txt"), Access::ReadWrite)
            .unwrap_err();
        assert!(
            e.contains("is under a read-only data root; writing needs a read-write root"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_root_is_named() {
        let e = DataRoots::new(&[PathBuf::from("/no/such/root")], &[]).unwrap_err();
        assert!(e.contains("read-write data root /no/such/root"), "{e}");
    }

    #[test]
    fn check_paths_names_line_and_field() {
        let t = tree();
        let job_file = t.rw.join("job.toml");
        let text = format!(
            "[job]\nname = \"j\"\nstate_dir = \"state\"\n[[source]]\nname = \"in\"\nkind = \"file\"\npath = \"in.txt\"\n[[sink]]\nname = \"late-words\"\nkind = \"file\"\ninput = \"in\"\npath = \"{}\"\n",
            t.outside.join("probe.txt").display()
        );
        let spec = crate::job::parse(&text, &job_file).unwrap();
        let uses = spec.path_uses();
        assert_eq!(
            uses.iter()
                .map(|u| (u.line, u.access, u.field.as_str()))
                .collect::<Vec<_>>(),
            [
                (3, Access::ReadWrite, "[job] field `state_dir`"),
                (7, Access::Read, "source `in` field `path`"),
                (12, Access::ReadWrite, "sink `late-words` field `path`"),
            ]
        );
        let e = check_paths(&spec, &t.roots).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:12: sink `late-words` field `path`: {}/probe.txt is outside the allowed data roots ({})",
                job_file.display(),
                t.outside.display(),
                t.roots.describe()
            )
        );
        let inside = text.replace(
            &t.outside.display().to_string(),
            &t.rw.display().to_string(),
        );
        check_paths(&crate::job::parse(&inside, &job_file).unwrap(), &t.roots).unwrap();
    }
}
