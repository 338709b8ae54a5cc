//! A real Kafka-protocol broker for one test or bench: noida-db (installed
//! by scripts/setup-test-systems.sh) on a free loopback port in its own
//! temp directory, in its own process group, which is killed whole when the
//! guard drops (also on panic). Plus the few client calls the tests need:
//! topics (created with `retention.ms = -1`, since noida-db deletes records
//! by their own timestamps), producing, and reading a topic back with a
//! `read_committed` consumer (with fetch limits raised: noida-db ignores
//! them).
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// How long a broker may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(60);

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Broker {
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut broker = Broker {
            child: None,
            port: free_port(),
            data: dir.path().join("data"),
            _dir: dir,
        };
        broker.launch();
        broker
    }

    pub fn servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self._dir.path().join("broker.log"))
            .expect("broker log");
        let child = Command::new("noida-db")
            .args(["start", "--only", "kafka", "--host", "127.0.0.1"])
            .arg("--kafka-port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start noida-db ({e}); run scripts/setup-test-systems.sh")
            });
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("noida-db exited with {status}:\n{}", self.log());
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "noida-db did not listen within {START_LIMIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("broker.log")).unwrap_or_default()
    }

    fn kill_group(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on a negative pid signals that process group
            // only (not `/bin/kill`, whose argument parsing has turned a
            // group into -1, every process, when `--` was missing).
            if let Ok(pid) = i32::try_from(child.id())
                && pid > 1
            {
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = child.wait();
        }
    }

    /// SIGKILLs the broker (its whole process group) and starts it again
    /// on the same port and data directory after `down`.
    pub fn restart(&mut self, down: Duration) {
        self.kill_group();
        std::thread::sleep(down);
        self.launch();
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.servers())
            .set("receive.message.max.bytes", "1000000000")
            .set("fetch.max.bytes", "999999000");
        c
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.config().create().expect("admin client")
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin = self.admin();
        let new =
            NewTopic::new(topic, partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1");
        let results = Self::block_on(admin.create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("create topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
        }
    }

    pub fn add_partitions(&self, topic: &str, total: usize) {
        let admin = self.admin();
        let results = Self::block_on(admin.create_partitions(
            [&NewPartitions::new(topic, total)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("create partitions");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot add partitions to {t}: {e}"));
        }
    }

    /// Produces `(partition, key, value, timestamp)` records and waits for
    /// every acknowledgement.
    pub fn produce(&self, topic: &str, records: &[(i32, Option<String>, String, Option<i64>)]) {
        let producer: BaseProducer = self
            .config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        for (partition, key, value, ts) in records {
            let mut record = BaseRecord::to(topic).partition(*partition).payload(value);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(ts) = ts {
                record = record.timestamp(*ts);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(_), back)) => {
                        producer.poll(Duration::from_millis(10));
                        record = back;
                    }
                    Err((e, _)) => panic!("cannot produce to {topic}: {e}"),
                }
            }
        }
        producer.flush(Duration::from_secs(60)).expect("flush");
    }

    /// Commits `offset` for `group` on partition 0 of `topic`.
    pub fn commit_offset(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .unwrap();
        consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .expect("commit");
    }

    /// The committed offsets of `group` on `partitions` of `topic`.
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(30))
            .expect("committed offsets");
        (0..partitions)
            .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            })
            .collect()
    }

    /// Every committed record of `topic` as (partition, key, value), read
    /// to the current end of each partition with `read_committed`.
    pub fn read_committed(&self, topic: &str) -> Vec<(i32, Vec<u8>, String)> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "weir-test-reader")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .expect("metadata");
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        let mut at_end = std::collections::HashSet::new();
        let mut out = Vec::new();
        let started = Instant::now();
        while at_end.len() < partitions.len() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "reading {topic} back does not end"
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    out.push((
                        m.partition(),
                        m.key().unwrap_or_default().to_vec(),
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    ));
                }
            }
        }
        out
    }

    /// The committed values of `topic`, sorted.
    pub fn values(&self, topic: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .read_committed(topic)
            .into_iter()
            .map(|r| r.2)
            .collect();
        v.sort();
        v
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill_group();
    }
}
