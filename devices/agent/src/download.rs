//! Artifact downloads from the coordinator: size-capped, resumable (`Range`
//! from the end of a `.part` file), retried with backoff, timed out on stalls
//! rather than on totals, and sha256-checked (streamed, never whole in
//! memory) before the file appears under its final name.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Why a download stopped.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Worth another try: the network, a stall, a 5xx, 408 or 429. The bytes
    /// received so far stay in the `.part` file and the next try resumes.
    #[error("{0}")]
    Transient(String),
    /// Trying again gives the same answer: a 4xx, a size over the cap, bytes
    /// that do not hash to what was asked for.
    #[error("{0}")]
    Refused(String),
    /// The device's own disk.
    #[error("{what}: {source}")]
    Disk {
        what: String,
        source: std::io::Error,
    },
}

impl DownloadError {
    pub fn retryable(&self) -> bool {
        matches!(self, DownloadError::Transient(_))
    }
}

/// How often and how patiently to try.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    /// Eight tries over about two minutes: long enough to ride out a
    /// coordinator restart (~5 s here) or a flaky uplink, short enough that a
    /// rollout's install timeout (default 300 s) sees the failure.
    fn default() -> Retry {
        Retry {
            attempts: 8,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// The HTTP client downloads use: a connect timeout and a stall timeout (no
/// byte for `stall`), but no limit on a whole transfer, which on a slow link
/// may rightly take long.
pub fn client(tls: &wasmops_tls::ClientTls, stall: Duration) -> reqwest::Result<reqwest::Client> {
    tls.http()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(stall)
        .build()
}

/// One artifact to fetch.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The coordinator's base URL.
    pub coordinator: &'a str,
    /// The device's credential.
    pub token: &'a str,
    pub sha256: &'a str,
    /// The size announced; over `max_bytes` it is refused before a byte moves.
    pub size: u64,
    pub max_bytes: u64,
    /// The final path; bytes gather in its `.part` sibling until they hash right.
    pub out: &'a Path,
}

/// [`download`] tried up to `retry.attempts` times while failures are transient,
/// each try resuming where the last one stopped.
pub async fn download_with_retries(
    http: &reqwest::Client,
    r: &Request<'_>,
    retry: Retry,
) -> Result<(), DownloadError> {
    let mut delay = retry.first_delay;
    let mut attempt = 1;
    loop {
        match download(http, r).await {
            Ok(_) => return Ok(()),
            Err(e) if e.retryable() && attempt < retry.attempts => {
                tracing::warn!(
                    "download of {} (try {attempt} of {}): {e}; retrying in {delay:?}",
                    r.sha256,
                    retry.attempts
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(retry.max_delay);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Fetches the artifact `r` names into `r.out`. Returns the offset it
/// resumed from (0 for a fresh download).
pub async fn download(http: &reqwest::Client, r: &Request<'_>) -> Result<u64, DownloadError> {
    let Request {
        coordinator,
        token,
        sha256,
        size,
        max_bytes,
        out,
    } = *r;
    use DownloadError::*;
    if size > max_bytes {
        return Err(Refused(format!(
            "artifact {sha256} is {size} bytes, more than the {max_bytes} allowed"
        )));
    }
    let part = out.with_extension("part");
    let disk = |what: &str| {
        let what = format!("{what} {}", part.display());
        move |source| Disk { what, source }
    };
    let have = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let have = if have > size { 0 } else { have };
    if have < size {
        let url = format!(
            "{}/v1/artifacts/{sha256}",
            coordinator.trim_end_matches('/')
        );
        let mut req = http.get(&url).bearer_auth(token);
        if have > 0 {
            req = req.header("range", format!("bytes={have}-"));
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| Transient(format!("cannot reach {url}: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let message = format!(
                "{status} from {url}: {}",
                body["error"].as_str().unwrap_or("(no message)")
            );
            return Err(
                if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                    Transient(message)
                } else {
                    Refused(message)
                },
            );
        }
        let append = have > 0 && status == reqwest::StatusCode::PARTIAL_CONTENT;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&part)
            .await
            .map_err(disk("cannot open"))?;
        let mut written = if append { have } else { 0 };
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    // Keep what arrived: the next try asks for the rest.
                    let _ = file.flush().await;
                    return Err(Transient(format!(
                        "download of {sha256} interrupted at {written} of {size} bytes: {e}"
                    )));
                }
            };
            written += chunk.len() as u64;
            if written > size {
                drop(file);
                let _ = tokio::fs::remove_file(&part).await;
                return Err(Refused(format!(
                    "the coordinator sent more than the {size} bytes announced for {sha256}"
                )));
            }
            file.write_all(&chunk).await.map_err(disk("cannot write"))?;
        }
        file.sync_all().await.map_err(disk("cannot sync"))?;
        if written < size {
            return Err(Transient(format!(
                "the coordinator ended the download of {sha256} at {written} of {size} bytes"
            )));
        }
    }
    let got = {
        let part = part.clone();
        tokio::task::spawn_blocking(move || file_sha256(&part))
            .await
            .map_err(|e| Transient(format!("hashing task: {e}")))?
            .map_err(disk("cannot read"))?
    };
    if got != sha256 {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(Refused(format!(
            "downloaded artifact has sha256 {got}, expected {sha256}; the partial file was discarded"
        )));
    }
    tokio::fs::rename(&part, out)
        .await
        .map_err(disk("cannot rename"))?;
    Ok(have)
}

/// SHA-256 of a file, read in 64 KiB pieces.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// How the test server answers its n-th request.
    #[derive(Clone, Copy)]
    enum Answer {
        /// Send the first `n` bytes of what was asked for, then close.
        CutAfter(usize),
        /// Send `n` bytes, then say nothing more (a stalled link).
        StallAfter(usize),
        /// 503 Service Unavailable.
        Unavailable,
        /// 404 Not Found.
        Missing,
        /// Everything asked for (honouring `Range`).
        Whole,
    }

    /// A raw HTTP/1.1 server for `body`; records each request's `Range` start.
    async fn server(body: Vec<u8>, answers: Vec<Answer>) -> (String, Arc<Mutex<Vec<u64>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let ranges = Arc::new(Mutex::new(vec![]));
        let seen = ranges.clone();
        tokio::spawn(async move {
            let body = Arc::new(body);
            for answer in answers.into_iter().chain(std::iter::repeat(Answer::Whole)) {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(answer_one(s, answer, body.clone(), seen.clone()));
            }
        });
        (url, ranges)
    }

    async fn answer_one(
        mut s: tokio::net::TcpStream,
        answer: Answer,
        body: Arc<Vec<u8>>,
        seen: Arc<Mutex<Vec<u64>>>,
    ) {
        let mut head = vec![];
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        let from: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("range: bytes="))
            .map(|r| r.trim_end_matches('-').parse().unwrap())
            .unwrap_or(0);
        seen.lock().unwrap().push(from);
        let rest = &body[from as usize..];
        let status = if from > 0 {
            "206 Partial Content"
        } else {
            "200 OK"
        };
        let header = |status: &str, len: usize| {
            format!("HTTP/1.1 {status}\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n")
        };
        match answer {
            Answer::Unavailable | Answer::Missing => {
                let (st, msg) = match answer {
                    Answer::Unavailable => ("503 Service Unavailable", "{\"error\":\"busy\"}"),
                    _ => ("404 Not Found", "{\"error\":\"no such artifact\"}"),
                };
                let _ = s.write_all(header(st, msg.len()).as_bytes()).await;
                let _ = s.write_all(msg.as_bytes()).await;
            }
            Answer::CutAfter(n) | Answer::StallAfter(n) => {
                let _ = s.write_all(header(status, rest.len()).as_bytes()).await;
                let _ = s.write_all(&rest[..n.min(rest.len())]).await;
                let _ = s.flush().await;
                if matches!(answer, Answer::StallAfter(_)) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            }
            Answer::Whole => {
                let _ = s.write_all(header(status, rest.len()).as_bytes()).await;
                let _ = s.write_all(rest).await;
            }
        }
    }

    fn req<'a>(
        coordinator: &'a str,
        sha256: &'a str,
        size: u64,
        max_bytes: u64,
        out: &'a Path,
    ) -> Request<'a> {
        Request {
            coordinator,
            token: "t",
            sha256,
            size,
            max_bytes,
            out,
        }
    }

    fn quick() -> Retry {
        Retry {
            attempts: 4,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        }
    }

    fn artifact() -> (Vec<u8>, String) {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sha = hex::encode(Sha256::digest(&body));
        (body, sha)
    }

    #[tokio::test]
    async fn a_cut_and_a_stalled_transfer_resume_where_they_stopped() {
        let (body, sha) = artifact();
        let (url, ranges) = server(
            body.clone(),
            vec![
                Answer::CutAfter(50_000),
                Answer::Unavailable,
                Answer::StallAfter(30_000),
                Answer::Whole,
            ],
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join(format!("{sha}.wasm"));
        let http = client(
            &wasmops_tls::ClientTls::new(None).unwrap(),
            Duration::from_millis(300),
        )
        .unwrap();
        let n = body.len() as u64;
        download_with_retries(&http, &req(&url, &sha, n, n, &out), quick())
            .await
            .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), body);
        assert!(!out.with_extension("part").exists());
        // Each try asked only for what was missing.
        assert_eq!(*ranges.lock().unwrap(), vec![0, 50_000, 50_000, 80_000]);
    }

    #[tokio::test]
    async fn refusals_are_not_retried_and_bad_bytes_are_not_kept() {
        let (body, sha) = artifact();
        let dir = tempfile::tempdir().unwrap();
        let http = client(
            &wasmops_tls::ClientTls::new(None).unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        let n = body.len() as u64;

        let (url, ranges) = server(body.clone(), vec![Answer::Missing]).await;
        let out = dir.path().join("missing.wasm");
        let e = download_with_retries(&http, &req(&url, &sha, n, n, &out), quick())
            .await
            .unwrap_err();
        assert!(
            !e.retryable() && e.to_string().contains("no such artifact"),
            "{e}"
        );
        assert_eq!(ranges.lock().unwrap().len(), 1, "a 404 is asked once");

        // The server sends other bytes than the hash names: refused, nothing kept.
        let other = "0".repeat(64);
        let (url, _) = server(body.clone(), vec![]).await;
        let out = dir.path().join(format!("{other}.wasm"));
        let e = download_with_retries(&http, &req(&url, &other, n, n, &out), quick())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("expected 000"), "{e}");
        assert!(!out.exists() && !out.with_extension("part").exists());

        // Over the device's cap: refused before any request.
        let e = download(&http, &req(&url, &sha, n, n - 1, &out))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("more than the"), "{e}");

        // Always down: gives up after the configured tries, keeping the part.
        let (url, ranges) = server(body, vec![Answer::CutAfter(10); 4]).await;
        let out = dir.path().join(format!("{sha}.wasm"));
        let e = download_with_retries(&http, &req(&url, &sha, n, n, &out), quick())
            .await
            .unwrap_err();
        assert!(e.retryable(), "{e}");
        assert_eq!(ranges.lock().unwrap().len(), 4);
        assert_eq!(
            std::fs::metadata(out.with_extension("part")).unwrap().len(),
            40
        );
    }
}
