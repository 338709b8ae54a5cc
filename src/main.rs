//! The `weir` command line: runs and checks stream jobs whose operators are
//! WebAssembly components. Only this crate prints for humans; the runtime
//! crates return values and errors.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod cluster_cli;
mod jobs_table;
mod logging;
mod nexmark_cli;
mod status;

use clap::{Parser, Subcommand};
use weir_core::data_roots::DataRoots;
use weir_core::job::{self, JobSpec, LatePolicy, StateBackendKind};
use weir_runtime::master::command::{CommandBody, CommandReply};
use weir_runtime::{ControlOptions, JobReport, Outcome, RunOptions, client};

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

    /// Log lines as text, or as JSON objects (one a line) carrying the
    /// job, operator and subtask they come from.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        default_value = "text"
    )]
    log_format: logging::LogFormat,

    /// Where compiled components are cached between runs
    /// [default: $WEIR_CACHE_DIR, else $XDG_CACHE_HOME/weir, else ~/.cache/weir].
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Compile every component afresh instead of using the cache.
    #[arg(long, global = true)]
    no_cache: bool,

    /// Where running jobs register their control API address
    /// [default: $WEIR_JOBS_DIR, else ~/.local/state/weir/jobs].
    #[arg(long, global = true, value_name = "DIR")]
    jobs_dir: Option<PathBuf>,

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
        /// Continue from the newest complete checkpoint in DIR (the job's
        /// checkpoint directory), after the process was killed.
        #[arg(long, value_name = "DIR", conflicts_with = "from_savepoint")]
        resume: Option<PathBuf>,
        /// Start from a savepoint: at any parallelism, with either state
        /// backend, and with new versions of the operators' components.
        #[arg(long, value_name = "PATH")]
        from_savepoint: Option<PathBuf>,
        /// Drop savepoint state that no operator of the job declares.
        #[arg(long)]
        allow_non_restored_state: bool,
        /// Address of the control API (savepoint, stop). Loopback only,
        /// unless --api-bind-any; requests need the token the job keeps in
        /// its registry file under the jobs directory.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        api: std::net::SocketAddr,
        /// Let --api listen on a non-loopback address (reachable from the
        /// network; the token then travels in plain HTTP).
        #[arg(long)]
        api_bind_any: bool,
        /// Default directory for savepoints [default: <checkpoint dir>/savepoints].
        #[arg(long, value_name = "DIR")]
        savepoint_dir: Option<PathBuf>,
        #[command(flatten)]
        roots: RootArgs,
    },
    /// Take a savepoint of a running job, or inspect one.
    #[command(args_conflicts_with_subcommands = true)]
    Savepoint {
        #[command(subcommand)]
        inspect: Option<SavepointCommand>,
        #[command(flatten)]
        target: JobTarget,
    },
    /// Stop a running job with a savepoint; resume it with --from-savepoint.
    Stop {
        #[command(flatten)]
        target: JobTarget,
    },
    /// Swap a running operator's code for a new version at the next
    /// checkpoint, keeping its state (or return to the previous version).
    Upgrade {
        #[command(flatten)]
        target: JobTarget,
        /// The operator to upgrade.
        #[arg(long, value_name = "NAME")]
        operator: String,
        /// The new version's component.
        #[arg(long, value_name = "FILE", required_unless_present = "rollback")]
        wasm: Option<PathBuf>,
        /// Return to the version the operator ran before its last upgrade.
        #[arg(long, conflicts_with = "wasm")]
        rollback: bool,
        /// Let the new version go without state the old one declared (its
        /// stored values are deleted).
        #[arg(long)]
        allow_dropping_state: bool,
    },
    /// Change a running job's parallelism: savepoint, redeploy, restore.
    Rescale {
        #[command(flatten)]
        target: JobTarget,
        /// The new parallelism.
        #[arg(long, value_name = "N")]
        parallelism: u32,
        /// Rescale only this operator (default: every operator and file source).
        #[arg(long, value_name = "NAME")]
        operator: Option<String>,
    },
    /// Start a coordinator and workers on this machine, or make a cluster's certificates.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Run a cluster's coordinator: the REST API and the QUIC endpoint workers join.
    Coordinator(cluster_cli::CoordinatorArgs),
    /// Run a worker: joins the coordinator at ADDR and runs the tasks it is given.
    Worker(cluster_cli::WorkerArgs),
    /// Upload a job's operators to a cluster and start it.
    Submit {
        /// The job file (TOML); paths in it must be visible to every node.
        job: PathBuf,
        #[command(flatten)]
        target: cluster_cli::ClusterTarget,
        /// Start from a savepoint.
        #[arg(long, value_name = "PATH")]
        from_savepoint: Option<PathBuf>,
        /// Continue from the newest complete checkpoint of the job.
        #[arg(long, conflicts_with = "from_savepoint")]
        resume: bool,
        /// Drop savepoint state that no operator of the job declares.
        #[arg(long)]
        allow_non_restored_state: bool,
        /// Follow the job until it ends; fail if it fails.
        #[arg(long)]
        wait: bool,
    },
    /// List jobs (on this machine, or a cluster's) and their status: a
    /// table, then each operator's parallelism and versions.
    Jobs {
        #[command(flatten)]
        target: cluster_cli::ClusterTarget,
        /// Print the jobs as a JSON array instead.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job on a cluster (no savepoint).
    Cancel {
        /// The job's name.
        job: String,
        #[command(flatten)]
        target: cluster_cli::ClusterTarget,
    },
    /// Write the Nexmark benchmark's events (persons, auctions, bids) as a
    /// JSON-lines file.
    Nexmark(nexmark_cli::NexmarkArgs),
    /// Check a job file and every operator component it names, without running it.
    Validate {
        /// The job file (TOML).
        job: PathBuf,
        #[command(flatten)]
        overrides: OverrideArgs,
        #[command(flatten)]
        roots: RootArgs,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Make a cluster CA, certificates for a coordinator and N workers, and a REST token.
    Init {
        #[arg(long, value_name = "DIR", default_value = cluster_cli::DEFAULT_CLUSTER_DIR)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        workers: u32,
        /// A host name or IP address clients reach the coordinator's HTTPS
        /// API at, put in its certificate (localhost and 127.0.0.1 always are); repeatable.
        #[arg(long = "rest-name", value_name = "NAME")]
        rest_names: Vec<String>,
    },
    /// Start a coordinator and N workers on this machine (runs `init` if needed).
    Up {
        #[arg(long, default_value_t = 3)]
        workers: u32,
        /// Slots per worker.
        #[arg(long, default_value_t = 4)]
        slots: u32,
        #[arg(long, value_name = "DIR", default_value = cluster_cli::DEFAULT_CLUSTER_DIR)]
        dir: PathBuf,
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        rest: std::net::SocketAddr,
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
        quic: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum SavepointCommand {
    /// Show a savepoint's (or checkpoint's) operators, states, key counts and sizes.
    Inspect {
        /// The savepoint or checkpoint directory.
        path: PathBuf,
    },
}

/// A running job and where its savepoint goes.
#[derive(clap::Args)]
struct JobTarget {
    /// The job's name.
    job: Option<String>,
    /// Directory for the savepoint [default: the job's --savepoint-dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The job's control API (e.g. http://127.0.0.1:8081) instead of
    /// looking it up in the jobs directory. The token still comes from the
    /// job's registry file, else from --token-file or WEIR_TOKEN.
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// A job on a cluster: the coordinator's REST API.
    #[command(flatten)]
    cluster: cluster_cli::ClusterTarget,
}

/// Where the job's files may be: the directory trees it may read and write.
#[derive(clap::Args)]
struct RootArgs {
    /// Also let the job read and write under DIR (sinks, state, checkpoints,
    /// savepoints); repeatable. The current directory's tree always may,
    /// unless it is / or your home directory (then name the roots with this
    /// flag). Weir's cache and jobs directories are never reachable.
    /// [env: WEIR_DATA_ROOTS, directories separated by ':']
    #[arg(
        long = "data-root",
        value_name = "DIR",
        env = "WEIR_DATA_ROOTS",
        value_delimiter = ':',
        hide_env = true
    )]
    data_roots: Vec<PathBuf>,
    /// Let the job read under DIR (file sources, operator components,
    /// savepoints to start from); repeatable.
    /// [env: WEIR_READ_ROOTS, directories separated by ':']
    #[arg(
        long = "read-root",
        value_name = "DIR",
        env = "WEIR_READ_ROOTS",
        value_delimiter = ':',
        hide_env = true
    )]
    read_roots: Vec<PathBuf>,
}

impl RootArgs {
    /// The current directory's tree (unless it is `/` or the home
    /// directory) plus the flags' roots, minus weir's own directories: the
    /// compiled-code cache (its key authenticates cached machine code) and
    /// the job registry (control tokens).
    fn data_roots(&self, own_dirs: &[PathBuf]) -> anyhow::Result<DataRoots> {
        let cwd = std::env::current_dir()
            .map_err(|e| anyhow::anyhow!("cannot find the current directory: {e}"))?;
        let given = |roots: &[PathBuf]| -> Vec<PathBuf> {
            // An empty entry (`WEIR_DATA_ROOTS=a::b`) names nothing, not the root of the disk.
            roots
                .iter()
                .filter(|r| !r.as_os_str().is_empty())
                .cloned()
                .collect()
        };
        let mut read_write = given(&self.data_roots);
        match too_wide_to_default(&cwd) {
            None => read_write.insert(0, cwd),
            Some(what) if read_write.is_empty() => anyhow::bail!(
                "the current directory {} is {what}, too wide to let a job read and write all of it; \
                 pass --data-root DIR (and --read-root DIR) naming the directories the job may use, \
                 or run weir from a project directory",
                cwd.display()
            ),
            // The flags name the roots; the current directory is not one.
            Some(_) => {}
        }
        let mut roots = DataRoots::new(&read_write, &given(&self.read_roots))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for dir in own_dirs {
            roots.deny(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(roots)
    }
}

/// Why `cwd` may not be a data root by default: the root of the disk, or
/// the home directory or one of its ancestors (`~/.ssh`, `~/.cache/weir`
/// and the job registry's tokens would all be in reach).
fn too_wide_to_default(cwd: &Path) -> Option<&'static str> {
    let canonical = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    if canonical.parent().is_none() {
        return Some("the root of the file system");
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let home = std::fs::canonicalize(&home).unwrap_or_else(|_| PathBuf::from(home));
    if home == canonical {
        Some("your home directory")
    } else if home.starts_with(&canonical) {
        Some("an ancestor of your home directory")
    } else {
        None
    }
}

/// Settings that take precedence over the job file.
#[derive(clap::Args)]
struct OverrideArgs {
    /// Parallelism of every operator and file source that does not set its
    /// own (replaces `[job] parallelism`, and reads such file sources as N
    /// byte ranges).
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
            checkpoint_dir: None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.log_format);
    let cache_dir = if cli.no_cache {
        None
    } else {
        cli.cache_dir.clone().or_else(default_cache_dir)
    };
    let options = RunOptions {
        cache_dir,
        ..RunOptions::default()
    };
    let jobs_dir = cli.jobs_dir.clone().or_else(default_jobs_dir);
    // Jobs may never reach these, whether or not this run uses them.
    let own_dirs: Vec<PathBuf> = [
        cli.cache_dir.clone().or_else(default_cache_dir),
        jobs_dir.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let result = match &cli.command {
        Command::Run {
            job,
            overrides,
            resume,
            from_savepoint,
            allow_non_restored_state,
            api,
            api_bind_any,
            savepoint_dir,
            roots,
        } => {
            let run = || -> anyhow::Result<()> {
                let data_roots = roots.data_roots(&own_dirs)?;
                if let Some(dir) = resume {
                    weir_core::data_roots::check_dir(&data_roots, dir)
                        .map_err(|reason| anyhow::anyhow!("--resume: {reason}"))?;
                }
                let mut o = overrides.to_overrides();
                o.checkpoint_dir = resume.clone();
                let mut spec = job::load_with(job, &o)?;
                weir_runtime::clean_job_paths(&mut spec);
                let options = RunOptions {
                    resume: resume.is_some(),
                    from_savepoint: from_savepoint.clone(),
                    allow_non_restored_state: *allow_non_restored_state,
                    data_roots: Some(data_roots),
                    control: Some(ControlOptions {
                        bind: *api,
                        bind_any: *api_bind_any,
                        jobs_dir: jobs_dir.clone(),
                        savepoint_dir: savepoint_dir.clone(),
                    }),
                    ..options.clone()
                };
                let watch = watch_run(&spec, jobs_dir.clone());
                let report = weir_runtime::run_job(&spec, &options);
                watch.stop();
                print_report(&spec, &report?);
                Ok(())
            };
            run()
        }
        Command::Savepoint {
            inspect: Some(SavepointCommand::Inspect { path }),
            ..
        } => weir_snapshot::Snapshot::load(path)
            .map(|snapshot| print!("{}", weir_snapshot::inspect::describe(&snapshot)))
            .map_err(anyhow::Error::from),
        Command::Savepoint {
            inspect: None,
            target,
        } => request_savepoint(target, jobs_dir.as_deref(), false),
        Command::Stop { target } => request_savepoint(target, jobs_dir.as_deref(), true),
        Command::Upgrade {
            target,
            operator,
            wasm,
            rollback,
            allow_dropping_state,
        } => upgrade(
            target,
            jobs_dir.as_deref(),
            operator,
            wasm.as_deref(),
            *rollback,
            *allow_dropping_state,
        ),
        Command::Rescale {
            target,
            parallelism,
            operator,
        } => rescale(target, jobs_dir.as_deref(), *parallelism, operator.clone()),
        Command::Cluster {
            command:
                ClusterCommand::Init {
                    dir,
                    workers,
                    rest_names,
                },
        } => cluster_cli::init(dir, *workers, rest_names),
        Command::Cluster {
            command:
                ClusterCommand::Up {
                    workers,
                    slots,
                    dir,
                    rest,
                    quic,
                },
        } => {
            let mut global = Vec::new();
            if cli.verbose > 0 {
                global.push(format!("-{}", "v".repeat(cli.verbose as usize)));
            }
            if cli.log_format == logging::LogFormat::Json {
                global.push("--log-format=json".to_string());
            }
            cluster_cli::up(
                &cluster_cli::UpOptions {
                    dir: dir.clone(),
                    workers: *workers,
                    slots: *slots,
                    rest: *rest,
                    quic: *quic,
                },
                &global,
            )
        }
        Command::Coordinator(args) => cluster_cli::coordinator(args),
        Command::Worker(args) => cluster_cli::worker(args),
        Command::Submit {
            job,
            target,
            from_savepoint,
            resume,
            allow_non_restored_state,
            wait,
        } => cluster_cli::submit(
            target,
            &cluster_cli::SubmitOptions {
                job: job.clone(),
                from_savepoint: from_savepoint.clone(),
                resume: *resume,
                allow_non_restored_state: *allow_non_restored_state,
                wait: *wait,
            },
        ),
        Command::Jobs { target, json } if target.cluster.is_none() => {
            jobs_here(jobs_dir.as_deref(), *json)
        }
        Command::Jobs { target, json } => cluster_cli::jobs(target, *json),
        Command::Cancel { job, target } if target.cluster.is_none() => {
            let target = JobTarget {
                job: Some(job.clone()),
                dir: None,
                api: None,
                cluster: cluster_cli::ClusterTarget {
                    cluster: None,
                    token_file: target.token_file.clone(),
                    ca_file: target.ca_file.clone(),
                },
            };
            embedded_api(&target, jobs_dir.as_deref(), job).and_then(|(api, token)| {
                client::command(&api, &token, job, "cancel", &CommandBody::default())?;
                eprintln!("job `{job}` cancelled");
                Ok(())
            })
        }
        Command::Cancel { job, target } => cluster_cli::cancel(target, job),
        Command::Nexmark(args) => nexmark_cli::run(args),
        Command::Validate {
            job,
            overrides,
            roots,
        } => load(job, overrides).and_then(|mut spec| {
            weir_runtime::clean_job_paths(&mut spec);
            let options = RunOptions {
                data_roots: Some(roots.data_roots(&own_dirs)?),
                ..options.clone()
            };
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
            // Errors may carry a tenant's text (a guest's error, a reply
            // from an API): a few KiB reach the terminal, never megabytes.
            eprintln!("error: {}", weir_runtime::cut_error(&e));
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path, overrides: &OverrideArgs) -> anyhow::Result<JobSpec> {
    Ok(job::load_with(path, &overrides.to_overrides())?)
}

fn request_savepoint(
    target: &JobTarget,
    jobs_dir: Option<&Path>,
    stop: bool,
) -> anyhow::Result<()> {
    let Some(job) = &target.job else {
        anyhow::bail!(
            "name the job: weir {} JOB",
            if stop { "stop" } else { "savepoint" }
        );
    };
    // A job on a cluster, or one running on this machine.
    let take: Box<dyn FnOnce() -> anyhow::Result<PathBuf>> = if target.cluster.cluster.is_some() {
        let client = target.cluster.client()?;
        Box::new(move || client.savepoint(job, target.dir.as_deref(), stop))
    } else {
        let (api, token) = embedded_api(target, jobs_dir, job)?;
        // A relative directory means the caller's, not the job's, directory.
        let dir = target.dir.as_deref().map(snapshot_location).transpose()?;
        Box::new(move || client::savepoint(&api, &token, job, dir.as_deref(), stop))
    };
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!(
        "{} job `{job}`",
        if stop {
            "stopping"
        } else {
            "taking a savepoint of"
        }
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let result = take();
    spinner.finish_and_clear();
    let path = result?;
    if stop {
        eprintln!("job `{job}` stopped with a savepoint");
    } else {
        eprintln!("savepoint of job `{job}` taken");
    }
    println!("{}", path.display());
    Ok(())
}

/// The control API address and token of job `job` running on this
/// machine: from its registry file, or `--api` with a token from there or
/// from `--token-file` / `WEIR_TOKEN`.
fn embedded_api(
    target: &JobTarget,
    jobs_dir: Option<&Path>,
    job: &str,
) -> anyhow::Result<(String, String)> {
    let registered = jobs_dir.map(|dir| client::find(dir, job));
    Ok(match (&target.api, registered) {
        (None, Some(found)) => {
            let r = found?;
            (r.api, r.token)
        }
        (Some(api), Some(Ok(r))) => (api.clone(), r.token),
        (Some(api), _) => (
            api.clone(),
            cluster_cli::read_token(target.cluster.token_file.as_deref()).map_err(|_| {
                anyhow::anyhow!(
                    "no token for {api}: job `{job}` is not registered in the jobs directory; \
                     pass --token-file FILE or set WEIR_TOKEN"
                )
            })?,
        ),
        (None, None) => anyhow::bail!("no jobs directory: pass --api URL or --jobs-dir DIR"),
    })
}

/// Sends `action` with `body` to job `job`, wherever it runs; shows a
/// spinner while the job works on it.
fn send_command(
    target: &JobTarget,
    jobs_dir: Option<&Path>,
    job: &str,
    action: &str,
    body: CommandBody,
    doing: &str,
) -> anyhow::Result<CommandReply> {
    let send: Box<dyn FnOnce() -> anyhow::Result<CommandReply>> =
        if target.cluster.cluster.is_some() {
            let client = target.cluster.client()?;
            let job = job.to_string();
            let action = action.to_string();
            Box::new(move || client.command(&job, &action, &body))
        } else {
            let (api, token) = embedded_api(target, jobs_dir, job)?;
            let job = job.to_string();
            let action = action.to_string();
            Box::new(move || client::command(&api, &token, &job, &action, &body))
        };
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("{doing} job `{job}`"));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let result = send();
    spinner.finish_and_clear();
    result
}

/// `weir upgrade`.
fn upgrade(
    target: &JobTarget,
    jobs_dir: Option<&Path>,
    operator: &str,
    wasm: Option<&Path>,
    rollback: bool,
    allow_dropping_state: bool,
) -> anyhow::Result<()> {
    let Some(job) = &target.job else {
        anyhow::bail!("name the job: weir upgrade JOB --operator NAME --wasm FILE");
    };
    let artifact = match wasm {
        None => None,
        // A cluster gets the artifact uploaded, as `weir submit` does.
        Some(path) if target.cluster.cluster.is_some() => {
            let client = target.cluster.client()?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| anyhow::anyhow!("{} names no file", path.display()))?;
            let uploaded = client.upload(&name, path, |_| {})?;
            Some(uploaded.digest)
        }
        // A job on this machine reads it itself: the path must be absolute.
        Some(path) => Some(std::path::absolute(path)?.display().to_string()),
    };
    let body = CommandBody {
        operator: Some(operator.to_string()),
        artifact,
        allow_dropping_state,
        rollback,
        ..CommandBody::default()
    };
    let reply = send_command(target, jobs_dir, job, "upgrade", body, "upgrading")?;
    eprintln!(
        "job `{job}`: operator `{operator}` runs {} since checkpoint {}",
        reply
            .digest
            .as_deref()
            .map_or("?", |d| &d[..d.len().min(12)]),
        reply.checkpoint.map_or("?".to_string(), |c| c.to_string())
    );
    Ok(())
}

/// `weir rescale`.
fn rescale(
    target: &JobTarget,
    jobs_dir: Option<&Path>,
    parallelism: u32,
    operator: Option<String>,
) -> anyhow::Result<()> {
    let Some(job) = &target.job else {
        anyhow::bail!("name the job: weir rescale JOB --parallelism N");
    };
    let dir = target.dir.as_deref().map(snapshot_location).transpose()?;
    let body = CommandBody {
        parallelism: Some(parallelism),
        operator: operator.clone(),
        dir,
        ..CommandBody::default()
    };
    let reply = send_command(target, jobs_dir, job, "rescale", body, "rescaling")?;
    eprintln!(
        "job `{job}` runs {} at parallelism {parallelism} (attempt {}, from savepoint {})",
        operator.map_or("every operator".to_string(), |o| format!("operator `{o}`")),
        reply.attempt.map_or("?".to_string(), |a| a.to_string()),
        reply
            .path
            .as_deref()
            .map_or("?".to_string(), |p| p.display().to_string())
    );
    Ok(())
}

/// `weir jobs` without a cluster: the jobs running on this machine, as a
/// table followed by each job's line and operator versions, or as JSON.
fn jobs_here(jobs_dir: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let Some(dir) = jobs_dir else {
        anyhow::bail!(
            "no jobs directory: pass --jobs-dir DIR, or --cluster URL for a cluster's jobs"
        );
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", dir.display())),
    };
    let mut views = Vec::new();
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(job) = name.strip_suffix(".json") else {
            continue;
        };
        let Ok(r) = client::find(dir, job) else {
            continue;
        };
        match client::jobs(&r.api, &r.token) {
            Ok(found) => views.extend(found),
            Err(e) => eprintln!("job `{job}`: not answering ({e:#})"),
        }
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    if views.is_empty() {
        eprintln!("no jobs");
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = views
        .iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect();
    println!("{}", jobs_table::render(&rows, status::now_ms()));
    for view in &views {
        print!("{}", describe_view(view));
    }
    Ok(())
}

/// One job and its operators' versions, for `weir jobs`.
fn describe_view(view: &weir_runtime::master::driver::JobView) -> String {
    let mut out = format!("job `{}` {}", view.name, view.state);
    if view.restarts > 0 {
        out.push_str(&format!(", {} restart(s)", view.restarts));
    }
    if let Some(c) = view.last_checkpoint {
        out.push_str(&format!(", last checkpoint {c}"));
    }
    out.push('\n');
    out.push_str(&jobs_table::version_lines(
        &view.versions,
        &view.parallelism,
    ));
    out
}

fn default_jobs_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_JOBS_DIR") {
        return Some(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".local/state/weir/jobs"))
}

/// A savepoint directory given on the command line, absolute (a relative
/// one means the caller's directory, not the job's); an object store URL
/// (`s3://bucket/prefix`) is kept as it is.
fn snapshot_location(dir: &Path) -> std::io::Result<PathBuf> {
    if dir.to_str().is_some_and(|d| d.starts_with("s3://")) {
        return Ok(dir.to_path_buf());
    }
    std::path::absolute(dir)
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

/// The live status of a `weir run` (see [`status`]), on its own thread
/// until [`Watch::stop`].
struct Watch {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Watch {
    /// Stops the display and waits until it cleared its lines.
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Shows the job's nodes from this process's telemetry every
/// [`status::POLL`]; on a terminal the job's line also gets its state and
/// last checkpoint from its control API (found in `jobs_dir`).
fn watch_run(spec: &JobSpec, jobs_dir: Option<PathBuf>) -> Watch {
    const VIEW_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
    let job = spec.name.clone();
    let inputs = status::input_sizes(spec);
    let terminal = std::io::stderr().is_terminal();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let mut status = status::Status::new(&job, inputs, terminal);
        let mut view: Option<serde_json::Value> = None;
        let mut view_at: Option<std::time::Instant> = None;
        loop {
            if terminal && view_at.is_none_or(|at| at.elapsed() >= VIEW_EVERY) {
                view_at = Some(std::time::Instant::now());
                view = jobs_dir
                    .as_deref()
                    .and_then(|dir| client::find(dir, &job).ok())
                    .and_then(|r| client::jobs(&r.api, &r.token).ok())
                    .and_then(|views| views.into_iter().find(|v| v.name == job))
                    .and_then(|v| serde_json::to_value(v).ok())
                    .or(view);
            }
            let sample = job_metrics(&job).and_then(|m| status::parse(&m));
            status.update(&run_header(&job, started.elapsed(), view.as_ref()), sample);
            match stopped.recv_timeout(status::POLL) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
        status.finish();
    });
    Watch { stop, thread }
}

/// This process's telemetry of `job` as JSON (what a coordinator's `GET
/// /jobs/{job}/metrics` returns, so both are shown by the same code).
fn job_metrics(job: &str) -> Option<serde_json::Value> {
    serde_json::to_value(weir_runtime::telemetry::job_metrics(job)?).ok()
}

/// The job's status line during `weir run`.
fn run_header(job: &str, up: std::time::Duration, view: Option<&serde_json::Value>) -> String {
    let field = |name: &str| view.and_then(|v| v.get(name));
    let state = field("state")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("starting");
    let mut line = format!("job `{job}` {state} {}", status::duration(up));
    if let Some(n) = field("restarts")
        .and_then(serde_json::Value::as_u64)
        .filter(|&n| n > 0)
    {
        line.push_str(&format!(", {n} restart(s)"));
    }
    if let Some(c) = view.and_then(|v| status::last_checkpoint(v, status::now_ms())) {
        line.push_str(&format!(", last checkpoint {c}"));
    }
    line
}

fn print_report(spec: &JobSpec, report: &JobReport) {
    let how = match &report.outcome {
        Outcome::Finished => "finished".to_string(),
        Outcome::Stopped { savepoint } => {
            format!("stopped with savepoint {}", savepoint.display())
        }
        Outcome::Cancelled => "cancelled".to_string(),
    };
    let restarts = match report.restarts {
        0 => String::new(),
        n => format!(" after {n} restart(s)"),
    };
    eprintln!(
        "job `{}` {how}{restarts} in {:.2} s",
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
        if node.records_skipped > 0 {
            line.push_str(&format!(
                "  skipped {} (parse errors)",
                node.records_skipped
            ));
        }
        if node.records_dead_lettered > 0 {
            line.push_str(&format!(
                "  dead-lettered {} (sent to .dead-letter)",
                node.records_dead_lettered
            ));
        }
        if let Some(sink) = spec.sinks.iter().find(|s| s.name == node.name)
            && let Some(path) = weir_runtime::sink_target(&sink.kind)
        {
            line.push_str(&format!("  -> {}", path.display()));
        }
        eprintln!("{line}");
    }
}
