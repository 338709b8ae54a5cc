//! Real endpoints on 127.0.0.1: mutual TLS, refusals, channels, messages and
//! backpressure. Every test is bounded by a timeout so it stops by itself.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use weir_net::endpoint::accept_incoming;
use weir_net::stream::{
    CONTROL_MESSAGE_BYTES_MAX, Received, accept_channel, open_channel, read_blob,
    read_control_message, read_message, write_blob, write_message,
};
use weir_net::tls::ALPN;
use weir_net::{ChannelHeader, Frame, Node, NodeIdentity, init_cluster};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn cluster(dir: &Path, nodes: &[&str]) -> Vec<NodeIdentity> {
    let names: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    init_cluster(dir, &names).unwrap();
    nodes
        .iter()
        .map(|n| NodeIdentity::load(dir, n).unwrap())
        .collect()
}

fn all_frames() -> Vec<Frame> {
    vec![
        Frame::Batch(vec![]),
        Frame::Batch(vec![5; 20_000]),
        Frame::Batch(vec![6; 20_000]),
        Frame::Idle,
        Frame::Batch((0..200_000u32).map(|i| (i % 251) as u8).collect()),
        Frame::Watermark(-5),
        Frame::Watermark(1_700_000_000_123),
        Frame::Idle,
        Frame::Barrier {
            id: 3,
            savepoint: true,
        },
        Frame::Barrier {
            id: 4,
            savepoint: false,
        },
        Frame::Batch(vec![1, 2, 3]),
        Frame::End,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_carries_channels_and_messages() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let ids = cluster(dir.path(), &["a", "b"]);
        let server = Node::bind(any_port(), &ids[0]).unwrap();
        let client = Node::bind(any_port(), &ids[1]).unwrap();
        let addr = server.local_addr().unwrap();

        let served = tokio::spawn(async move {
            let conn = accept_incoming(server.accept().await.unwrap())
                .await
                .unwrap();
            let (header, mut reader) = accept_channel(conn.accept_uni().await.unwrap())
                .await
                .unwrap();
            let mut frames = Vec::new();
            while let Some(frame) = reader.next().await.unwrap() {
                frames.push(frame);
            }
            // Control: echo one message and one blob back, then end.
            let (mut send, mut recv) = conn.accept_bi().await.unwrap();
            let msg: serde_json::Value = read_message(&mut recv).await.unwrap().unwrap();
            let blob = read_blob(&mut recv).await.unwrap().unwrap();
            assert!(
                read_message::<serde_json::Value>(&mut recv)
                    .await
                    .unwrap()
                    .is_none()
            );
            write_message(&mut send, &msg).await.unwrap();
            write_blob(&mut send, &blob).await.unwrap();
            send.finish().unwrap();
            conn.closed().await;
            (header, frames)
        });

        let conn = client.connect(addr).await.unwrap();
        let header = ChannelHeader {
            job: "job-1".into(),
            attempt: 2,
            channel: 7,
        };
        let mut writer = open_channel(&conn, &header).await.unwrap();
        // Batches through the zero-copy path, the rest through `write`.
        for frame in all_frames() {
            match frame {
                Frame::Batch(bytes) => writer.write_batch(bytes).await.unwrap(),
                other => writer.write(&other).await.unwrap(),
            }
        }
        writer.finish().await.unwrap();

        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let msg = serde_json::json!({"deploy": "job-1", "parallelism": 4});
        let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        write_message(&mut send, &msg).await.unwrap();
        write_blob(&mut send, &blob).await.unwrap();
        send.finish().unwrap();
        let echoed: serde_json::Value = read_message(&mut recv).await.unwrap().unwrap();
        assert_eq!(echoed, msg);
        assert_eq!(read_blob(&mut recv).await.unwrap().unwrap(), blob);
        assert!(read_blob(&mut recv).await.unwrap().is_none());
        conn.close(0u32.into(), b"done");

        let (got_header, frames) = served.await.unwrap();
        assert_eq!(got_header, header);
        assert_eq!(frames, all_frames());
    })
    .await
    .expect("test timed out");
}

/// Runs a server that records the outcome of each incoming connection.
fn spawn_recording_server(
    node: Node,
) -> tokio::task::JoinHandle<Result<quinn::Connection, String>> {
    tokio::spawn(async move {
        let incoming = node.accept().await.unwrap();
        match accept_incoming(incoming).await {
            Ok(conn) => {
                // Any stream reaching here would mean a refused client got through.
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.accept_uni()).await;
                Ok(conn)
            }
            Err(e) => Err(e.to_string()),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let ids = cluster(dir.path(), &["a", "b"]);
        let server = Node::bind(any_port(), &ids[0]).unwrap();
        let addr = server.local_addr().unwrap();
        let served = spawn_recording_server(server);

        // Trusts the CA, so the only thing wrong is the missing certificate.
        let ca = CertificateDer::from_pem_file(dir.path().join("ca.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let config = quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
        ));

        let client = Node::client_only(&ids[1]).unwrap();
        let error = client
            .connect_with(addr, Some(config))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(&addr.to_string()), "{error}");
        assert!(error.contains("refused our certificate"), "{error}");
        assert!(error.contains("requires a client certificate"), "{error}");

        let refused = served.await.unwrap().unwrap_err();
        eprintln!("client: {error}\nserver: {refused}");
        assert!(
            refused.starts_with("refused connection from 127.0.0.1:"),
            "{refused}"
        );
        assert!(refused.contains("no client certificate"), "{refused}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_from_another_ca_is_refused() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        let server_id = &cluster(ours.path(), &["a"])[0];
        cluster(theirs.path(), &["b"]);
        let server = Node::bind(any_port(), server_id).unwrap();
        let addr = server.local_addr().unwrap();
        let served = spawn_recording_server(server);

        // The stranger trusts our CA so that only its own certificate is wrong.
        std::fs::copy(ours.path().join("ca.pem"), theirs.path().join("ca.pem")).unwrap();
        let mixed_trusting_ours = NodeIdentity::load(theirs.path(), "b").unwrap();

        let client = Node::client_only(&mixed_trusting_ours).unwrap();
        let error = client.connect(addr).await.unwrap_err().to_string();
        assert!(error.contains(&addr.to_string()), "{error}");
        assert!(
            error.contains(
                "refused our certificate: our certificate is not signed by its cluster CA"
            ),
            "{error}"
        );

        let refused = served.await.unwrap().unwrap_err();
        eprintln!("client: {error}\nserver: {refused}");
        assert!(
            refused.starts_with("refused connection from 127.0.0.1:"),
            "{refused}"
        );
        assert!(
            refused.contains("certificate not signed by the cluster CA"),
            "{refused}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_from_another_ca_is_refused_by_the_client() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        let client_id = &cluster(ours.path(), &["a"])[0];
        let impostor = &cluster(theirs.path(), &["b"])[0];
        let server = Node::bind(any_port(), impostor).unwrap();
        let addr = server.local_addr().unwrap();
        let served = spawn_recording_server(server);

        let client = Node::client_only(client_id).unwrap();
        let error = client.connect(addr).await.unwrap_err().to_string();
        assert!(
            error.contains(&format!("we refused the certificate of {addr}")),
            "{error}"
        );
        assert!(error.contains("not signed by the cluster CA"), "{error}");
        let refused = served.await.unwrap().unwrap_err();
        eprintln!("client: {error}\nserver: {refused}");
        assert!(refused.contains("refused our certificate"), "{refused}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_listening_times_out_readably() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let ids = cluster(dir.path(), &["a"]);
        // Bind a UDP socket and keep it silent, so the port is surely dead.
        let silent = std::net::UdpSocket::bind(any_port()).unwrap();
        let addr = silent.local_addr().unwrap();
        let client = Node::client_only(&ids[0]).unwrap();
        let error = client.connect(addr).await.unwrap_err().to_string();
        assert!(
            error.contains(&format!("timed out connecting to {addr}")),
            "{error}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_reader_stalls_the_writer() {
    const BATCH_BYTES: usize = 64 << 10;
    const TOTAL_BYTES: usize = 64 << 20;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let ids = cluster(dir.path(), &["a", "b"]);
        let server = Node::bind(any_port(), &ids[0]).unwrap();
        let client = Node::bind(any_port(), &ids[1]).unwrap();
        let addr = server.local_addr().unwrap();
        let (resume_tx, resume_rx) = tokio::sync::oneshot::channel::<()>();

        let served = tokio::spawn(async move {
            let conn = accept_incoming(server.accept().await.unwrap())
                .await
                .unwrap();
            let (_, mut reader) = accept_channel(conn.accept_uni().await.unwrap())
                .await
                .unwrap();
            resume_rx.await.unwrap();
            let mut bytes = 0;
            while let Some(frame) = reader.next().await.unwrap() {
                if let Frame::Batch(batch) = frame {
                    bytes += batch.len();
                }
            }
            bytes
        });

        let conn = client.connect(addr).await.unwrap();
        let header = ChannelHeader {
            job: "j".into(),
            attempt: 0,
            channel: 0,
        };
        let mut writer = open_channel(&conn, &header).await.unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let counter = written.clone();
        let writing = tokio::spawn(async move {
            let batch = Frame::Batch(vec![7; BATCH_BYTES]);
            for _ in 0..TOTAL_BYTES / BATCH_BYTES {
                writer.write(&batch).await.unwrap();
                counter.fetch_add(BATCH_BYTES, Ordering::Relaxed);
            }
            writer.finish().await.unwrap();
            conn
        });

        tokio::time::sleep(Duration::from_secs(2)).await;
        let stalled_at = written.load(Ordering::Relaxed);
        assert!(
            !writing.is_finished(),
            "writer finished with the reader paused"
        );
        assert!(stalled_at < TOTAL_BYTES, "wrote everything while paused");
        // Bounded by the windows: stream window plus the writer's own buffer.
        assert!(
            stalled_at <= 4 << 20,
            "{stalled_at} bytes went out with the reader paused"
        );

        resume_tx.send(()).unwrap();
        let conn = writing.await.unwrap();
        assert_eq!(served.await.unwrap(), TOTAL_BYTES);
        conn.close(0u32.into(), b"done");
    })
    .await
    .expect("test timed out");
}

/// A connected pair of nodes from one cluster: (client side, server side).
async fn connected_pair(dir: &Path) -> (quinn::Connection, quinn::Connection, Node, Node) {
    let ids = cluster(dir, &["a", "b"]);
    let server = Node::bind(any_port(), &ids[0]).unwrap();
    let client = Node::bind(any_port(), &ids[1]).unwrap();
    let addr = server.local_addr().unwrap();
    let accepting = {
        let server = server.clone();
        tokio::spawn(async move {
            accept_incoming(server.accept().await.unwrap())
                .await
                .unwrap()
        })
    };
    let conn = client.connect(addr).await.unwrap();
    (conn, accepting.await.unwrap(), client, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_on_streams_are_typed_errors() {
    use weir_net::NetError;
    use weir_net::frame::FrameError;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let (client, server, _a, _b) = connected_pair(dir.path()).await;
        let header = ChannelHeader {
            job: "j".into(),
            attempt: 0,
            channel: 0,
        };

        // A frame length over the maximum.
        let mut writer = open_channel(&client, &header).await.unwrap();
        writer
            .stream_mut()
            .write_all(&u32::MAX.to_le_bytes())
            .await
            .unwrap();
        writer.finish().await.unwrap();
        let (_, mut reader) = accept_channel(server.accept_uni().await.unwrap())
            .await
            .unwrap();
        let error = reader.next().await.unwrap_err();
        assert!(
            matches!(error, NetError::Frame(FrameError::TooLong { .. })),
            "{error}"
        );

        // A stream that ends inside a frame, small and large.
        for archive_bytes in [100u32, 100_000] {
            let mut writer = open_channel(&client, &header).await.unwrap();
            let send = writer.stream_mut();
            send.write_all(&archive_bytes.to_le_bytes()).await.unwrap();
            send.write_all(&[0; 50]).await.unwrap();
            writer.finish().await.unwrap();
            let (_, mut reader) = accept_channel(server.accept_uni().await.unwrap())
                .await
                .unwrap();
            let error = reader.next().await.unwrap_err();
            assert!(matches!(error, NetError::Truncated { .. }), "{error}");
        }

        // Garbage of a plausible length.
        let mut writer = open_channel(&client, &header).await.unwrap();
        let send = writer.stream_mut();
        send.write_all(&32u32.to_le_bytes()).await.unwrap();
        send.write_all(&[0xFF; 32]).await.unwrap();
        writer.finish().await.unwrap();
        let (_, mut reader) = accept_channel(server.accept_uni().await.unwrap())
            .await
            .unwrap();
        let error = reader.next().await.unwrap_err();
        assert!(
            matches!(error, NetError::Frame(FrameError::Invalid(_))),
            "{error}"
        );

        // A channel header over 4 KiB, and one that is not JSON.
        for (len, body) in [(5000u32, vec![b'x'; 10]), (3, b"{{{".to_vec())] {
            let mut send = client.open_uni().await.unwrap();
            send.write_all(&len.to_le_bytes()).await.unwrap();
            send.write_all(&body).await.unwrap();
            send.finish().unwrap();
            let error = accept_channel(server.accept_uni().await.unwrap())
                .await
                .err()
                .unwrap();
            assert!(
                matches!(error, NetError::TooLong { .. } | NetError::Json { .. }),
                "{error}"
            );
        }

        // On a stream of many messages, a message over the bound or one that
        // is not JSON is refused on its own and the next one still arrives;
        // a message over the bound is refused before anything is sent.
        let (mut send, _recv) = client.open_bi().await.unwrap();
        let huge = "x".repeat(CONTROL_MESSAGE_BYTES_MAX + 1);
        let error = write_message(&mut send, &huge).await.unwrap_err();
        assert!(matches!(error, NetError::TooLong { .. }), "{error}");
        let oversized = (CONTROL_MESSAGE_BYTES_MAX + 10) as u32;
        // Written beside the reader: flow control stops a writer far ahead.
        let writer = tokio::spawn(async move {
            send.write_all(&oversized.to_le_bytes()).await.unwrap();
            send.write_all(&vec![b'"'; oversized as usize])
                .await
                .unwrap();
            send.write_all(&3u32.to_le_bytes()).await.unwrap();
            send.write_all(b"{{{").await.unwrap();
            write_message(&mut send, &"still here").await.unwrap();
            send.finish().unwrap();
            send
        });
        let (_send, mut recv) = server.accept_bi().await.unwrap();
        match read_control_message::<String>(&mut recv).await.unwrap() {
            Some(Received::Refused(NetError::TooLong { bytes, .. })) => {
                assert_eq!(bytes, oversized as usize)
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_control_message::<String>(&mut recv).await.unwrap(),
            Some(Received::Refused(NetError::Json { .. }))
        ));
        match read_control_message::<String>(&mut recv).await.unwrap() {
            Some(Received::Message(m)) => assert_eq!(m, "still here"),
            other => panic!("{other:?}"),
        }
        assert!(
            read_control_message::<String>(&mut recv)
                .await
                .unwrap()
                .is_none()
        );
        drop(writer.await.unwrap());

        // A control message over the bound is refused before any allocation.
        let (mut send, _recv) = client.open_bi().await.unwrap();
        send.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        send.finish().unwrap();
        let (_send, mut recv) = server.accept_bi().await.unwrap();
        let error = read_message::<serde_json::Value>(&mut recv)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("longer than the maximum"),
            "{error}"
        );
        client.close(0u32.into(), b"done");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_name_node_and_role() {
    use weir_net::{Role, check_peer};
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let ids = cluster(dir.path(), &["coordinator", "worker-1", "worker-2"]);
        // A worker answering where the coordinator is expected is refused.
        let impostor = Node::bind(any_port(), &ids[2]).unwrap();
        let addr = impostor.local_addr().unwrap();
        let served = spawn_recording_server(impostor);
        let client = Node::client_only(&ids[1]).unwrap();
        let error = client
            .connect_to(addr, Role::Coordinator)
            .await
            .unwrap_err()
            .to_string();
        eprintln!("{error}");
        assert!(
            error.contains(&format!("{addr} is not the coordinator: its certificate does not name coordinator.weir")),
            "{error}"
        );
        let _ = served.await;

        // The coordinator is accepted, and sees whose certificate dialed.
        let server = Node::bind(any_port(), &ids[0]).unwrap();
        let addr = server.local_addr().unwrap();
        let accepting = tokio::spawn(async move {
            accept_incoming(server.accept().await.unwrap()).await.unwrap()
        });
        let _conn = client.connect_to(addr, Role::Coordinator).await.unwrap();
        let conn = accepting.await.unwrap();
        check_peer(&conn, Role::Worker, "worker-1").unwrap();
        let error = check_peer(&conn, Role::Worker, "worker-2").unwrap_err().to_string();
        assert_eq!(
            error,
            "its certificate is not the worker certificate of `worker-2` (it does not name worker-2.worker.weir)"
        );
        let error = check_peer(&conn, Role::Coordinator, "worker-1").unwrap_err().to_string();
        assert!(error.contains("not the coordinator certificate"), "{error}");
    })
    .await
    .expect("test timed out");
}
