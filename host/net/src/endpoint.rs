//! A node's QUIC endpoint: listens for peers and dials them, with errors
//! that say who refused whom.
//!
//! Why `connect` waits past the handshake: in TLS 1.3 a client finishes its
//! handshake before the server has checked the client certificate, so a
//! refused client would otherwise get a connection that dies a moment later
//! with an obscure error. `connect` returns only once the server has
//! confirmed the handshake (QUIC HANDSHAKE_DONE), or fails saying why.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, anyhow};
use quinn::{Connection, ConnectionError, Endpoint, Incoming};

use crate::tls::{self, IDLE_TIMEOUT, NodeIdentity, Role, SERVER_NAME};

/// Kernel receive buffer asked for on a node's UDP socket. The Linux default
/// (~208 KiB) overflows at a few hundred MB/s and every drop costs a
/// congestion-window cut and a retransmit (seen in `benches/shuffle.rs` as
/// ~1% loss and 200+ ms latency tails). The kernel caps it at
/// `net.core.rmem_max`.
pub const UDP_RECV_BUFFER_BYTES: usize = 4 << 20;
/// Kernel send buffer asked for, for the same bursts on the way out.
pub const UDP_SEND_BUFFER_BYTES: usize = 4 << 20;

/// Upper bound on a connect, beyond quinn's own idle timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `connect` checks whether the server confirmed the handshake.
const CONFIRM_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// A node's QUIC endpoint (server and client at once).
#[derive(Debug, Clone)]
pub struct Node {
    endpoint: Endpoint,
}

impl Node {
    /// Listens on `addr` and dials with the same identity. Must run inside a
    /// tokio runtime.
    pub fn bind(addr: SocketAddr, id: &NodeIdentity) -> anyhow::Result<Node> {
        let socket =
            udp_socket(addr).with_context(|| format!("binding node {} to {addr}", id.node))?;
        let mut endpoint = new_endpoint(socket, Some(tls::server_config(id)?))?;
        endpoint.set_default_client_config(tls::client_config(id)?);
        Ok(Node { endpoint })
    }

    /// An endpoint that only dials (bound to 127.0.0.1 on any port).
    pub fn client_only(id: &NodeIdentity) -> anyhow::Result<Node> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let socket = udp_socket(addr).with_context(|| format!("binding client {addr}"))?;
        let mut endpoint = new_endpoint(socket, None)?;
        endpoint.set_default_client_config(tls::client_config(id)?);
        Ok(Node { endpoint })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.endpoint.local_addr().context("local address")
    }

    /// The quinn endpoint, for anything not wrapped here.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Connects to the node at `addr` with mutual TLS; see the module doc.
    /// Any member of the cluster may answer; [`Node::connect_to`] asks for
    /// one role.
    pub async fn connect(&self, addr: SocketAddr) -> anyhow::Result<Connection> {
        self.connect_with(addr, None).await
    }

    /// Connects to the node at `addr`, which must present a certificate of
    /// `role` (e.g. a worker accepts control only from the coordinator).
    pub async fn connect_to(&self, addr: SocketAddr, role: Role) -> anyhow::Result<Connection> {
        self.dial(addr, None, role.dns_name()).await.map_err(|e| {
            if e.to_string().contains("not valid for name")
                || e.to_string().contains("NotValidForName")
            {
                anyhow!(
                    "{addr} is not the {role}: its certificate does not name {}",
                    role.dns_name()
                )
            } else {
                e
            }
        })
    }

    /// Like [`Node::connect`], with a client config other than the default.
    pub async fn connect_with(
        &self,
        addr: SocketAddr,
        config: Option<quinn::ClientConfig>,
    ) -> anyhow::Result<Connection> {
        self.dial(addr, config, SERVER_NAME).await
    }

    async fn dial(
        &self,
        addr: SocketAddr,
        config: Option<quinn::ClientConfig>,
        server_name: &str,
    ) -> anyhow::Result<Connection> {
        let connecting = match config {
            Some(config) => self.endpoint.connect_with(config, addr, server_name),
            None => self.endpoint.connect(addr, server_name),
        }
        .map_err(|e| anyhow!("connecting to {addr}: {e}"))?;
        let confirmed = async {
            let conn = connecting.await?;
            wait_confirmed(&conn).await?;
            Ok::<_, ConnectionError>(conn)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, confirmed).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(describe_connect_error(addr, &e)),
            Err(_) => Err(timed_out(addr, CONNECT_TIMEOUT)),
        }
    }

    /// The next incoming connection attempt; `None` once the endpoint is
    /// closed. Finish it with [`accept_incoming`].
    pub async fn accept(&self) -> Option<Incoming> {
        self.endpoint.accept().await
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"node shutting down");
    }
}

/// Binds a UDP socket with enlarged kernel buffers. A refused enlargement is
/// only logged: the node works, just with more loss under load.
fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    if let Err(e) = state.set_recv_buffer_size((&socket).into(), UDP_RECV_BUFFER_BYTES) {
        tracing::warn!(
            "could not set UDP receive buffer of {addr} to {UDP_RECV_BUFFER_BYTES} bytes: {e}"
        );
    }
    if let Err(e) = state.set_send_buffer_size((&socket).into(), UDP_SEND_BUFFER_BYTES) {
        tracing::warn!(
            "could not set UDP send buffer of {addr} to {UDP_SEND_BUFFER_BYTES} bytes: {e}"
        );
    }
    Ok(socket)
}

fn new_endpoint(
    socket: UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> anyhow::Result<Endpoint> {
    let runtime = quinn::default_runtime()
        .context("no async runtime: a weir node must be created inside a tokio runtime")?;
    Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
        .context("creating the QUIC endpoint")
}

/// Completes the handshake of an incoming connection. A refused peer is
/// logged and returned as an error naming its address and the reason.
pub async fn accept_incoming(incoming: Incoming) -> anyhow::Result<Connection> {
    let from = incoming.remote_address();
    let result = match incoming.accept() {
        Ok(connecting) => connecting.await,
        Err(e) => Err(e),
    };
    result.map_err(|e| {
        let error = anyhow!(
            "refused connection from {from}: {}",
            describe_accept_error(&e)
        );
        tracing::warn!("{error}");
        error
    })
}

async fn wait_confirmed(conn: &Connection) -> Result<(), ConnectionError> {
    loop {
        if let Some(reason) = conn.close_reason() {
            return Err(reason);
        }
        if conn.stats().frame_rx.handshake_done > 0 {
            return Ok(());
        }
        tokio::time::sleep(CONFIRM_POLL_INTERVAL).await;
    }
}

/// The TLS alert inside a QUIC error code, if it carries one.
fn tls_alert(code: quinn::TransportErrorCode) -> Option<u8> {
    let code = u64::from(code);
    (0x100..=0x1ff)
        .contains(&code)
        .then_some((code & 0xff) as u8)
}

/// What a TLS alert from the peer means for us, in words.
fn alert_meaning(alert: u8) -> &'static str {
    match alert {
        116 => "it requires a client certificate and we sent none",
        48 => "our certificate is not signed by its cluster CA",
        51 => "its cluster CA did not verify our certificate's signature (another cluster's CA?)",
        42..=46 => "it rejected our certificate",
        120 => "no common application protocol (different weir versions?)",
        70 => "no common TLS version",
        _ => "TLS handshake failed",
    }
}

/// Our own rustls error, as a reason a person can act on.
fn certificate_problem(reason: &str) -> String {
    // BadSignature: an issuer with the CA's name but another key.
    if reason.contains("UnknownIssuer") || reason.contains("BadSignature") {
        format!("certificate not signed by the cluster CA ({reason})")
    } else if reason.contains("no certificates") || reason.contains("NoCertificatesPresented") {
        format!("no client certificate ({reason})")
    } else {
        reason.to_string()
    }
}

fn timed_out(addr: SocketAddr, after: Duration) -> anyhow::Error {
    anyhow!(
        "timed out connecting to {addr} after {after:?}: no answer (is a weir node listening there?)"
    )
}

fn describe_connect_error(addr: SocketAddr, error: &ConnectionError) -> anyhow::Error {
    match error {
        ConnectionError::TransportError(e) if tls_alert(e.code).is_some() => anyhow!(
            "we refused the certificate of {addr}: {}",
            certificate_problem(&e.reason)
        ),
        ConnectionError::ConnectionClosed(close) => match tls_alert(close.error_code) {
            Some(alert) => anyhow!(
                "{addr} refused our certificate: {} (TLS alert {alert}{})",
                alert_meaning(alert),
                reason_suffix(&close.reason)
            ),
            None => anyhow!("{addr} closed the connection: {close}"),
        },
        ConnectionError::TimedOut => timed_out(addr, IDLE_TIMEOUT),
        other => anyhow!("connecting to {addr}: {other}"),
    }
}

fn reason_suffix(reason: &[u8]) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {}", String::from_utf8_lossy(reason))
    }
}

fn describe_accept_error(error: &ConnectionError) -> String {
    match error {
        ConnectionError::TransportError(e) if tls_alert(e.code).is_some() => {
            certificate_problem(&e.reason)
        }
        ConnectionError::ConnectionClosed(close) => match tls_alert(close.error_code) {
            Some(alert) => format!(
                "it refused our certificate (TLS alert {alert}{})",
                reason_suffix(&close.reason)
            ),
            None => format!("closed by the peer: {close}"),
        },
        ConnectionError::TimedOut => "handshake timed out".to_string(),
        other => other.to_string(),
    }
}
