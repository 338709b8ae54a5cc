//! A worker's metrics: its tasks' (from `weir_runtime::telemetry`) served as
//! Prometheus text on `--metrics ADDR`, plus its own (slots, QUIC traffic
//! per peer), and a sample of every job's sent to the coordinator each
//! second for its dashboard and `GET /jobs/{job}/metrics`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::response::IntoResponse as _;

/// Where a worker serves `GET /metrics`.
#[derive(Debug, Clone, Copy)]
pub struct MetricsListen {
    pub addr: SocketAddr,
    /// Listen on a non-loopback address (metrics name jobs and operators
    /// and show their rates; no data). Without it only loopback is allowed.
    pub bind_any: bool,
}

impl MetricsListen {
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.addr.ip().is_loopback() && !self.bind_any {
            bail!(
                "--metrics {} is not a loopback address: the metrics would be reachable from \
                 other machines without a token; use 127.0.0.1:PORT, or pass --metrics-bind-any",
                self.addr
            );
        }
        Ok(())
    }
}

/// What a worker knows of itself for its metrics page.
pub(crate) trait WorkerFacts: Send + Sync + 'static {
    fn slots(&self) -> (u32, u32);
    /// (peer id, connection) for every live connection to a peer, and the
    /// coordinator's as peer "coordinator".
    fn connections(&self) -> Vec<(String, quinn::Connection)>;
}

/// The worker's own metrics in the Prometheus text format.
pub(crate) fn render_worker(facts: &dyn WorkerFacts) -> String {
    let mut out = String::new();
    let (slots, used) = facts.slots();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    let counter = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    };
    gauge(
        &mut out,
        "weir_worker_slots",
        "Task slots this worker offers.",
    );
    let _ = writeln!(out, "weir_worker_slots {slots}");
    gauge(
        &mut out,
        "weir_worker_slots_used",
        "Task slots used by deployed attempts.",
    );
    let _ = writeln!(out, "weir_worker_slots_used {used}");
    let connections = facts.connections();
    let stats: Vec<(String, quinn::ConnectionStats)> = connections
        .into_iter()
        .map(|(peer, c)| (peer, c.stats()))
        .collect();
    counter(
        &mut out,
        "weir_quic_sent_bytes_total",
        "UDP bytes sent to a peer.",
    );
    for (peer, s) in &stats {
        let _ = writeln!(
            out,
            "weir_quic_sent_bytes_total{{peer=\"{peer}\"}} {}",
            s.udp_tx.bytes
        );
    }
    counter(
        &mut out,
        "weir_quic_received_bytes_total",
        "UDP bytes received from a peer.",
    );
    for (peer, s) in &stats {
        let _ = writeln!(
            out,
            "weir_quic_received_bytes_total{{peer=\"{peer}\"}} {}",
            s.udp_rx.bytes
        );
    }
    gauge(
        &mut out,
        "weir_quic_rtt_seconds",
        "Smoothed round-trip time to a peer.",
    );
    for (peer, s) in &stats {
        let _ = writeln!(
            out,
            "weir_quic_rtt_seconds{{peer=\"{peer}\"}} {}",
            s.path.rtt.as_secs_f64()
        );
    }
    counter(
        &mut out,
        "weir_quic_lost_packets_total",
        "Packets to a peer that were lost.",
    );
    for (peer, s) in &stats {
        let _ = writeln!(
            out,
            "weir_quic_lost_packets_total{{peer=\"{peer}\"}} {}",
            s.path.lost_packets
        );
    }
    out
}

/// Serves `GET /metrics` on `listen` until the runtime ends.
pub(crate) async fn serve(
    listen: MetricsListen,
    name: String,
    facts: Arc<dyn WorkerFacts>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen.addr)
        .await
        .with_context(|| format!("--metrics: cannot listen on {}", listen.addr))?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let facts = facts.clone();
            async move {
                let mut text = weir_runtime::telemetry::render_prometheus();
                text.push_str(&render_worker(facts.as_ref()));
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        weir_runtime::telemetry::CONTENT_TYPE,
                    )],
                    text,
                )
                    .into_response()
            }
        }),
    );
    eprintln!("weir: worker {name} metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}

/// How often a worker sends its jobs' metrics to the coordinator.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
