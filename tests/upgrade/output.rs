//! Reading and checking the `versioned` operator's committed output:
//! `{key},{count},{tag}` lines in `out/part-<checkpoint id>` files.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::Spec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub key: String,
    pub count: u64,
    pub tag: String,
}

/// One committed part: the output staged before checkpoint `id`'s barrier
/// (the final part's id is one past the last checkpoint).
pub struct Part {
    pub id: u64,
    pub lines: Vec<Line>,
}

fn parse(line: &str) -> Result<Line, String> {
    let mut fields = line.rsplitn(3, ',');
    let (Some(tag), Some(count), Some(key)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("bad output line {line:?}"));
    };
    let count = count
        .parse()
        .map_err(|e| format!("bad count in output line {line:?}: {e}"))?;
    Ok(Line {
        key: key.to_string(),
        count,
        tag: tag.to_string(),
    })
}

/// The committed parts under `dir`, oldest first.
pub fn read_parts(dir: &Path) -> Result<Vec<Part>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("part-") else {
            continue;
        };
        let id: u64 = id
            .parse()
            .map_err(|e| format!("unexpected part file {name}: {e}"))?;
        let text = std::fs::read_to_string(entry.path())
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        let lines = text.lines().map(parse).collect::<Result<_, _>>()?;
        parts.push(Part { id, lines });
    }
    parts.sort_by_key(|p| p.id);
    Ok(parts)
}

/// Each key's lines, in output order (one subtask emits all of a key's
/// lines, in processing order, and the sink runs at parallelism 1).
pub fn per_key<'p>(parts: impl IntoIterator<Item = &'p Part>) -> BTreeMap<String, Vec<Line>> {
    let mut keys: BTreeMap<String, Vec<Line>> = BTreeMap::new();
    for line in parts.into_iter().flat_map(|p| &p.lines) {
        keys.entry(line.key.clone()).or_default().push(line.clone());
    }
    keys
}

/// How many records of the generator have key `key-{i}`.
fn records_of_key(spec: &Spec, i: u64) -> u64 {
    spec.records / spec.keys + u64::from(i < spec.records % spec.keys)
}

/// Every record counted exactly once and state never lost: each key's
/// counts, in output order, are exactly 1..=n for its n records, and there
/// are no other keys.
pub fn check_continuous(keys: &BTreeMap<String, Vec<Line>>, spec: &Spec) -> Result<(), String> {
    let expected: Vec<String> = (0..spec.keys).map(|i| format!("key-{i}")).collect();
    let found: Vec<&String> = keys.keys().collect();
    let mut want: Vec<&String> = expected.iter().collect();
    want.sort();
    if found != want {
        return Err(format!("keys in the output: {found:?}, expected {want:?}"));
    }
    let total: usize = keys.values().map(Vec::len).sum();
    if total as u64 != spec.records {
        return Err(format!(
            "{total} output lines for {} input records",
            spec.records
        ));
    }
    for (i, key) in expected.iter().enumerate() {
        let counts: Vec<u64> = keys[key].iter().map(|l| l.count).collect();
        let n = records_of_key(spec, i as u64);
        if counts != (1..=n).collect::<Vec<_>>() {
            let first_bad = counts
                .iter()
                .zip(1..)
                .position(|(c, want)| *c != want)
                .unwrap_or(counts.len().min(n as usize));
            return Err(format!(
                "{key}: counts are not 1..={n} in output order (got {} lines; first difference at \
                 line {first_bad}: {:?})",
                counts.len(),
                keys[key].get(first_bad.saturating_sub(2)..(first_bad + 3).min(counts.len()))
            ));
        }
    }
    Ok(())
}

/// Each key's tags, in output order, move only forward through `phases`
/// (a tag's phase is the first that lists it): a key never goes back to an
/// older version. Returns how many lines each phase has.
pub fn check_phases(
    keys: &BTreeMap<String, Vec<Line>>,
    phases: &[&[&str]],
) -> Result<Vec<usize>, String> {
    let mut per_phase = vec![0; phases.len()];
    for (key, lines) in keys {
        let mut at = 0;
        for line in lines {
            let Some(phase) = phases.iter().position(|p| p.contains(&line.tag.as_str())) else {
                return Err(format!(
                    "{key}: unexpected tag in {line:?}; expected {phases:?}"
                ));
            };
            if phase < at {
                return Err(format!(
                    "{key}: {line:?} comes after a line tagged {:?}: a key went back to an older version",
                    phases[at]
                ));
            }
            at = phase;
            per_phase[phase] += 1;
        }
    }
    Ok(per_phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        records: 5,
        keys: 2,
        rate: 1,
    };

    fn keys(lines: &[&str]) -> BTreeMap<String, Vec<Line>> {
        let part = Part {
            id: 1,
            lines: lines.iter().map(|l| parse(l).unwrap()).collect(),
        };
        per_key([&part])
    }

    const GOOD: &[&str] = &[
        "key-0,1,v1",
        "key-1,1,v1",
        "key-0,2,v2m",
        "key-1,2,v2m",
        "key-0,3,v2",
    ];

    #[test]
    fn continuous_counts_and_forward_tags_pass() {
        let k = keys(GOOD);
        check_continuous(&k, &SPEC).unwrap();
        assert_eq!(
            check_phases(&k, &[&["v1"], &["v2", "v2m"]]).unwrap(),
            [2, 3]
        );
    }

    #[test]
    fn a_lost_doubled_reset_or_reordered_count_fails() {
        let lost = &GOOD[..4];
        let doubled = [GOOD, &["key-1,2,v2m"]].concat();
        let reset = [&GOOD[..4], &["key-0,1,v2m"]].concat();
        let reordered = [
            "key-0,2,v1",
            "key-1,1,v1",
            "key-0,1,v2m",
            "key-1,2,v2m",
            "key-0,3,v2",
        ];
        for bad in [lost, &doubled[..], &reset[..], &reordered[..]] {
            assert!(check_continuous(&keys(bad), &SPEC).is_err(), "{bad:?}");
        }
        let other_key = [
            "key-0,1,v1",
            "key-1,1,v1",
            "key-0,2,v1",
            "key-1,2,v1",
            "key-2,1,v1",
        ];
        assert!(check_continuous(&keys(&other_key), &SPEC).is_err());
    }

    #[test]
    fn a_key_going_back_to_an_old_version_or_an_unknown_tag_fails() {
        let back = ["key-0,1,v2m", "key-0,2,v1"];
        assert!(check_phases(&keys(&back), &[&["v1"], &["v2m"]]).is_err());
        assert!(check_phases(&keys(GOOD), &[&["v1"], &["v2m"]]).is_err());
        assert!(parse("no commas").is_err());
        assert!(parse("key-0,x,v1").is_err());
    }
}
