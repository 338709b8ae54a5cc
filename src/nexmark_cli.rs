//! `weir nexmark`: writes the Nexmark event stream as a JSON-lines file
//! (the layout is documented in `weir_connectors::nexmark`), the same
//! events a `kind = "nexmark"` source with the same settings emits.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use weir_core::job::{NEXMARK_START_MS_DEFAULT, NexmarkSpec};

#[derive(clap::Args)]
pub struct NexmarkArgs {
    /// How many events (persons, auctions and bids 1:3:46); 10,000,000
    /// events hold 9.2 M bids.
    #[arg(long, value_name = "N")]
    events: u64,
    /// The file to write (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Seed of the generator's random choices.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Event time of the first event, ms since the Unix epoch.
    #[arg(long, value_name = "MS", default_value_t = NEXMARK_START_MS_DEFAULT)]
    start_ms: i64,
    /// Events per second of event time.
    #[arg(long, value_name = "R", default_value_t = 10_000)]
    events_per_second: u64,
    /// Each event's time is up to this much earlier than its place in the
    /// stream says: the stream is out of order by at most this.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    disorder_ms: i64,
}

pub fn run(args: &NexmarkArgs) -> anyhow::Result<()> {
    if args.events_per_second == 0 {
        anyhow::bail!("--events-per-second must be at least 1");
    }
    if !(0..=weir_core::job::DURATION_MS_MAX as i64).contains(&args.disorder_ms) {
        anyhow::bail!(
            "--disorder-ms {} is out of range: 0 to {}",
            args.disorder_ms,
            weir_core::job::DURATION_MS_MAX
        );
    }
    let bound = weir_core::job::EVENT_TIME_MS_MAX;
    if !(-bound..=bound).contains(&args.start_ms) {
        anyhow::bail!(
            "--start-ms {} is out of range: -{bound} to {bound}",
            args.start_ms
        );
    }
    let spec = NexmarkSpec {
        events: args.events,
        seed: args.seed,
        start_ms: args.start_ms,
        events_per_second: args.events_per_second,
        disorder_ms: args.disorder_ms,
    };
    let path = &args.out;
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    weir_connectors::nexmark::write_jsonl(&spec, &mut out)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{}: {} Nexmark events ({} bytes)",
        path.display(),
        args.events,
        bytes
    );
    Ok(())
}
