//! Key groups: the unit in which keyed state and timers are partitioned.
//!
//! `key_group = hash(key) % max_parallelism`, and subtask `i` of `p` owns the
//! contiguous range Flink assigns it, so a range of key groups moves as a
//! unit when parallelism changes. The hash (xxh3) is stable across processes,
//! platforms and versions: it decides where state lives on disk.

use std::ops::Range;

pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

pub fn key_group_of(key: &[u8], max_parallelism: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key) % u64::from(max_parallelism)) as u32
}

/// The subtask that owns `key_group` at `parallelism`.
pub fn subtask_for_key_group(key_group: u32, max_parallelism: u32, parallelism: u32) -> u32 {
    (u64::from(key_group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// The key groups one subtask owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroupRange {
    pub start: u32,
    pub end: u32,
}

impl KeyGroupRange {
    pub fn for_subtask(subtask: u32, parallelism: u32, max_parallelism: u32) -> KeyGroupRange {
        let bound = |i: u32| {
            (u64::from(i) * u64::from(max_parallelism)).div_ceil(u64::from(parallelism)) as u32
        };
        KeyGroupRange {
            start: bound(subtask),
            end: bound(subtask + 1),
        }
    }

    pub fn contains(&self, key_group: u32) -> bool {
        (self.start..self.end).contains(&key_group)
    }

    /// Whether the range holds every key group there is: its subtask owns
    /// every key, which then need not be hashed to check.
    pub fn covers_all(&self, max_parallelism: u32) -> bool {
        self.start == 0 && self.end >= max_parallelism
    }

    pub fn as_range(&self) -> Range<u32> {
        self.start..self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lone_subtask_covers_all_key_groups() {
        assert!(KeyGroupRange::for_subtask(0, 1, 128).covers_all(128));
        for subtask in 0..3 {
            assert!(!KeyGroupRange::for_subtask(subtask, 3, 128).covers_all(128));
        }
    }

    #[test]
    fn ranges_partition_all_key_groups_consistently_with_routing() {
        for parallelism in 1..=17 {
            let mut next = 0;
            for subtask in 0..parallelism {
                let range = KeyGroupRange::for_subtask(subtask, parallelism, 128);
                assert_eq!(range.start, next);
                for key_group in range.as_range() {
                    assert_eq!(subtask_for_key_group(key_group, 128, parallelism), subtask);
                }
                next = range.end;
            }
            assert_eq!(next, 128);
        }
    }

    #[test]
    fn keys_spread_over_all_key_groups() {
        let mut per_group = [0u32; 128];
        for i in 0..12_800 {
            per_group[key_group_of(format!("key-{i}").as_bytes(), 128) as usize] += 1;
        }
        let (min, max) = (
            per_group.iter().min().unwrap(),
            per_group.iter().max().unwrap(),
        );
        assert!(
            *min >= 50 && *max <= 150,
            "uneven spread: min {min}, max {max} (mean 100)"
        );
    }
}
