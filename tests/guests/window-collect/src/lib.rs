//! Test operator for checkpoints: collects the generator's sequence numbers
//! per key and event-time tumbling window (`window_ms`) in map state, and
//! emits `<key> <window end>: <seq>,<seq>,...` when the window closes, so a
//! test can check that every input record shows up exactly once.
//!
//! With `fail_on_seq = N` it panics on record N in the first attempt of a
//! run (config `weir.attempt` = 0), to exercise restarts. Built with the
//! `v2` feature it prefixes its output with `v2 `: the "upgraded" version.

use weir_guest::{Context, MapState, OpenContext, Operator, Record, Result, Timer};

pub struct WindowCollect {
    window_ms: i64,
    fail_on_seq: Option<u64>,
    /// Window end -> comma-separated sequence numbers, for the current key.
    windows: MapState<i64, String>,
}

fn seq_of(value: &str) -> Option<u64> {
    let rest = &value[value.find("\"seq\":")? + 6..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Operator for WindowCollect {
    type Key = String;
    type Value = String;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        let window_ms = ctx.config_or("window_ms", 1000i64)?;
        let first_attempt = ctx.config("weir.attempt").is_none_or(|a| a == "0");
        let fail_on_seq = match ctx.config_or("fail_on_seq", -1i64)? {
            n if n >= 0 && first_attempt => Some(n as u64),
            _ => None,
        };
        Ok(WindowCollect {
            window_ms,
            fail_on_seq,
            windows: ctx.map_state("windows")?,
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<String, String>) -> Result<()> {
        let seq = seq_of(&record.value)
            .ok_or_else(|| weir_guest::Error::msg(format!("no seq in {:?}", record.value)))?;
        if self.fail_on_seq == Some(seq) {
            panic!("injected failure at seq {seq}");
        }
        let ts = record.timestamp.unwrap_or(0);
        let end = ts - ts.rem_euclid(self.window_ms) + self.window_ms;
        let mut seqs = self.windows.get(ctx, &end)?.unwrap_or_default();
        if !seqs.is_empty() {
            seqs.push(',');
        }
        seqs.push_str(&seq.to_string());
        self.windows.put(ctx, &end, &seqs)?;
        ctx.register_event_timer(end - 1);
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<String>) -> Result<()> {
        let end = timer.timestamp + 1;
        if let Some(seqs) = self.windows.get(ctx, &end)? {
            self.windows.remove(ctx, &end);
            let prefix = if cfg!(feature = "v2") { "v2 " } else { "" };
            let line = format!("{prefix}{} {end}: {seqs}", timer.key);
            ctx.emit(&timer.key, &line)?;
        }
        Ok(())
    }
}

weir_guest::export_operator!(WindowCollect);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::testing::Harness;

    #[test]
    fn collects_sequence_numbers_per_window() {
        let mut h = Harness::<WindowCollect>::with_config(&[("window_ms", "100")]).unwrap();
        let k = "key-1".to_string();
        h.process(&k, &"{\"seq\":3,\"x\":1}".to_string(), Some(10))
            .unwrap();
        h.process(&k, &"{\"seq\":7}".to_string(), Some(99)).unwrap();
        h.process(&k, &"{\"seq\":9}".to_string(), Some(100))
            .unwrap();
        let out = h.advance_watermark(99).unwrap();
        assert_eq!(out.len(), 1);
        let line = String::from_utf8_lossy(&out[0].value).into_owned();
        assert!(line.ends_with("key-1 100: 3,7"), "{line}");
    }
}
