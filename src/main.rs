//! The `weir` command line: runs and checks stream jobs whose operators are
//! WebAssembly components. Only this crate prints for humans; the runtime
//! crates return values and errors.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir_core::job::{self, JobSpec, LatePolicy, SinkKind, StateBackendKind};
use weir_runtime::{JobReport, RunOptions};

/// weir: a stateful stream processor whose operators are sandboxed
/// WebAssembly components.
///
/// Write operators in Rust (guest-sdk/rust), build them for wasm32-wasip2,
/// describe sources, operators, edges and sinks in a job file (TOML), and run
/// it. See examples/ for complete jobs and README.md for a tutorial.
#[derive(Parser)]
#[command(name = "weir", version, propagate_version = true)]
struct Cli {
    /// Log more: -v for info, -vv for debug (or set RUST_LOG).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Where compiled components are cached between runs
    /// [default: $WEIR_CACHE_DIR, else $XDG_CACHE_HOME/weir, else ~/.cache/weir].
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Compile every component afresh instead of using the cache.
    #[arg(long, global = true)]
    no_cache: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job on this machine until its sources are exhausted.
    ///
    /// Sinks write where the job file says; a summary of records in and out of
    /// each source, operator and sink is printed to stderr at the end.
    Run {
        /// The job file (TOML).
        job: PathBuf,
        #[command(flatten)]
        overrides: OverrideArgs,
    },
    /// Check a job file and every operator component it names, without running it.
    Validate {
        /// The job file (TOML).
        job: PathBuf,
        #[command(flatten)]
        overrides: OverrideArgs,
    },
}

/// Settings that take precedence over the job file.
#[derive(clap::Args)]
struct OverrideArgs {
    /// Default parallelism of operators (replaces `[job] parallelism`).
    #[arg(short, long, value_name = "N")]
    parallelism: Option<u32>,
    /// State backend for keyed state: memory or rocksdb.
    #[arg(long, value_name = "BACKEND", value_parser = ["memory", "rocksdb"])]
    state_backend: Option<String>,
    /// Write file sinks with relative paths under DIR instead of next to the job file.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

impl OverrideArgs {
    fn to_overrides(&self) -> job::Overrides {
        job::Overrides {
            parallelism: self.parallelism,
            state_backend: self.state_backend.as_deref().map(|b| match b {
                "rocksdb" => StateBackendKind::Rocksdb,
                _ => StateBackendKind::Memory,
            }),
            output_dir: self.output_dir.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let options = RunOptions {
        cache_dir: if cli.no_cache {
            None
        } else {
            cli.cache_dir.or_else(default_cache_dir)
        },
    };
    let result = match &cli.command {
        Command::Run { job, overrides } => load(job, overrides).and_then(|spec| {
            let report = weir_runtime::run_job(&spec, &options)?;
            print_report(&spec, &report);
            Ok(())
        }),
        Command::Validate { job, overrides } => load(job, overrides).and_then(|spec| {
            let compiled = weir_runtime::validate_job(&spec, &options)?;
            eprintln!(
                "{}: job `{}` is valid: {} source(s), {} operator(s), {} sink(s)",
                job.display(),
                spec.name,
                spec.sources.len(),
                spec.operators.len(),
                spec.sinks.len()
            );
            for (name, component) in compiled {
                eprintln!(
                    "  operator {name}: component sha256 {}",
                    &component.digest[..16]
                );
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path, overrides: &OverrideArgs) -> anyhow::Result<JobSpec> {
    Ok(job::load_with(path, &overrides.to_overrides())?)
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weir"))
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        // Compile and cache-load times of the operators are shown at job
        // start even without -v: a Python or JS component compiles for seconds.
        0 => "warn,weir_wasm::engine=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn print_report(spec: &JobSpec, report: &JobReport) {
    eprintln!(
        "job `{}` finished in {:.2} s",
        report.job,
        report.elapsed.as_secs_f64()
    );
    for node in &report.nodes {
        let mut line = format!(
            "  {:<8} {:<16} p={:<3}",
            node.kind, node.name, node.parallelism
        );
        if node.kind != "source" {
            line.push_str(&format!(" in {:>9}", node.records_in));
        }
        if node.kind != "sink" {
            line.push_str(&format!(" out {:>9}", node.records_out));
        }
        if node.late_records > 0 {
            let what = match spec.operator(&node.name).map(|o| o.late_records) {
                Some(LatePolicy::Drop) => "dropped",
                Some(LatePolicy::SideOutput) => "sent to .late",
                _ => "processed",
            };
            line.push_str(&format!("  late {} ({what})", node.late_records));
        }
        if let Some(sink) = spec.sinks.iter().find(|s| s.name == node.name)
            && let SinkKind::File { path } = &sink.kind
        {
            line.push_str(&format!("  -> {}", path.display()));
        }
        eprintln!("{line}");
    }
}
