//! Artifact downloads from the coordinator: size-capped, resumable (`Range`
//! from the end of a `.part` file) and sha256-checked before the file appears.

use std::path::Path;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;

/// Fetches artifact `sha256` (of `size` bytes) from `coordinator` into `out`.
/// Returns the offset it resumed from (0 for a fresh download).
pub async fn download(
    http: &reqwest::Client,
    coordinator: &str,
    token: &str,
    sha256: &str,
    size: u64,
    max_bytes: u64,
    out: &Path,
) -> Result<u64> {
    if size > max_bytes {
        bail!("artifact {sha256} is {size} bytes, more than the {max_bytes} allowed");
    }
    let part = out.with_extension("part");
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
            .with_context(|| format!("cannot reach {url}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            bail!(
                "{status} from {url}: {}",
                body["error"].as_str().unwrap_or("(no message)")
            );
        }
        let append = have > 0 && resp.status() == reqwest::StatusCode::PARTIAL_CONTENT;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&part)
            .await?;
        let mut written = if append { have } else { 0 };
        while let Some(chunk) = resp
            .chunk()
            .await
            .context("download interrupted; it resumes on the next try")?
        {
            written += chunk.len() as u64;
            if written > size {
                drop(file);
                let _ = tokio::fs::remove_file(&part).await;
                bail!("the coordinator sent more than the {size} bytes announced for {sha256}");
            }
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
    }
    let bytes = tokio::fs::read(&part).await?;
    let got = wasmops_trust::sha256_hex(&bytes);
    if got != sha256 {
        tokio::fs::remove_file(&part).await?;
        bail!(
            "downloaded artifact has sha256 {got}, expected {sha256}; the partial file was discarded"
        );
    }
    tokio::fs::rename(&part, out).await?;
    Ok(have)
}
