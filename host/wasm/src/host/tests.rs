//! The per-subtask limits on what the host keeps for a guest, called the
//! way the guest's imports call them.

use weir_core::KeyGroupRange;
use weir_core::job::GuestLimits;
use weir_state::{KeyedStateStore, MemoryBackend, StateDescriptor, StateKind};

use super::{GuestState, Keyed};
use crate::bindings::TimeDomain;
use crate::bindings::weir::operator::keyed_state::Host as _;
use crate::bindings::weir::operator::timers::Host as _;

const MAX_PARALLELISM: u32 = 128;

/// A keyed subtask owning every key group, with a value, a list and a map
/// state (indices 0, 1, 2).
fn guest(limits: GuestLimits) -> GuestState {
    let key_groups = KeyGroupRange::for_subtask(0, 1, MAX_PARALLELISM);
    let mut state =
        KeyedStateStore::new(Box::new(MemoryBackend::new()), MAX_PARALLELISM, key_groups);
    let declare = |name: &str, kind| StateDescriptor {
        name: name.into(),
        kind,
        ttl_ms: None,
    };
    state
        .declare(vec![
            declare("v", StateKind::Value),
            declare("l", StateKind::List),
            declare("m", StateKind::Map),
        ])
        .unwrap();
    let keyed = Keyed {
        state,
        key_groups,
        max_parallelism: MAX_PARALLELISM,
    };
    GuestState::new("villain".into(), Some(keyed), limits, 1)
}

fn refused<T: std::fmt::Debug>(result: wasmtime::Result<T>, guest: &GuestState) -> String {
    let err = result.unwrap_err().to_string();
    assert!(err.starts_with("operator `villain`: "), "{err}");
    let kept = guest
        .limit_reached
        .clone()
        .expect("the limit is kept for the report");
    assert!(err.ends_with(&kept), "{err} / {kept}");
    kept
}

#[test]
fn keys_over_key_max_bytes_are_refused_everywhere() {
    let limits = GuestLimits {
        key_max_bytes: 16,
        ..GuestLimits::default()
    };
    let long = vec![b'k'; 17];
    let mut g = guest(limits);
    assert!(g.value_set(0, vec![b'k'; 16], b"ok".to_vec()).is_ok());
    let err = refused(g.value_set(0, long.clone(), b"x".to_vec()), &g);
    assert_eq!(
        err,
        "a state key of 17 bytes is over the key limit of 16 bytes (key_max_bytes); \
         raise `key_max_bytes` in the job file"
    );
    let mut g = guest(limits);
    let err = refused(g.map_put(2, b"k".to_vec(), long.clone(), b"x".to_vec()), &g);
    assert!(err.starts_with("a map key of 17 bytes"), "{err}");
    let mut g = guest(limits);
    let err = refused(g.register_timer(TimeDomain::EventTime, long, 5), &g);
    assert!(err.starts_with("a timer key of 17 bytes"), "{err}");
    assert_eq!(g.event_timers.len(), 0);
}

#[test]
fn values_over_state_value_max_bytes_are_refused() {
    let limits = GuestLimits {
        state_value_max_bytes: 1 << 20,
        ..GuestLimits::default()
    };
    let mut g = guest(limits);
    assert!(g.list_append(1, b"k".to_vec(), vec![0; 1 << 20]).is_ok());
    let err = refused(g.list_append(1, b"k".to_vec(), vec![0; (1 << 20) + 1]), &g);
    assert_eq!(
        err,
        "a state value of 1048577 bytes is over the limit of 1 MiB (state_value_max_mb); \
         raise `state_value_max_mb` in the job file"
    );
}

#[test]
fn reads_over_state_read_max_bytes_fail_the_call() {
    let limits = GuestLimits {
        state_read_max_bytes: 1 << 20,
        ..GuestLimits::default()
    };
    let mut g = guest(limits);
    for _ in 0..3 {
        g.list_append(1, b"k".to_vec(), vec![0; 400 << 10]).unwrap();
    }
    let err = refused(g.list_get(1, b"k".to_vec()), &g);
    assert!(
        err == "reading a list in one call would return more than the limit of 1 MiB \
                (state_read_max_mb); raise `state_read_max_mb` in the job file",
        "{err}"
    );
    let mut g2 = guest(limits);
    for i in 0..3u8 {
        g2.map_put(2, b"k".to_vec(), vec![i], vec![0; 400 << 10])
            .unwrap();
    }
    let err = refused(g2.map_entries(2, b"k".to_vec()), &g2);
    assert!(
        err.starts_with("reading a map's entries in one call would return more than"),
        "{err}"
    );
    // Under the limit, reads work.
    g2.map_remove(2, b"k".to_vec(), vec![0]).unwrap();
    assert_eq!(
        g2.map_entries(2, b"k".to_vec()).unwrap().len(),
        4 + 2 * (8 + 1 + (400 << 10))
    );
}

#[test]
fn pending_timers_are_capped_in_count_but_re_registering_is_free() {
    let limits = GuestLimits {
        timers_max: 3,
        ..GuestLimits::default()
    };
    let mut g = guest(limits);
    g.register_timer(TimeDomain::EventTime, b"a".to_vec(), 1)
        .unwrap();
    g.register_timer(TimeDomain::EventTime, b"b".to_vec(), 1)
        .unwrap();
    g.register_timer(TimeDomain::ProcessingTime, b"a".to_vec(), 1)
        .unwrap();
    // At the limit: a pending timer may be registered again (windows do
    // it for every record), a new one may not, in either domain.
    g.register_timer(TimeDomain::EventTime, b"a".to_vec(), 1)
        .unwrap();
    g.register_timer(TimeDomain::ProcessingTime, b"a".to_vec(), 1)
        .unwrap();
    let err = refused(
        g.register_timer(TimeDomain::EventTime, b"c".to_vec(), 1),
        &g,
    );
    assert_eq!(
        err,
        "3 pending timers (timers_max) reached; raise `timers_max` in the job file"
    );
    // Fired or deleted timers make room.
    g.limit_reached = None;
    g.delete_timer(TimeDomain::EventTime, b"b".to_vec(), 1)
        .unwrap();
    g.register_timer(TimeDomain::EventTime, b"c".to_vec(), 1)
        .unwrap();
}

/// The queues count a key registered again as often as it was, until its
/// timestamp compacts; at a limit they compact first, so repeats never
/// take the room of a real timer.
#[test]
fn repeated_registrations_do_not_use_up_the_timer_limit() {
    let limits = GuestLimits {
        timers_max: 3,
        ..GuestLimits::default()
    };
    let mut g = guest(limits);
    for _ in 0..1000 {
        for key in [b"a", b"b"] {
            g.register_timer(TimeDomain::EventTime, key.to_vec(), 1)
                .unwrap();
        }
    }
    g.register_timer(TimeDomain::EventTime, b"c".to_vec(), 1)
        .unwrap();
    assert_eq!(g.event_timers.len(), 3);
    let err = refused(
        g.register_timer(TimeDomain::EventTime, b"d".to_vec(), 1),
        &g,
    );
    assert!(err.contains("timers_max"), "{err}");
}

#[test]
fn pending_timers_are_capped_in_memory() {
    let limits = GuestLimits {
        timers_memory_max_bytes: 1 << 20,
        ..GuestLimits::default()
    };
    let mut g = guest(limits);
    let mut registered = 0;
    let err = loop {
        match g.register_timer(TimeDomain::EventTime, vec![b'k'; 1000], registered) {
            Ok(()) => registered += 1,
            Err(e) => break e,
        }
        assert!(registered < 10_000, "never refused");
    };
    assert!(g.event_timers.memory_bytes() <= 1 << 20);
    assert!(registered > 700, "{registered}");
    assert!(
        err.to_string()
            .ends_with("pending timers reached the timer memory limit of 1 MiB (timers_memory_max_mb); raise `timers_memory_max_mb` in the job file"),
        "{err}"
    );
}

#[test]
fn keyed_state_held_in_memory_is_capped() {
    let limits = GuestLimits {
        state_memory_max_bytes: 4 << 20,
        ..GuestLimits::default()
    };
    let mut g = guest(limits);
    let mut appended = 0;
    let err = loop {
        match g.list_append(1, b"k".to_vec(), vec![0; 256 << 10]) {
            Ok(()) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 100, "never refused");
    };
    assert!(appended >= 8, "{appended}");
    let err = err.to_string();
    assert!(
        err.starts_with("operator `villain`: keyed state would hold "),
        "{err}"
    );
    assert!(
        err.ends_with(
            " with this write, over the limit of 4 MiB (state_memory_max_mb); \
             raise `state_memory_max_mb` in the job file"
        ),
        "{err}"
    );
    assert!(g.limit_reached.is_some());
    // Every kind of write is held to it; clearing makes room.
    assert!(g.value_set(0, b"v".to_vec(), vec![0; 3 << 20]).is_err());
    assert!(
        g.map_put(2, b"m".to_vec(), b"k".to_vec(), vec![0; 3 << 20])
            .is_err()
    );
    g.clear(1, b"k".to_vec()).unwrap();
    g.value_set(0, b"v".to_vec(), vec![0; 3 << 20]).unwrap();
}

/// A value writes list (the WIT's format) from `(key, Some(value))` sets
/// and `(key, None)` clears.
fn value_writes(writes: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
    let mut out = (writes.len() as u32).to_le_bytes().to_vec();
    for (key, value) in writes {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
    out
}

#[test]
fn value_write_many_sets_and_clears_in_order() {
    let mut g = guest(GuestLimits::default());
    g.value_set(0, b"c".to_vec(), b"old".to_vec()).unwrap();
    let writes = value_writes(&[
        (b"a", Some(b"1")),
        (b"b", Some(b"2")),
        (b"a", Some(b"3")),
        (b"b", None),
        (b"c", None),
        (b"", Some(b"")),
    ]);
    g.value_write_many(0, writes).unwrap();
    assert_eq!(g.value_get(0, b"a".to_vec()).unwrap(), Some(b"3".to_vec()));
    assert_eq!(g.value_get(0, b"b".to_vec()).unwrap(), None);
    assert_eq!(g.value_get(0, b"c".to_vec()).unwrap(), None);
    assert_eq!(g.value_get(0, b"".to_vec()).unwrap(), Some(Vec::new()));
    g.value_write_many(0, value_writes(&[])).unwrap();
}

#[test]
fn a_malformed_value_writes_list_is_refused_with_what_is_wrong() {
    let good = value_writes(&[(b"key", Some(b"value")), (b"other", None)]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "cut short in a length"),
        (good[..good.len() - 1].to_vec(), "cut short in a length"),
        (good[..10].to_vec(), "longer than what follows"),
        ([&good[..], b"x"].concat(), "bytes after the last entry"),
        (
            [&3u32.to_le_bytes()[..], &good[4..]].concat(),
            "cut short in a length",
        ),
        (
            [&1u32.to_le_bytes()[..], &u32::MAX.to_le_bytes()[..]].concat(),
            "longer than what follows",
        ),
    ];
    for (bytes, what) in cases {
        let mut g = guest(GuestLimits::default());
        let err = g.value_write_many(0, bytes).unwrap_err().to_string();
        assert!(
            err.starts_with("operator `villain`: keyed state: "),
            "{err}"
        );
        assert!(err.contains(what), "{err} / {what}");
    }
}

#[test]
fn value_write_many_keeps_the_limits_of_value_set() {
    let limits = GuestLimits {
        key_max_bytes: 4,
        state_value_max_bytes: 4,
        ..GuestLimits::default()
    };
    let mut g = guest(limits.clone());
    let long_key = value_writes(&[(b"ok", Some(b"v")), (b"toolong", Some(b"v"))]);
    let kept = refused(g.value_write_many(0, long_key), &g);
    assert!(kept.contains("key_max_bytes"), "{kept}");
    let mut g = guest(limits);
    let long_value = value_writes(&[(b"k", Some(b"12345"))]);
    let kept = refused(g.value_write_many(0, long_value), &g);
    assert!(kept.contains("state_value_max_mb"), "{kept}");
}

/// A timer batch (the WIT's `on-timers` format) from `(domain, key, time)`.
fn timer_batch(timers: &[(u8, &[u8], i64)]) -> Vec<u8> {
    let mut out = (timers.len() as u32).to_le_bytes().to_vec();
    for (domain, key, timestamp) in timers {
        out.extend_from_slice(&timestamp.to_le_bytes());
        out.push(*domain);
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
    }
    out
}

#[test]
fn register_timers_registers_each_and_keeps_the_timer_limits() {
    let limits = GuestLimits {
        timers_max: 3,
        ..GuestLimits::default()
    };
    let mut g = guest(limits);
    let batch = timer_batch(&[(0, b"a", 5), (0, b"a", 5), (1, b"b", 7), (0, b"c", 9)]);
    g.register_timers(batch).unwrap();
    assert_eq!((g.event_timers.len(), g.processing_timers.len()), (2, 1));
    assert!(g.event_timers.contains(5, b"a") && g.processing_timers.contains(7, b"b"));
    // Already pending: free; a new one over timers_max is refused.
    g.register_timers(timer_batch(&[(0, b"c", 9)])).unwrap();
    let err = refused(g.register_timers(timer_batch(&[(0, b"d", 1)])), &g);
    assert!(err.contains("timers_max"), "{err}");
}

#[test]
fn a_malformed_timer_batch_is_refused_with_what_is_wrong() {
    let good = timer_batch(&[(0, b"key", 1), (1, b"other", 2)]);
    let mut bad_domain = timer_batch(&[(0, b"key", 1)]);
    bad_domain[12] = 2;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "cut short"),
        (good[..good.len() - 1].to_vec(), "longer than what follows"),
        (good[..10].to_vec(), "cut short"),
        ([&good[..], b"x"].concat(), "bytes after the last entry"),
        (bad_domain, "a time domain other than 0 or 1"),
    ];
    for (bytes, what) in cases {
        let mut g = guest(GuestLimits::default());
        let err = g.register_timers(bytes).unwrap_err().to_string();
        assert!(
            err.starts_with("operator `villain`: timers: register-timers got a malformed list"),
            "{err}"
        );
        assert!(err.contains(what), "{err} / {what}");
    }
}
