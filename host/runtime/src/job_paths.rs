//! Lexical clean-up of the paths in a job before they are checked against
//! the data roots.
//!
//! A job file names paths relative to its own directory, so a job in
//! `examples/wordcount` reaches the guests as
//! `../../target/wasm/...`; joined, that is
//! `examples/wordcount/../../target/wasm/...`. The data-root check refuses
//! every `..` (a `..` after a symlink means something else to the kernel
//! than to a reader), so `..` is folded into the component before it here:
//! the path the job then opens is exactly the path that was checked, with
//! its symlinks resolved by the check. A `..` that would climb above the
//! start of a relative path is kept, and refused by the check.

use std::path::{Component, Path, PathBuf};

use weir_core::job::{JobSpec, SinkKind, SourceKind};

/// Folds `.` and `..` in every path of `job` that the data roots govern.
pub fn clean_job_paths(job: &mut JobSpec) {
    let clean_in_place = |path: &mut PathBuf| *path = clean(path);
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
            SinkKind::Stdout | SinkKind::Discard => {}
        }
    }
    if let Some(dir) = &mut job.state_dir {
        clean_in_place(dir);
    }
    if let Some(checkpoint) = &mut job.checkpoint {
        clean_in_place(&mut checkpoint.dir);
    }
}

/// `path` with `.` dropped and each `..` cancelling the name before it.
fn clean(path: &Path) -> PathBuf {
    let mut parts: Vec<Component<'_>> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match parts.last() {
                Some(Component::Normal(_)) => {
                    parts.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                // Above the start of a relative path: left for the check.
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

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            assert_eq!(clean(Path::new(input)), Path::new(cleaned), "{input}");
        }
    }

    #[test]
    fn climbing_above_a_relative_start_is_kept_for_the_check_to_refuse() {
        assert_eq!(clean(Path::new("a/../../x")), Path::new("../x"));
        assert_eq!(clean(Path::new("../../x")), Path::new("../../x"));
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
        let mut job = weir_core::job::parse(text, Path::new("/repo/examples/x/job.toml")).unwrap();
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
}
