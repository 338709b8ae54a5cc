//! A deliberately misbehaving operator for the host's sandbox tests. The
//! job file's `config.behavior` picks the misdeed; `config.on` picks the
//! hook (`open`, `process` or `timer`; default `process`). With `on =
//! "processing-timer"` it behaves: each record registers a processing-time
//! timer for now, and each firing emits `fired`.
//!
//! The misdeeds against what the host keeps on a guest's behalf:
//! `timer-flood` (distinct event-time timers, 100,000 per record, without
//! end), `huge-key` (a 1 MiB key for a timer, or for state with `target =
//! "state"`), `huge-error` (a 50 MB error string of control characters),
//! `log-flood` (64 KiB log lines in a loop) and `state-flood` (16 MiB list
//! elements appended to keyed state without end; needs `keyed`).

use weir_guest::{
    Context, ListState, LogLevel, OpenContext, Operator, Record, Result, Timer, ValueState,
};

pub struct Hostile {
    behavior: String,
    on: String,
    target: String,
    hoard: Vec<Vec<u8>>,
    state: ValueState<u64>,
    /// Declared when keyed, for `state-flood`.
    flood: Option<ListState<Vec<u8>>>,
    /// The next timestamp `timer-flood` registers.
    next_timer: i64,
}

impl Hostile {
    fn misbehave(&mut self, ctx: Option<&mut Context>) -> Result<()> {
        match self.behavior.as_str() {
            "infinite-loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory-bomb" => loop {
                self.hoard.push(vec![1u8; 16 << 20]);
            },
            "panic" => panic!("the hostile operator panicked on purpose"),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(())
            }
            "error" => Err(weir_guest::Error::msg(
                "the hostile operator returned an error on purpose",
            )),
            "huge-output" => {
                // 24 MiB from the first record of the batch: under the memory
                // cap, over a 16 MiB output cap.
                let ctx =
                    ctx.ok_or_else(|| weir_guest::Error::msg("huge-output needs a record"))?;
                if self.hoard.is_empty() {
                    self.hoard.push(Vec::new());
                    let chunk = vec![b'x'; 1 << 20];
                    for _ in 0..24 {
                        ctx.emit(&(), &chunk)?;
                    }
                }
                Ok(())
            }
            "bad-state" => {
                // Index 7 was never declared: the host must refuse it.
                let ctx = ctx.ok_or_else(|| weir_guest::Error::msg("bad-state needs a record"))?;
                let _ = self.state.get(ctx)?;
                let rogue = unsafe_rogue_state();
                rogue.set(ctx, &1)
            }
            "timer-flood" => {
                // Far in the future, so none fires before the host gives up.
                let ctx =
                    ctx.ok_or_else(|| weir_guest::Error::msg("timer-flood needs a record"))?;
                for _ in 0..100_000 {
                    self.next_timer += 1;
                    ctx.register_event_timer((1 << 50) + self.next_timer);
                }
                Ok(())
            }
            "huge-key" => {
                // The raw imports: the SDK only uses the record's own key.
                use weir_guest::bindings::weir::operator::{keyed_state, timers, types};
                let key = vec![b'k'; 1 << 20];
                if self.target == "state" {
                    keyed_state::value_set(0, &key, b"1");
                } else {
                    for t in 0..10_000 {
                        timers::register_timer(types::TimeDomain::EventTime, &key, (1 << 50) + t);
                    }
                }
                Ok(())
            }
            "huge-error" => {
                let message: String = "\u{1}\u{1b}[2J\u{7}\n\r"
                    .chars()
                    .cycle()
                    .take(50_000_000)
                    .collect();
                Err(weir_guest::Error::msg(message))
            }
            "log-flood" => {
                let ctx = ctx.ok_or_else(|| weir_guest::Error::msg("log-flood needs a record"))?;
                let line = "\u{1b}[31mflood ".repeat(64 << 10 >> 4);
                loop {
                    ctx.log(LogLevel::Error, &line);
                }
            }
            "state-flood" => {
                let ctx =
                    ctx.ok_or_else(|| weir_guest::Error::msg("state-flood needs a record"))?;
                let flood = self
                    .flood
                    .as_ref()
                    .ok_or_else(|| weir_guest::Error::msg("state-flood needs keyed = \"yes\""))?;
                // Just under the 16 MiB value limit once encoded.
                let element = vec![b'f'; (16 << 20) - 64];
                loop {
                    flood.add(ctx, &element)?;
                }
            }
            "nothing" => Ok(()),
            other => Err(weir_guest::Error::msg(format!(
                "unknown behavior {other:?}"
            ))),
        }
    }
}

/// A handle to a state index `open` never declared.
fn unsafe_rogue_state() -> ValueState<u64> {
    weir_guest::testing::rogue_value_state(7)
}

impl Operator for Hostile {
    type Key = Vec<u8>;
    type Value = Vec<u8>;

    fn open(ctx: &mut OpenContext) -> Result<Self> {
        let behavior = ctx.config("behavior").unwrap_or("nothing").to_string();
        let on = ctx.config("on").unwrap_or("process").to_string();
        let target = ctx.config("target").unwrap_or("timer").to_string();
        let keyed = ctx.config("keyed").is_some();
        let (state, flood) = if keyed {
            (ctx.value_state("n")?, Some(ctx.list_state("flood")?))
        } else {
            (weir_guest::testing::rogue_value_state(0), None)
        };
        let mut op = Hostile {
            behavior,
            on,
            target,
            hoard: Vec::new(),
            state,
            flood,
            next_timer: 0,
        };
        if op.on == "open" {
            op.misbehave(None)?;
        }
        Ok(op)
    }

    fn process(&mut self, ctx: &mut Context, record: Record<Vec<u8>, Vec<u8>>) -> Result<()> {
        match self.on.as_str() {
            "process" => self.misbehave(Some(ctx)),
            "timer" | "refire" | "follow-up" => {
                ctx.register_event_timer(record.timestamp.unwrap_or(0));
                Ok(())
            }
            "processing-timer" => {
                let now = ctx.processing_time();
                ctx.register_processing_timer(now);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<Vec<u8>>) -> Result<()> {
        match self.on.as_str() {
            "timer" => self.misbehave(Some(ctx)),
            "processing-timer" => ctx.emit(&timer.key, "fired"),
            "refire" => {
                ctx.register_event_timer(timer.timestamp);
                Ok(())
            }
            // Not hostile: one follow-up timer a millisecond after each
            // even one (a window's cleanup after it fires), then output.
            "follow-up" if timer.timestamp % 2 == 0 => {
                ctx.register_event_timer(timer.timestamp + 1);
                Ok(())
            }
            "follow-up" => ctx.emit(&timer.key, "followed up"),
            _ => Ok(()),
        }
    }
}

weir_guest::export_operator!(Hostile);
