//! A client of the coordinator's REST API, for the CLI (blocking). It
//! speaks HTTPS trusting only the cluster CA (`ca.pem` from `weir cluster
//! init`); plain `http://` URLs work only against a coordinator started
//! with `--insecure-http`.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::de::DeserializeOwned;

use crate::artifacts::ArtifactInfo;
use crate::jobs::JobInfo;
use crate::rest::SubmitRequest;

pub struct Client {
    api: String,
    token: String,
    agent: ureq::Agent,
}

/// An HTTP agent that trusts only the cluster CA in `ca_file` for HTTPS.
pub fn agent(ca_file: &Path, timeout: Duration) -> anyhow::Result<ureq::Agent> {
    let pem = std::fs::read(ca_file).with_context(|| {
        format!(
            "cannot read the cluster CA {} (pass --ca or set WEIR_CA_FILE; `weir cluster init` writes ca.pem beside the token)",
            ca_file.display()
        )
    })?;
    let ca = ureq::tls::Certificate::from_pem(&pem)
        .with_context(|| format!("{}: not a PEM certificate", ca_file.display()))?;
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .build();
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(tls)
        .build()
        .into())
}

impl Client {
    /// A client of the API at `api` (`https://...`) trusting the CA in `ca_file`.
    pub fn new(api: &str, token: &str, ca_file: &Path) -> anyhow::Result<Client> {
        Ok(Client {
            api: api.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            agent: agent(ca_file, Duration::from_secs(3600))?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn read<T: DeserializeOwned>(
        &self,
        url: &str,
        response: ureq::http::Response<ureq::Body>,
    ) -> anyhow::Result<T> {
        let status = response.status();
        let mut body = response.into_body();
        let text = body
            .read_to_string()
            .with_context(|| format!("{url}: cannot read the reply"))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or(text);
            bail!("the coordinator refused ({status}): {message}");
        }
        serde_json::from_str(&text).with_context(|| format!("{url}: unexpected reply"))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path);
        let response = self
            .agent
            .get(&url)
            .header("Authorization", &self.auth())
            .call()
            .with_context(|| format!("cannot reach the coordinator at {}", self.api))?;
        self.read(&url, response)
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<T> {
        let url = self.url(path);
        let response = self
            .agent
            .post(&url)
            .header("Authorization", &self.auth())
            .send_json(body)
            .with_context(|| format!("cannot reach the coordinator at {}", self.api))?;
        self.read(&url, response)
    }

    /// Uploads `path` under `name`; `progress` gets the bytes sent so far.
    pub fn upload(
        &self,
        name: &str,
        path: &Path,
        progress: impl FnMut(u64) + 'static,
    ) -> anyhow::Result<ArtifactInfo> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let reader = Progress {
            inner: file,
            sent: 0,
            progress,
        };
        let url = format!("{}?name={}", self.url("/artifacts"), percent_encode(name));
        let response = self
            .agent
            .post(&url)
            .header("Authorization", &self.auth())
            .header("Content-Length", &len.to_string())
            .send(ureq::SendBody::from_owned_reader(reader))
            .with_context(|| format!("cannot reach the coordinator at {}", self.api))?;
        self.read(&url, response)
            .with_context(|| format!("uploading {}", path.display()))
    }

    pub fn submit(&self, request: &SubmitRequest) -> anyhow::Result<String> {
        let reply: serde_json::Value = self.post("/jobs", &serde_json::to_value(request)?)?;
        Ok(reply["job"].as_str().unwrap_or_default().to_string())
    }

    pub fn jobs(&self) -> anyhow::Result<Vec<JobInfo>> {
        self.get("/jobs")
    }

    pub fn job(&self, job: &str) -> anyhow::Result<JobInfo> {
        self.get(&format!("/jobs/{}", percent_encode(job)))
    }

    /// Any GET route's reply as raw JSON (`weir jobs --json` prints it as
    /// the coordinator sent it).
    pub fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.get(path)
    }

    /// `GET /jobs/{job}/metrics`: the job's metrics as its workers last reported them.
    pub fn job_metrics(&self, job: &str) -> anyhow::Result<serde_json::Value> {
        self.get(&format!("/jobs/{}/metrics", percent_encode(job)))
    }

    pub fn workers(&self) -> anyhow::Result<Vec<crate::cluster::WorkerInfo>> {
        self.get("/workers")
    }

    /// Takes a savepoint (and stops the job with `stop`); returns its path.
    pub fn savepoint(
        &self,
        job: &str,
        dir: Option<&Path>,
        stop: bool,
    ) -> anyhow::Result<std::path::PathBuf> {
        let action = if stop { "stop" } else { "savepoints" };
        // The coordinator takes absolute directories only: a relative one
        // means this shell's working directory.
        let dir = dir
            .map(std::path::absolute)
            .transpose()
            .context("cannot resolve the savepoint directory")?;
        let reply: serde_json::Value = self.post(
            &format!("/jobs/{}/{action}", percent_encode(job)),
            &serde_json::json!({ "dir": dir }),
        )?;
        Ok(reply["path"].as_str().unwrap_or_default().into())
    }

    /// Sends a command (`upgrade`, `rescale`, ...) to a job and returns its answer.
    pub fn command(
        &self,
        job: &str,
        action: &str,
        body: &weir_runtime::master::command::CommandBody,
    ) -> anyhow::Result<weir_runtime::master::command::CommandReply> {
        self.post(
            &format!("/jobs/{}/{action}", percent_encode(job)),
            &serde_json::to_value(body)?,
        )
    }

    pub fn cancel(&self, job: &str) -> anyhow::Result<()> {
        let _: serde_json::Value = self.post(
            &format!("/jobs/{}/cancel", percent_encode(job)),
            &serde_json::json!({}),
        )?;
        Ok(())
    }
}

struct Progress<R, F> {
    inner: R,
    sent: u64,
    progress: F,
}

impl<R: Read, F: FnMut(u64)> Read for Progress<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        (self.progress)(self.sent);
        Ok(n)
    }
}

/// Escapes everything but unreserved URL characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
