//! Cluster CA, node certificates and the mutual-TLS quinn configs.
//!
//! Every node holds a certificate signed by one cluster CA and trusts that CA
//! alone, in both directions: a server refuses clients without a certificate
//! from the CA, and a client refuses servers without one. Node certificates
//! all carry the DNS name [`SERVER_NAME`] (cluster membership).
//!
//! A certificate also names its node and role, as DNS names a peer can check
//! with [`check_peer`]: `<role>.weir` and `<node>.<role>.weir`, where the role
//! is `coordinator` or `worker`. A worker dials the coordinator expecting
//! `coordinator.weir`, so no worker certificate can stand in for the
//! coordinator; the coordinator and workers check that a peer's certificate
//! carries `<name>.worker.weir` for the name it claims.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// DNS name in every node certificate, and the name clients verify.
pub const SERVER_NAME: &str = "weir-node";
/// ALPN protocol; bump on incompatible wire changes so old nodes refuse.
pub const ALPN: &[u8] = b"weir/1";

/// Per-stream receive window: how far one channel may run ahead of its
/// reader. Small enough that a stalled consumer holds little memory.
pub const STREAM_RECEIVE_WINDOW_BYTES: u32 = 1 << 20;
/// Receive window for all streams of a connection together. Deliberately
/// far above the per-stream windows times a pair's usual channel count:
/// during barrier alignment a consumer stops reading some channels, and if
/// their full stream windows could use up a shared connection window, the
/// channel carrying the awaited barrier would get no credit (a deadlock).
/// Memory stays bounded by the per-stream windows.
pub const CONNECTION_RECEIVE_WINDOW_BYTES: u32 = 1 << 30;
/// Unacknowledged bytes a connection may have in flight (same reasoning).
pub const SEND_WINDOW_BYTES: u64 = 1 << 30;
/// Channel streams one peer may have open at once (one per channel).
pub const MAX_CONCURRENT_UNI_STREAMS: u32 = 4096;
/// Request/response streams one peer may have open at once (control).
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 256;
/// Keep-alive interval: keeps idle connections open and probes liveness.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// A peer silent this long is dead; keep-alives make this a liveness bound.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The role a node certificate grants; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Worker,
}

impl Role {
    /// The DNS name every certificate of this role carries.
    pub fn dns_name(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator.weir",
            Role::Worker => "worker.weir",
        }
    }

    /// The DNS name that names node `node` in this role.
    pub fn node_dns_name(self, node: &str) -> String {
        format!("{node}.{}", self.dns_name())
    }

    /// The role of a node named in `weir cluster init`: `coordinator` and
    /// names starting with `coordinator-` are coordinators, others workers.
    pub fn of_node_name(node: &str) -> Role {
        if node == "coordinator" || node.starts_with("coordinator-") {
            Role::Coordinator
        } else {
            Role::Worker
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Coordinator => "coordinator",
            Role::Worker => "worker",
        })
    }
}

/// What a node certificate is made for.
#[derive(Debug, Clone)]
pub struct NodeCert {
    pub node: String,
    pub role: Role,
    /// More names it answers to (host names or IP addresses), e.g. where
    /// clients reach the coordinator's REST API.
    pub extra_names: Vec<String>,
}

impl NodeCert {
    /// A certificate for `node` in the role its name implies
    /// ([`Role::of_node_name`]).
    pub fn named(node: &str) -> NodeCert {
        NodeCert {
            node: node.to_string(),
            role: Role::of_node_name(node),
            extra_names: Vec::new(),
        }
    }
}

const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const CA_COMMON_NAME: &str = "weir cluster CA";

/// Creates the cluster CA in `dir` (or reuses the one there) and a
/// certificate and key for each node, in the role its name implies
/// ([`Role::of_node_name`]); returns the files written.
pub fn init_cluster(dir: &Path, nodes: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let certs: Vec<NodeCert> = nodes.iter().map(|n| NodeCert::named(n)).collect();
    init_cluster_with(dir, &certs)
}

/// [`init_cluster`] with each node's role and extra names given.
pub fn init_cluster_with(dir: &Path, nodes: &[NodeCert]) -> anyhow::Result<Vec<PathBuf>> {
    for node in nodes {
        check_node_name(&node.node)?;
        for name in &node.extra_names {
            extra_san(name)?;
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let ca_cert_path = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);
    let (issuer, ca_der) = if ca_cert_path.exists() {
        load_ca(&ca_cert_path, &ca_key_path)?
    } else {
        let key = KeyPair::generate().context("generating the CA key")?;
        let cert = ca_params(&key)
            .self_signed(&key)
            .context("self-signing the CA certificate")?;
        write_file(&ca_key_path, key.serialize_pem().as_bytes(), true)?;
        write_file(&ca_cert_path, cert.pem().as_bytes(), false)?;
        written.extend([ca_cert_path, ca_key_path]);
        let der = cert.der().clone();
        (Issuer::new(ca_params(&key), key), der)
    };
    for spec in nodes {
        let node = &spec.node;
        let key = KeyPair::generate().with_context(|| format!("generating the key of {node}"))?;
        let cert = node_params(spec)?
            .signed_by(&key, &issuer)
            .with_context(|| format!("signing the certificate of {node}"))?;
        // A reused CA not made by this code could sign certificates that do
        // not chain to it; catch that here rather than at the first connect.
        verify_chains_to(&ca_der, cert.der()).with_context(|| {
            format!(
                "{} cannot sign node certificates",
                dir.join(CA_CERT_FILE).display()
            )
        })?;
        let cert_path = dir.join(format!("{node}.pem"));
        let key_path = dir.join(format!("{node}.key"));
        write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
        write_file(&cert_path, cert.pem().as_bytes(), false)?;
        written.extend([cert_path, key_path]);
    }
    Ok(written)
}

/// Longest node name.
pub const NODE_NAME_BYTES_MAX: usize = 64;

/// A node name is 1 to [`NODE_NAME_BYTES_MAX`] lowercase ASCII letters,
/// digits and `-`. Certificates name nodes as DNS names, which match
/// case-insensitively, while the coordinator tells workers apart by exact
/// name: `worker-1` and `WORKER-1` would pass as one certificate yet
/// register as two workers.
pub fn check_node_name(node: &str) -> anyhow::Result<()> {
    let valid = !node.is_empty()
        && node.len() <= NODE_NAME_BYTES_MAX
        && node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        bail!(
            "invalid node name {:?}: use 1 to {NODE_NAME_BYTES_MAX} lowercase letters, digits and '-'",
            cut_name(node)
        );
    }
    Ok(())
}

/// At most 80 characters of a name for an error (a peer sends it).
fn cut_name(name: &str) -> String {
    name.chars().take(80).collect()
}

/// The CA's parameters, a function of its key alone, so an issuer rebuilt
/// from them and the stored key signs exactly as the original did (rcgen
/// cannot parse the stored certificate without its x509-parser feature).
///
/// The name carries a fingerprint of the key: certificate paths are built by
/// issuer name, so two clusters' CAs with one name would make a stranger's
/// certificate fail as "bad signature" instead of "unknown issuer".
fn ca_params(key: &KeyPair) -> CertificateParams {
    let fingerprint: String = key
        .public_key_raw()
        .iter()
        .rev()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("{CA_COMMON_NAME} {fingerprint}"),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// An extra certificate name: an IP address or a DNS name.
fn extra_san(name: &str) -> anyhow::Result<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if rustls_pki_types::DnsName::try_from(name).is_err() {
        bail!("{name:?} is neither an IP address nor a DNS name");
    }
    let dns = name
        .to_string()
        .try_into()
        .with_context(|| format!("{name:?} as a DNS name"))?;
    Ok(SanType::DnsName(dns))
}

fn node_params(spec: &NodeCert) -> anyhow::Result<CertificateParams> {
    let node = spec.node.as_str();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, spec.role.node_dns_name(node));
    let mut names = vec![
        SERVER_NAME.to_string(),
        spec.role.dns_name().to_string(),
        spec.role.node_dns_name(node),
        "localhost".to_string(),
    ];
    if rustls_pki_types::DnsName::try_from(node).is_ok() && !names.iter().any(|n| n == node) {
        names.push(node.to_string());
    }
    for name in names {
        let dns = name
            .clone()
            .try_into()
            .with_context(|| format!("{name:?} as a DNS name"))?;
        params.subject_alt_names.push(SanType::DnsName(dns));
    }
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    for name in &spec.extra_names {
        let san = extra_san(name)?;
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn load_ca(
    cert_path: &Path,
    key_path: &Path,
) -> anyhow::Result<(Issuer<'static, KeyPair>, CertificateDer<'static>)> {
    let der = CertificateDer::from_pem_file(cert_path)
        .with_context(|| format!("reading the CA certificate {}", cert_path.display()))?;
    let pem = fs::read_to_string(key_path).with_context(|| {
        format!(
            "reading the CA key {} (it belongs beside {})",
            key_path.display(),
            cert_path.display()
        )
    })?;
    let key = KeyPair::from_pem(&pem)
        .with_context(|| format!("parsing the CA key {}", key_path.display()))?;
    Ok((Issuer::new(ca_params(&key), key), der))
}

fn verify_chains_to(ca: &CertificateDer<'_>, cert: &CertificateDer<'_>) -> anyhow::Result<()> {
    let verifier = client_verifier(ca)?;
    verifier
        .verify_client_cert(cert, &[], UnixTime::now())
        .map_err(|e| anyhow::anyhow!("a certificate it signed does not verify: {e}"))?;
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // `mode` only applies to new files; tighten an existing one too.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A node's certificate chain and key, and the cluster CA it trusts.
pub struct NodeIdentity {
    pub node: String,
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node", &self.node)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        NodeIdentity {
            node: self.node.clone(),
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl NodeIdentity {
    /// Loads `ca.pem`, `<node>.pem` and `<node>.key` from `dir`.
    pub fn load(dir: &Path, node: &str) -> anyhow::Result<NodeIdentity> {
        check_node_name(node)?;
        let hint = "run `weir cluster init` to create the cluster certificates";
        let ca_path = dir.join(CA_CERT_FILE);
        let ca = CertificateDer::from_pem_file(&ca_path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e} ({hint})", ca_path.display()))?;
        let cert_path = dir.join(format!("{node}.pem"));
        let chain = CertificateDer::pem_file_iter(&cert_path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("reading {}: {e} ({hint})", cert_path.display()))?;
        if chain.is_empty() {
            bail!("{} holds no certificate ({hint})", cert_path.display());
        }
        let key_path = dir.join(format!("{node}.key"));
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e} ({hint})", key_path.display()))?;
        Ok(NodeIdentity {
            node: node.to_string(),
            ca,
            chain,
            key,
        })
    }
}

/// Checks that the peer of `conn` presented a certificate naming `node` in
/// `role` (see the module doc). The chain itself was verified against the
/// cluster CA in the handshake; this checks whose it is.
pub fn check_peer(conn: &quinn::Connection, role: Role, node: &str) -> anyhow::Result<()> {
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| anyhow::anyhow!("the peer presented no certificate"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| anyhow::anyhow!("the peer presented no certificate"))?;
    check_cert_names(leaf, role, node)
}

/// [`check_peer`] on a certificate.
pub fn check_cert_names(cert: &CertificateDer<'_>, role: Role, node: &str) -> anyhow::Result<()> {
    check_node_name(node)?;
    let expected = role.node_dns_name(node);
    let name = rustls_pki_types::ServerName::try_from(expected.as_str())
        .map_err(|_| anyhow::anyhow!("{node:?} is not a valid node name"))?;
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| anyhow::anyhow!("unreadable peer certificate: {e}"))?;
    parsed
        .verify_is_valid_for_subject_name(&name)
        .map_err(|_| {
            anyhow::anyhow!(
                "its certificate is not the {role} certificate of `{node}` (it does not name {expected})"
            )
        })
}

/// The crypto provider, passed explicitly so no process-wide default is
/// needed (or disturbed).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'_>) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone().into_owned())
        .context("adding the cluster CA as trust root")?;
    Ok(Arc::new(roots))
}

fn client_verifier(
    ca: &CertificateDer<'_>,
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
        .build()
        .context("building the client certificate verifier")
}

/// Transport limits shared by both sides: bounded windows are the
/// backpressure, keep-alive plus idle timeout detect dead peers in seconds.
pub fn transport_config() -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW_BYTES))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW_BYTES))
        .send_window(SEND_WINDOW_BYTES)
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_CONCURRENT_UNI_STREAMS))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_BIDI_STREAMS))
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        // 5 s fits in a VarInt of milliseconds; the conversion cannot fail.
        .max_idle_timeout(IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    transport
}

/// Server side: TLS 1.3, ALPN `weir/1`, client certificate required and
/// checked against the cluster CA.
pub fn server_config(id: &NodeIdentity) -> anyhow::Result<quinn::ServerConfig> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("selecting TLS 1.3")?
        .with_client_cert_verifier(client_verifier(&id.ca)?)
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .with_context(|| format!("using the certificate of node {}", id.node))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(tls).context("TLS config unusable for QUIC")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// A TLS server config for the REST API (HTTPS): the node's certificate,
/// no client certificate (clients authenticate with the bearer token), and
/// HTTP/1.1 by ALPN.
pub fn https_server_config(id: &NodeIdentity) -> anyhow::Result<rustls::ServerConfig> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("selecting TLS versions")?
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .with_context(|| format!("using the certificate of node {}", id.node))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Client side: trusts only the cluster CA and presents the node certificate.
pub fn client_config(id: &NodeIdentity) -> anyhow::Result<quinn::ClientConfig> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("selecting TLS 1.3")?
        .with_root_certificates(roots(&id.ca)?)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .with_context(|| format!("using the certificate of node {}", id.node))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).context("TLS config unusable for QUIC")?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn init_writes_ca_and_nodes_and_they_load() {
        let dir = tempfile::tempdir().unwrap();
        let written = init_cluster(dir.path(), &names(&["a", "node-2"])).unwrap();
        let files: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            files,
            [
                "ca.pem",
                "ca.key",
                "a.pem",
                "a.key",
                "node-2.pem",
                "node-2.key"
            ]
        );
        #[cfg(unix)]
        for key in ["ca.key", "a.key"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let id = NodeIdentity::load(dir.path(), "node-2").unwrap();
        verify_chains_to(&id.ca, &id.chain[0]).unwrap();
        server_config(&id).unwrap();
        client_config(&id).unwrap();
    }

    #[test]
    fn certificates_carry_role_node_and_rest_names() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = NodeCert {
            extra_names: vec!["10.0.0.5".into(), "weir.example.com".into()],
            ..NodeCert::named("coordinator")
        };
        init_cluster_with(dir.path(), &[coordinator, NodeCert::named("worker-1")]).unwrap();
        let c = NodeIdentity::load(dir.path(), "coordinator").unwrap();
        let w = NodeIdentity::load(dir.path(), "worker-1").unwrap();
        check_cert_names(&c.chain[0], Role::Coordinator, "coordinator").unwrap();
        check_cert_names(&w.chain[0], Role::Worker, "worker-1").unwrap();
        assert!(check_cert_names(&w.chain[0], Role::Coordinator, "worker-1").is_err());
        // DNS names match case-insensitively; node names are lowercase only,
        // so one certificate cannot register as two workers.
        let error = check_cert_names(&w.chain[0], Role::Worker, "WORKER-1")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "invalid node name \"WORKER-1\": use 1 to 64 lowercase letters, digits and '-'"
        );
        assert!(check_cert_names(&c.chain[0], Role::Worker, "coordinator").is_err());
        let leaf = webpki::EndEntityCert::try_from(&c.chain[0]).unwrap();
        for name in [
            "10.0.0.5",
            "weir.example.com",
            "127.0.0.1",
            "localhost",
            "coordinator.weir",
        ] {
            let server_name = rustls_pki_types::ServerName::try_from(name).unwrap();
            leaf.verify_is_valid_for_subject_name(&server_name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let bad = NodeCert {
            extra_names: vec!["not a name!".into()],
            ..NodeCert::named("coordinator")
        };
        let error = init_cluster_with(dir.path(), &[bad])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "\"not a name!\" is neither an IP address nor a DNS name"
        );
    }

    #[test]
    fn second_init_reuses_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(dir.path(), &names(&["a"])).unwrap();
        let ca_before = fs::read(dir.path().join("ca.pem")).unwrap();
        let written = init_cluster(dir.path(), &names(&["b"])).unwrap();
        assert_eq!(written.len(), 2, "only the node files: {written:?}");
        assert_eq!(fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
        let a = NodeIdentity::load(dir.path(), "a").unwrap();
        let b = NodeIdentity::load(dir.path(), "b").unwrap();
        verify_chains_to(&a.ca, &b.chain[0]).unwrap();
    }

    #[test]
    fn bad_node_names_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let long = "a".repeat(NODE_NAME_BYTES_MAX + 1);
        for bad in [
            "",
            "a.b",
            "../x",
            "a b",
            "é",
            "Worker-1",
            "a_b",
            long.as_str(),
        ] {
            let error = init_cluster(dir.path(), &names(&["ok", bad])).unwrap_err();
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
        assert!(
            !dir.path().join("ok.pem").exists(),
            "nothing written on refusal"
        );
    }

    #[test]
    fn missing_files_say_to_run_init() {
        let dir = tempfile::tempdir().unwrap();
        let error = NodeIdentity::load(dir.path(), "a").unwrap_err().to_string();
        assert!(
            error.contains("ca.pem") && error.contains("weir cluster init"),
            "{error}"
        );
        init_cluster(dir.path(), &names(&["a"])).unwrap();
        fs::remove_file(dir.path().join("a.key")).unwrap();
        let error = NodeIdentity::load(dir.path(), "a").unwrap_err().to_string();
        assert!(
            error.contains("a.key") && error.contains("weir cluster init"),
            "{error}"
        );
    }

    #[test]
    fn other_ca_does_not_verify() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        init_cluster(one.path(), &names(&["a"])).unwrap();
        init_cluster(two.path(), &names(&["a"])).unwrap();
        let a1 = NodeIdentity::load(one.path(), "a").unwrap();
        let a2 = NodeIdentity::load(two.path(), "a").unwrap();
        assert!(verify_chains_to(&a1.ca, &a2.chain[0]).is_err());
    }
}
