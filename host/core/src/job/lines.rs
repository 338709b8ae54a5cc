//! Where in the job file an error is: line numbers from byte offsets.
//!
//! Line starts are found once per file, and each lookup is a binary search,
//! so naming lines keeps parsing linear in the file's size whatever the
//! number of errors checked or names claimed.

use std::path::Path;

use super::JobError;

/// The job file's text, its name for errors, and where its lines start.
pub(super) struct Cx<'a> {
    pub(super) file: &'a Path,
    /// Byte offset of the first byte of each line; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
    len: usize,
}

impl<'a> Cx<'a> {
    pub(super) fn new(text: &str, file: &'a Path) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(at, _)| at + 1),
        );
        Cx {
            file,
            line_starts,
            len: text.len(),
        }
    }

    /// The 1-based line holding byte `offset` (clamped to the text).
    pub(super) fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.len);
        // The number of line starts at or before `offset`.
        self.line_starts.partition_point(|&start| start <= offset)
    }

    pub(super) fn err_at(&self, offset: usize, message: impl Into<String>) -> JobError {
        JobError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(offset)),
            message: message.into(),
        }
    }

    pub(super) fn toml_error(&self, e: &toml::de::Error) -> JobError {
        let line = e.span().map(|s| self.line_of(s.start));
        JobError {
            file: self.file.to_path_buf(),
            line,
            message: crate::text::cut_message(e.message().trim()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_from_one_at_every_offset() {
        let text = "a\nbc\n\nd";
        let cx = Cx::new(text, Path::new("j.toml"));
        let expected = [1, 1, 2, 2, 2, 3, 4, 4];
        for (offset, line) in expected.iter().enumerate() {
            assert_eq!(cx.line_of(offset), *line, "offset {offset}");
        }
        assert_eq!(cx.line_of(1000), 4, "clamped to the end");
        assert_eq!(Cx::new("", Path::new("j")).line_of(0), 1);
    }
}
