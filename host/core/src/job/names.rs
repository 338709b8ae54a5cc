//! Names in a job file. They become path parts (checkpoint directories,
//! staging files), thread names, metric labels and parts of control
//! messages, so each has one small, safe character set and a length bound.

use super::bounds::NAME_CHARS_MAX;

/// Why `name` cannot name a job, or `None` if it can: 1 to 64 letters,
/// digits, '-', '_' and '.', not starting with '.' (no `..`, no hidden
/// directory, no separator, no NUL).
pub fn job_name_problem(name: &str) -> Option<String> {
    let ok = (1..=NAME_CHARS_MAX).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (!ok).then(|| {
        format!(
            "job name `{}` must be 1 to {NAME_CHARS_MAX} letters, digits, '-', '_' or '.', not starting with '.'",
            crate::text::cut(name, 2 * NAME_CHARS_MAX)
        )
    })
}

/// Why `name` cannot name a source, operator or sink (`what`), or `None`:
/// 1 to 64 letters, digits, '-' and '_' (a '.' would clash with `op.late`).
pub fn node_name_problem(what: &str, name: &str) -> Option<String> {
    let ok = (1..=NAME_CHARS_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    (!ok).then(|| {
        format!(
            "{what} name `{}` must be 1 to {NAME_CHARS_MAX} letters, digits, '-' or '_'",
            crate::text::cut(name, 2 * NAME_CHARS_MAX)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_safe_path_parts() {
        for good in ["wc", "word-count_2.v1", &"a".repeat(64)] {
            assert_eq!(job_name_problem(good), None, "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "../x",
            "a/b",
            "a\0b",
            "é",
            "a b",
            &"a".repeat(65),
        ] {
            assert!(job_name_problem(bad).is_some(), "{bad:?}");
        }
        let message = job_name_problem("a\0b").unwrap();
        assert!(message.contains("`a\\u{0}b`"), "{message}");
    }

    #[test]
    fn node_names_have_no_dots() {
        assert_eq!(node_name_problem("sink", "out-1_x"), None);
        for bad in ["", "a.late", "a/b", &"n".repeat(65)] {
            assert!(node_name_problem("sink", bad).is_some(), "{bad:?}");
        }
    }
}
