//! Byte-range splits of a file source and their positions.
//!
//! A range `[start, end)` owns every line whose first byte lies in it, so
//! any set of disjoint ranges covering the file reads each line exactly
//! once, wherever the cuts fall: a reader starting mid-line skips to the
//! next line start, and the last line it reads may run past `end`. That is
//! what lets a checkpoint taken with `p` splits restore into `q`: the union
//! of what the old splits still had to read is cut anew into `q` lists of
//! about equal bytes ([`rescale`]).
//!
//! A position is `{"ranges": [[start, end], ...], "line": n}`: the ranges
//! still to read, ascending and disjoint, and the number of newlines before
//! the first range's start (`null` when unknown; the reader then counts).
//! A known `line` also says the first start is a line start. The older
//! single-split form `{"offset": o, "line": n}` means `[[o, end of file]]`.

use serde_json::{Value, json};

/// The byte range split `split` of `splits` starts with in a file of `len`
/// bytes: `[floor(split * len / splits), floor((split + 1) * len / splits))`.
pub fn split_range(len: u64, split: u32, splits: u32) -> (u64, u64) {
    let at = |i: u32| (u128::from(len) * u128::from(i) / u128::from(splits.max(1))) as u64;
    (at(split), at(split.saturating_add(1)))
}

/// What a split still has to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePosition {
    /// Ascending, disjoint, none empty.
    pub ranges: Vec<(u64, u64)>,
    /// Newlines before `ranges[0].0`, which is then a line start.
    pub line: Option<u64>,
}

impl FilePosition {
    pub fn to_json(&self) -> Value {
        let ranges: Vec<Value> = self.ranges.iter().map(|&(s, e)| json!([s, e])).collect();
        json!({ "ranges": ranges, "line": self.line })
    }

    /// Reads either form; `file_len` gives the end of the old single-split
    /// form and bounds every range (a file that shrank cannot resume).
    pub fn parse(
        value: &Value,
        file_len: &mut dyn FnMut() -> Result<u64, String>,
    ) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid source position {value}: {why}");
        let line = match value.get("line") {
            None | Some(Value::Null) => None,
            Some(n) => Some(n.as_u64().ok_or_else(|| invalid("`line` is not a count"))?),
        };
        let len = file_len()?;
        let past_end = |end: u64| {
            format!("the checkpoint read up to byte {end}, but the file now has {len} bytes")
        };
        if let Some(offset) = value.get("offset") {
            let offset = offset
                .as_u64()
                .ok_or_else(|| invalid("`offset` is not a byte offset"))?;
            let line = line.ok_or_else(|| invalid("`line` is missing"))?;
            if offset > len {
                return Err(past_end(offset));
            }
            let ranges = if offset < len {
                vec![(offset, len)]
            } else {
                Vec::new()
            };
            return Ok(FilePosition {
                ranges,
                line: Some(line),
            });
        }
        let list = value
            .get("ranges")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("neither `ranges` nor `offset`"))?;
        let mut ranges = Vec::with_capacity(list.len());
        let mut previous_end = 0;
        for range in list {
            let (start, end) = match range.as_array().map(Vec::as_slice) {
                Some([s, e]) => match (s.as_u64(), e.as_u64()) {
                    (Some(s), Some(e)) => (s, e),
                    _ => return Err(invalid("a range is not two byte offsets")),
                },
                _ => return Err(invalid("a range is not [start, end]")),
            };
            if start > end || start < previous_end {
                return Err(invalid("ranges must be ascending and disjoint"));
            }
            if end > len {
                return Err(past_end(end));
            }
            previous_end = end;
            if start < end {
                ranges.push((start, end));
            }
        }
        // The line belongs to the first range as written; if that one was
        // empty and dropped, the count no longer applies.
        let first = list.first().and_then(|r| r.get(0)).and_then(Value::as_u64);
        let line = line.filter(|_| first.is_some() && first == ranges.first().map(|r| r.0));
        Ok(FilePosition { ranges, line })
    }
}

/// Cuts everything `old` still has to read into `new_splits` lists of about
/// equal bytes. Lines after a cut are unknown (`None`) unless the cut falls
/// on a start whose count an old position knew.
pub fn rescale(old: &[FilePosition], new_splits: u32) -> Result<Vec<FilePosition>, String> {
    let mut all: Vec<(u64, u64)> = old.iter().flat_map(|p| p.ranges.iter().copied()).collect();
    all.sort_unstable();
    let mut union: Vec<(u64, u64)> = Vec::with_capacity(all.len());
    for (start, end) in all {
        match union.last_mut() {
            Some(last) if start < last.1 => {
                return Err(format!(
                    "the positions overlap at bytes {start}..{}: they are not from one checkpoint",
                    end.min(last.1)
                ));
            }
            Some(last) if start == last.1 => last.1 = end,
            _ => union.push((start, end)),
        }
    }
    let known = |at: u64| {
        old.iter()
            .find(|p| p.ranges.first().is_some_and(|r| r.0 == at))
            .and_then(|p| p.line)
    };
    let total: u64 = union.iter().map(|r| r.1 - r.0).sum();
    let splits = new_splits.max(1);
    // Cumulative byte `total * j / splits` is where split j begins.
    let cut = |j: u32| (u128::from(total) * u128::from(j) / u128::from(splits)) as u64;
    let mut out = Vec::with_capacity(splits as usize);
    let mut ranges = union.iter().copied();
    let mut current = ranges.next();
    // Bytes of the union before `current`'s start.
    let mut before = 0u64;
    for j in 0..splits {
        let (from, to) = (cut(j), cut(j + 1));
        let mut mine = Vec::new();
        while let Some((start, end)) = current {
            // `current` may have been cut already: its bytes before `from`
            // belong to earlier splits.
            let skip = from.saturating_sub(before);
            let start_here = start + skip.min(end - start);
            let room = to.saturating_sub(before + (start_here - start));
            let end_here = end.min(start_here.saturating_add(room));
            if start_here < end_here {
                mine.push((start_here, end_here));
            }
            if end_here < end {
                break; // the rest of `current` goes to the next split
            }
            before += end - start;
            current = ranges.next();
        }
        let line = mine.first().and_then(|r| known(r.0));
        out.push(FilePosition { ranges: mine, line });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(ranges: &[(u64, u64)], line: Option<u64>) -> FilePosition {
        FilePosition {
            ranges: ranges.to_vec(),
            line,
        }
    }

    #[test]
    fn split_ranges_tile_the_file() {
        for len in [0u64, 1, 7, 100, u64::MAX] {
            for p in 1..6 {
                let mut expected_start = 0;
                for i in 0..p {
                    let (s, e) = split_range(len, i, p);
                    assert_eq!(s, expected_start);
                    assert!(s <= e);
                    expected_start = e;
                }
                assert_eq!(expected_start, len);
            }
        }
    }

    #[test]
    fn both_forms_parse_and_the_new_one_round_trips() {
        let mut len = || Ok(100);
        let old = FilePosition::parse(&json!({"offset": 10, "line": 3}), &mut len).unwrap();
        assert_eq!(old, pos(&[(10, 100)], Some(3)));
        let done = FilePosition::parse(&json!({"offset": 100, "line": 9}), &mut len).unwrap();
        assert_eq!(done, pos(&[], Some(9)));
        let p = pos(&[(5, 9), (20, 30)], None);
        assert_eq!(FilePosition::parse(&p.to_json(), &mut len).unwrap(), p);
        let p = pos(&[(5, 9)], Some(2));
        assert_eq!(FilePosition::parse(&p.to_json(), &mut len).unwrap(), p);
        for (bad, why) in [
            (
                json!({"ranges": [[5, 9], [8, 10]]}),
                "ascending and disjoint",
            ),
            (json!({"ranges": [[9, 5]]}), "ascending and disjoint"),
            (json!({"ranges": [[1, 2, 3]]}), "not [start, end]"),
            (json!({"ranges": [[1, -2]]}), "not two byte offsets"),
            (json!({"ranges": [[1, 200]]}), "file now has 100 bytes"),
            (json!({"offset": 101, "line": 0}), "file now has 100 bytes"),
            (json!({"offset": 1}), "`line` is missing"),
            (json!(7), "neither"),
        ] {
            let e = FilePosition::parse(&bad, &mut len).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn rescaling_cuts_the_union_into_equal_shares() {
        let old = [pos(&[(10, 20)], Some(4)), pos(&[(20, 30), (50, 60)], None)];
        let two = rescale(&old, 2).unwrap();
        assert_eq!(
            two,
            [pos(&[(10, 25)], Some(4)), pos(&[(25, 30), (50, 60)], None)]
        );
        let one = rescale(&old, 1).unwrap();
        assert_eq!(one, [pos(&[(10, 30), (50, 60)], Some(4))]);
        let four = rescale(&old, 4).unwrap();
        let bytes: Vec<u64> = four
            .iter()
            .map(|p| p.ranges.iter().map(|r| r.1 - r.0).sum())
            .collect();
        assert_eq!(bytes, [7, 8, 7, 8]);
        // Nothing left: every split gets nothing.
        assert_eq!(
            rescale(&[pos(&[], Some(3))], 3).unwrap(),
            vec![pos(&[], None); 3]
        );
        let e = rescale(&[pos(&[(0, 10)], None), pos(&[(5, 15)], None)], 2).unwrap_err();
        assert!(e.contains("overlap at bytes 5..10"), "{e}");
    }
}

/// Every line is read exactly once, whatever the split count, the cuts, the
/// checkpoints and the rescaling: end to end through [`crate::FileSource`].
#[cfg(test)]
mod exactly_once {
    use std::path::Path;

    use serde_json::{Value, json};
    use weir_core::BatchBuilder;
    use weir_core::job::{FileFormat, GeneratorSpec, SourceKind, SourceSpec};

    use crate::{FileSource, Source, SourceStatus, open_source, rescale_positions};

    /// The file's lines as the source reads them in `lines` format.
    fn lines_of(text: &[u8]) -> Vec<String> {
        let text = String::from_utf8(text.to_vec()).unwrap();
        let mut pieces: Vec<&str> = text.split('\n').collect();
        if pieces.last() == Some(&"") {
            pieces.pop(); // after a last newline, or an empty file
        }
        pieces
            .iter()
            .map(|p| p.trim_end_matches('\r').to_string())
            .collect()
    }

    /// Every text of up to `max_len` bytes over `alphabet`.
    fn texts(alphabet: &[u8], max_len: usize) -> Vec<Vec<u8>> {
        let mut all = vec![Vec::new()];
        let mut level = vec![Vec::new()];
        for _ in 0..max_len {
            level = level
                .iter()
                .flat_map(|t: &Vec<u8>| {
                    alphabet.iter().map(move |&c| {
                        let mut t = t.clone();
                        t.push(c);
                        t
                    })
                })
                .collect();
            all.extend(level.iter().cloned());
        }
        all
    }

    fn spec(path: &Path, format: FileFormat, parallelism: u32) -> SourceSpec {
        SourceSpec {
            name: "in".into(),
            parallelism,
            kind: SourceKind::File {
                path: path.to_path_buf(),
                format,
                timestamp_field: None,
                key_field: None,
                max_line_bytes: 1 << 20,
            },
            watermark_delay_ms: 0,
            idle_timeout_ms: None,
            records_per_second: None,
            on_parse_error: Default::default(),
            line: 1,
            path_line: 1,
        }
    }

    fn open(path: &Path, split: u32, splits: u32, tiny: bool) -> FileSource {
        let mut source =
            FileSource::open_split(path, FileFormat::Lines, None, None, 1 << 20, split, splits)
                .unwrap();
        if tiny {
            source.set_budgets(1, 1);
        }
        source
    }

    fn values(batch: &mut BatchBuilder) -> Vec<String> {
        batch
            .take()
            .iter()
            .map(|r| String::from_utf8_lossy(r.value).into_owned())
            .collect()
    }

    /// Up to `batches` calls of one record each; whether the source finished.
    fn read(source: &mut dyn Source, batches: usize, out: &mut Vec<String>) -> bool {
        let mut b = BatchBuilder::default();
        for _ in 0..batches {
            let status = source.next_batch(&mut b, 1).unwrap();
            out.extend(values(&mut b));
            if status == SourceStatus::Finished {
                return true;
            }
        }
        false
    }

    fn drain(source: &mut dyn Source, out: &mut Vec<String>) {
        while !read(source, 1000, out) {}
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn splits_read_every_line_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        let mut checked = 0;
        for text in texts(b"ab\r\n", 6) {
            std::fs::write(&path, &text).unwrap();
            let expected = lines_of(&text);
            for p in 1..=5 {
                for tiny in [false, true] {
                    let mut got = Vec::new();
                    for i in 0..p {
                        drain(&mut open(&path, i, p, tiny), &mut got);
                    }
                    assert_eq!(got, expected, "{text:?} in {p} splits, tiny budgets {tiny}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 5461 * 10);
    }

    #[test]
    fn any_cuts_read_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        for text in texts(b"a\r\n", 6) {
            std::fs::write(&path, &text).unwrap();
            let expected = sorted(lines_of(&text));
            let len = text.len() as u64;
            // Two splits: [0, c1) + [c2, len) and [c1, c2), at every c1 <= c2.
            for c1 in 0..=len {
                for c2 in c1..=len {
                    let mut got = Vec::new();
                    for position in [
                        json!({"ranges": [[0, c1], [c2, len]], "line": 0}),
                        json!({"ranges": [[c1, c2]], "line": null}),
                    ] {
                        let mut source = open(&path, 0, 1, c1 % 2 == 0);
                        source.seek(&position).unwrap();
                        drain(&mut source, &mut got);
                    }
                    assert_eq!(sorted(got), expected, "{text:?} cut at {c1} and {c2}");
                }
            }
        }
    }

    /// Reads `p` splits for a few batches each, checkpoints, rescales to
    /// `q` and reads the rest.
    fn checkpoint_and_rescale(
        spec_of: &dyn Fn(u32) -> SourceSpec,
        p: u32,
        q: u32,
        batches: &dyn Fn(u32) -> usize,
        got: &mut Vec<String>,
    ) {
        let mut positions = Vec::new();
        for i in 0..p {
            let mut source = open_source(&spec_of(p), i).unwrap();
            read(source.as_mut(), batches(i), got);
            // Through text, as a checkpoint stores it.
            let text = source.position().to_string();
            positions.push(serde_json::from_str::<Value>(&text).unwrap());
        }
        let new = rescale_positions(&spec_of(q), &positions, q).unwrap();
        assert_eq!(new.len(), q as usize);
        for (j, position) in new.iter().enumerate() {
            let mut source = open_source(&spec_of(q), j as u32).unwrap();
            source.seek(position).unwrap();
            drain(source.as_mut(), got);
        }
    }

    #[test]
    fn checkpoints_rescaled_to_any_split_count_read_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        let spec_of = |p| spec(&path, FileFormat::Lines, p);
        let mut files = texts(b"a\r\n", 5);
        // Longer files with distinct lines, so a line read twice and
        // another lost cannot cancel out.
        for n in [7, 40] {
            let text: String = (0..n)
                .map(|i| format!("{}{i}{}", "x".repeat(i % 5), ["\n", "\r\n"][i % 2]))
                .collect();
            files.push(text.clone().into_bytes());
            files.push(text.trim_end().as_bytes().to_vec());
        }
        for text in files {
            std::fs::write(&path, &text).unwrap();
            let expected = sorted(lines_of(&text));
            for p in 1..=4 {
                for q in 1..=4 {
                    for k in 0..3 {
                        let mut got = Vec::new();
                        let batches = |i: u32| (i as usize + k) % 3;
                        checkpoint_and_rescale(&spec_of, p, q, &batches, &mut got);
                        assert_eq!(
                            sorted(got),
                            expected,
                            "{text:?}: {p} splits -> {q}, variant {k}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rescaling_twice_still_reads_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        let text: String = (0..50).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let spec_of = |p| spec(&path, FileFormat::Lines, p);
        let mut got = Vec::new();
        let mut positions: Vec<Value> = (0..3)
            .map(|i| {
                let mut s = open_source(&spec_of(3), i).unwrap();
                read(s.as_mut(), 4, &mut got);
                s.position()
            })
            .collect();
        for q in [5, 2] {
            let new = rescale_positions(&spec_of(q), &positions, q).unwrap();
            positions = new
                .iter()
                .enumerate()
                .map(|(j, position)| {
                    let mut s = open_source(&spec_of(q), j as u32).unwrap();
                    s.seek(position).unwrap();
                    read(s.as_mut(), 3, &mut got);
                    s.position()
                })
                .collect();
        }
        for position in rescale_positions(&spec_of(1), &positions, 1).unwrap() {
            let mut s = open_source(&spec_of(1), 0).unwrap();
            s.seek(&position).unwrap();
            drain(s.as_mut(), &mut got);
        }
        assert_eq!(sorted(got), sorted(lines_of(text.as_bytes())));
    }

    #[test]
    fn errors_name_the_line_in_any_split_and_after_rescaling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        for bad in [1, 2, 17, 30] {
            let text: String = (1..=30)
                .map(|i| {
                    if i == bad {
                        "{oops\n".to_string()
                    } else {
                        format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 7))
                    }
                })
                .collect();
            std::fs::write(&path, &text).unwrap();
            let spec_of = |p| spec(&path, FileFormat::Jsonl, p);
            let wanted = format!("in.jsonl:{bad}: invalid JSON");
            for p in 1..=5 {
                let errors: Vec<String> = (0..p)
                    .filter_map(|i| {
                        let mut s = open_source(&spec_of(p), i).unwrap();
                        let mut b = BatchBuilder::default();
                        loop {
                            match s.next_batch(&mut b, 3) {
                                Ok(SourceStatus::More) => {}
                                Ok(SourceStatus::Finished) => return None,
                                Err(e) => return Some(e.to_string()),
                            }
                        }
                    })
                    .collect();
                assert_eq!(errors.len(), 1, "{p} splits: {errors:?}");
                assert!(errors[0].contains(&wanted), "{p} splits: {}", errors[0]);
            }
            // Rescaled (line counts unknown after the cuts) from a
            // checkpoint taken before anything was read.
            let positions: Vec<Value> = (0..2)
                .map(|i| open_source(&spec_of(2), i).unwrap().position())
                .collect();
            for q in [3, 4] {
                let mut errors = Vec::new();
                for (j, position) in rescale_positions(&spec_of(q), &positions, q)
                    .unwrap()
                    .iter()
                    .enumerate()
                {
                    let mut s = open_source(&spec_of(q), j as u32).unwrap();
                    s.seek(position).unwrap();
                    let mut b = BatchBuilder::default();
                    loop {
                        match s.next_batch(&mut b, 3) {
                            Ok(SourceStatus::More) => {}
                            Ok(SourceStatus::Finished) => break,
                            Err(e) => {
                                errors.push(e.to_string());
                                break;
                            }
                        }
                    }
                }
                assert_eq!(errors.len(), 1, "{q} splits: {errors:?}");
                assert!(errors[0].contains(&wanted), "{}", errors[0]);
            }
        }
    }

    #[test]
    fn a_long_line_fails_the_split_that_skips_it_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        std::fs::write(&path, format!("ok\n{}\nb\n", "x".repeat(100))).unwrap();
        for i in 0..2 {
            let mut s =
                FileSource::open_split(&path, FileFormat::Lines, None, None, 10, i, 2).unwrap();
            let e = s
                .next_batch(&mut BatchBuilder::default(), 100)
                .unwrap_err()
                .to_string();
            assert!(
                e.ends_with("in:2: line longer than max_line_bytes (10)"),
                "split {i}: {e}"
            );
        }
    }

    #[test]
    fn every_csv_split_knows_the_header_and_none_emits_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        let text: String = std::iter::once("\n \nname,n\r\n".to_string())
            .chain((0..20).map(|i| format!("w{i},{i}\n")))
            .collect();
        std::fs::write(&path, &text).unwrap();
        let expected: Vec<String> = (0..20)
            .map(|i| format!("{{\"n\":\"{i}\",\"name\":\"w{i}\"}}"))
            .collect();
        let spec_of = |p| spec(&path, FileFormat::Csv, p);
        for p in 1..=5 {
            let mut got = Vec::new();
            for i in 0..p {
                let mut s =
                    FileSource::open_split(&path, FileFormat::Csv, None, None, 100, i, p).unwrap();
                s.set_budgets(1, 1);
                drain(&mut s, &mut got);
            }
            assert_eq!(got, expected, "{p} splits");
            for q in 1..=4 {
                let mut got = Vec::new();
                checkpoint_and_rescale(&spec_of, p, q, &|i| i as usize + 1, &mut got);
                assert_eq!(sorted(got), sorted(expected.clone()), "{p} -> {q}");
            }
        }
        // A CSV split's error names the line even when the header is elsewhere.
        std::fs::write(&path, "a,b\n1,2\n3\n4,5\n").unwrap();
        let mut s = FileSource::open_split(&path, FileFormat::Csv, None, None, 100, 1, 2).unwrap();
        let e = s
            .next_batch(&mut BatchBuilder::default(), 10)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("in.csv:3: 1 fields, but the header has 2"),
            "{e}"
        );
    }

    #[test]
    fn an_old_single_split_position_resumes_and_rescales() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, "a,b\n1,x\n2,y\n3,z\n4,w\n").unwrap();
        let old = json!({"offset": 8, "line": 2});
        let spec_of = |p| spec(&path, FileFormat::Csv, p);
        let mut s = open_source(&spec_of(1), 0).unwrap();
        s.seek(&old).unwrap();
        let mut got = Vec::new();
        drain(s.as_mut(), &mut got);
        assert_eq!(got.len(), 3);
        assert!(got[0].contains("\"2\""), "{got:?}");
        let mut got2 = Vec::new();
        for (j, position) in rescale_positions(&spec_of(2), &[old], 2)
            .unwrap()
            .iter()
            .enumerate()
        {
            let mut s = open_source(&spec_of(2), j as u32).unwrap();
            s.seek(position).unwrap();
            drain(s.as_mut(), &mut got2);
        }
        assert_eq!(got2, got);
    }

    #[test]
    fn a_split_position_keeps_its_line_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        std::fs::write(&path, "aa\nbb\ncc\ndd\n").unwrap();
        let mut s = open(&path, 1, 2, false);
        // Before reading: where the split starts, line not counted yet.
        assert_eq!(s.position(), json!({"ranges": [[6, 12]], "line": null}));
        let mut got = Vec::new();
        read(&mut s, 1, &mut got);
        assert_eq!(got, ["cc"]);
        assert_eq!(s.position(), json!({"ranges": [[9, 12]], "line": 3}));
        read(&mut s, 5, &mut got);
        assert_eq!(s.position(), json!({"ranges": [], "line": null}));
        let s = open(&path, 0, 2, false);
        assert_eq!(s.position(), json!({"ranges": [[0, 6]], "line": 0}));
    }

    #[test]
    fn generator_sources_cannot_be_rescaled() {
        let spec = SourceSpec {
            name: "gen".into(),
            parallelism: 3,
            kind: SourceKind::Generator(GeneratorSpec {
                records: 10,
                keys: 1,
                start_ms: 0,
                interval_ms: 1,
                disorder_ms: 0,
                value_bytes: 0,
            }),
            watermark_delay_ms: 0,
            idle_timeout_ms: None,
            records_per_second: None,
            on_parse_error: Default::default(),
            line: 1,
            path_line: 1,
        };
        let old = vec![json!({"seq": 0}); 2];
        let e = rescale_positions(&spec, &old, 3).unwrap_err().to_string();
        assert!(
            e.starts_with("source `gen`: a generator source cannot be rescaled"),
            "{e}"
        );
        // The same split count is no rescaling.
        assert_eq!(rescale_positions(&spec, &old, 2).unwrap(), old);
        let e = rescale_positions(&spec, &old, 0).unwrap_err().to_string();
        assert!(e.contains("0 splits"), "{e}");
    }
}
