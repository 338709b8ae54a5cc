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

/// The directory trees a node lets jobs use, canonicalized, and the trees
/// of weir's own files inside them that jobs may never use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoots {
    read_write: Vec<PathBuf>,
    read_only: Vec<PathBuf>,
    /// Weir's own directories (certificates, caches with their keys, work
    /// dirs, the job registry with control tokens): often inside a root
    /// (`weir cluster up` keeps `.weir/cluster` under the directory it
    /// passes as data root), so they are carved out of every root.
    denied: Vec<PathBuf>,
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
            denied: Vec::new(),
        })
    }

    /// Carves `dir`, one of weir's own directories, out of every root: a
    /// job may not read or write anything inside it, nor write a directory
    /// that contains it. `dir` need not exist yet (a cache made on first
    /// use): its existing prefix is resolved like a job path's, so a
    /// symlink to it is caught too. An empty path denies nothing.
    pub fn deny(&mut self, dir: &Path) -> Result<(), String> {
        if dir.as_os_str().is_empty() {
            return Ok(());
        }
        let absolute = if dir.is_absolute() {
            clean_path(dir)
        } else {
            let cwd = std::env::current_dir().map_err(|e| {
                format!("{}: cannot find the current directory: {e}", dir.display())
            })?;
            clean_path(&cwd.join(dir))
        };
        let resolved = resolve_existing_prefix(&absolute)?;
        if !self.denied.contains(&resolved) {
            self.denied.push(resolved);
        }
        Ok(())
    }

    /// [`DataRoots::deny`] as a builder.
    pub fn denying(mut self, dir: &Path) -> Result<DataRoots, String> {
        self.deny(dir)?;
        Ok(self)
    }

    /// Weir's own directories carved out of the roots.
    pub fn denied(&self) -> &[PathBuf] {
        &self.denied
    }

    /// Resolves `path` and checks it lies inside a root that allows
    /// `access`. A relative path is taken relative to the current directory
    /// (as opening it would). Any `..` component is refused; symlinks in the
    /// longest existing prefix are resolved (one that leads outside is
    /// refused like any outside path); a path that does not exist yet is
    /// judged by its existing ancestor. Returns the resolved path.
    pub fn check(&self, path: &Path, access: Access) -> Result<PathBuf, String> {
        // An object store URL (snapshots on S3) is no path on this node:
        // what it may reach is up to the store's credentials.
        if crate::job::is_remote_location(path) {
            return if path.components().any(|c| c == Component::ParentDir) {
                Err(format!("{} contains `..`", path.display()))
            } else {
                Ok(path.to_path_buf())
            };
        }
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
        self.check_not_denied(path, &resolved, access)?;
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

    /// Refuses a resolved path inside a denied tree, and (for writing) one
    /// that contains a denied tree: a sink or state directory there would
    /// write next to, or prune, weir's own files.
    fn check_not_denied(&self, path: &Path, resolved: &Path, access: Access) -> Result<(), String> {
        let shown = || {
            if resolved == path {
                path.display().to_string()
            } else {
                format!("{} (resolved: {})", path.display(), resolved.display())
            }
        };
        if let Some(own) = self.denied.iter().find(|d| resolved.starts_with(d)) {
            return Err(format!(
                "{} is inside weir's own directory {} (certificates, caches, work dirs), which jobs may never use",
                shown(),
                own.display()
            ));
        }
        if access == Access::ReadWrite
            && let Some(own) = self.denied.iter().find(|d| d.starts_with(resolved))
        {
            return Err(format!(
                "{} contains weir's own directory {} (certificates, caches, work dirs), which jobs may never use; write to a directory beside it",
                shown(),
                own.display()
            ));
        }
        Ok(())
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

/// `path` with `.` dropped and each `..` cancelling the name before it,
/// lexically (no file system access). A `..` that would climb above the
/// start of a relative path is kept (and [`DataRoots::check`] refuses it);
/// `/..` is `/`.
///
/// A job file names paths relative to its own directory, so a job in
/// `examples/wordcount` reaches its guests as `../../target/wasm/...`;
/// joined, that is `examples/wordcount/../../target/wasm/...`. The check
/// refuses every `..` (after a symlink, `..` means something else to the
/// kernel than to a reader), so callers fold them first with
/// [`clean_job_paths`]: the path the job then opens is exactly the path
/// that was checked.
pub fn clean_path(path: &Path) -> PathBuf {
    let mut parts: Vec<Component<'_>> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match parts.last() {
                Some(Component::Normal(_)) => {
                    parts.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => parts.push(component),
            },
            _ => parts.push(component),
        }
    }
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}

/// Folds `.` and `..` (with [`clean_path`]) in every path of `job` that the
/// data roots govern; call it before [`check_paths`], on every node that
/// checks and then opens the paths.
pub fn clean_job_paths(job: &mut JobSpec) {
    let clean_in_place = |path: &mut PathBuf| *path = clean_path(path);
    for source in &mut job.sources {
        if let SourceKind::File { path, .. } = &mut source.kind {
            clean_in_place(path);
        }
    }
    for op in &mut job.operators {
        clean_in_place(&mut op.wasm);
    }
    for sink in &mut job.sinks {
        match &mut sink.kind {
            SinkKind::File { path } | SinkKind::TransactionalFile { dir: path } => {
                clean_in_place(path)
            }
            SinkKind::Stdout | SinkKind::Discard | SinkKind::Kafka(_) => {}
        }
    }
    if let Some(dir) = &mut job.state_dir {
        clean_in_place(dir);
    }
    if let Some(checkpoint) = &mut job.checkpoint
        && !checkpoint.is_remote()
    {
        clean_in_place(&mut checkpoint.dir);
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
                SinkKind::Stdout | SinkKind::Discard | SinkKind::Kafka(_) => {}
            }
        }
        // An object store is no path on this node's file system.
        if let Some(c) = self.checkpoint.as_ref().filter(|c| !c.is_remote()) {
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
    fn denied_trees_are_refused_inside_a_root_even_before_they_exist() {
        let t = tree();
        let own = t.rw.join(".weir/cluster");
        std::fs::create_dir_all(own.join("certs")).unwrap();
        std::fs::write(own.join("certs/ca.key"), "k").unwrap();
        let cache = t.rw.join("cache/weir");
        let roots = t
            .roots
            .clone()
            .denying(&own)
            .unwrap()
            .denying(&cache)
            .unwrap();
        for (path, access) in [
            (own.join("certs/ca.key"), Access::Read),
            (own.join("worker-0/artifacts/x"), Access::ReadWrite),
            (cache.join("key"), Access::Read),
        ] {
            let e = roots.check(&path, access).unwrap_err();
            assert!(
                e.contains("is inside weir's own directory")
                    && e.contains("which jobs may never use"),
                "{e}"
            );
        }
        // Through a symlink inside the root.
        std::os::unix::fs::symlink(&own, t.rw.join("innocent")).unwrap();
        let e = roots
            .check(&t.rw.join("innocent/certs/ca.key"), Access::Read)
            .unwrap_err();
        assert!(
            e.contains(&format!("weir's own directory {}", own.display())),
            "{e}"
        );
        // A directory that would hold weir's files may be read but not written.
        let e = roots
            .check(&t.rw.join(".weir"), Access::ReadWrite)
            .unwrap_err();
        assert!(e.contains("contains weir's own directory"), "{e}");
        let e = roots.check(&t.rw, Access::ReadWrite).unwrap_err();
        assert!(e.contains("contains weir's own directory"), "{e}");
        // Beside it is fine.
        roots
            .check(&t.rw.join("out/part-0"), Access::ReadWrite)
            .unwrap();
        roots
            .check(&t.rw.join(".weir-not"), Access::ReadWrite)
            .unwrap();
        // Without the deny list the same paths pass.
        t.roots
            .check(&own.join("certs/ca.key"), Access::Read)
            .unwrap();
    }

    #[test]
    fn a_relative_denied_dir_with_dot_dot_is_cleaned() {
        let t = tree();
        let mut roots = t.roots.clone();
        roots.deny(&t.rw.join("a/../own")).unwrap();
        assert_eq!(roots.denied(), [t.rw.join("own")]);
        assert!(roots.check(&t.rw.join("own/x"), Access::Read).is_err());
        roots.deny(Path::new("")).unwrap();
        assert_eq!(roots.denied().len(), 1);
    }

    #[test]
    fn dot_dot_cancels_the_name_before_it() {
        for (input, cleaned) in [
            (
                "examples/wordcount/../../target/wasm/t.wasm",
                "target/wasm/t.wasm",
            ),
            ("/srv/jobs/../data/./in.txt", "/srv/data/in.txt"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("a/..", "."),
            ("plain/path", "plain/path"),
            ("a/../../x", "../x"),
            ("../../x", "../../x"),
        ] {
            assert_eq!(clean_path(Path::new(input)), Path::new(cleaned), "{input}");
        }
    }

    #[test]
    fn every_governed_path_of_a_job_is_cleaned() {
        let text = r#"
[job]
name = "j"
state_dir = "state/../st"
[checkpoint]
interval_ms = 100
dir = "./chk"
[[source]]
name = "s"
kind = "file"
path = "../data/in.txt"
[[operator]]
name = "o"
wasm = "../../target/o.wasm"
input = "s"
[[sink]]
name = "k"
kind = "file"
path = "out/../out.txt"
input = "o"
"#;
        let mut job = crate::job::parse(text, Path::new("/repo/examples/x/job.toml")).unwrap();
        clean_job_paths(&mut job);
        let uses: Vec<PathBuf> = job.path_uses().into_iter().map(|u| u.path).collect();
        for expected in [
            "/repo/examples/x/st",
            "/repo/examples/data/in.txt",
            "/repo/target/o.wasm",
            "/repo/examples/x/out.txt",
            "/repo/examples/x/chk",
        ] {
            assert!(
                uses.contains(&PathBuf::from(expected)),
                "{expected} in {uses:?}"
            );
        }
        assert!(
            uses.iter()
                .all(|p| !p.components().any(|c| c == Component::ParentDir)),
            "{uses:?}"
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
