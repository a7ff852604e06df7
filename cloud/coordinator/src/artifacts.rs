//! Content-addressed storage on any `object_store` backend (the local file
//! system by default, `memory:///` for tests, cloud stores by URL) for
//! components and for health-probe samples, which devices fetch over HTTP
//! rather than inside their MQTT desired state.

use std::ops::Range;
use std::sync::Arc;

use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, PutPayload};
use wasmops_protocol::device::ArtifactRef;

use crate::error::CoordinatorError;

pub struct Artifacts {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

/// Which bytes: components and probe samples (devices fetch them), or
/// datasets (only data scientists and workers read them, so they live apart
/// and `GET /v1/artifacts` cannot serve them whatever sha256 is asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Components,
    Datasets,
}

fn key(prefix: &ObjectPath, space: Space, sha256: &str) -> ObjectPath {
    match space {
        Space::Components => prefix.child("sha256").child(format!("{sha256}.wasm")),
        Space::Datasets => prefix.child("datasets").child(format!("{sha256}.data")),
    }
}

pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Artifacts {
    /// `url`: an object_store URL; `None` uses `default_dir` on the local disk.
    pub fn open(url: Option<&str>, default_dir: &std::path::Path) -> anyhow::Result<Artifacts> {
        let (store, prefix): (Arc<dyn ObjectStore>, ObjectPath) = match url {
            None => {
                std::fs::create_dir_all(default_dir)?;
                (
                    Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
                        default_dir,
                    )?),
                    ObjectPath::default(),
                )
            }
            Some(u) => {
                let parsed = url::Url::parse(u)
                    .map_err(|e| anyhow::anyhow!("bad --artifacts URL `{u}`: {e}"))?;
                if parsed.scheme() == "file" {
                    std::fs::create_dir_all(parsed.path())?;
                }
                let (store, prefix) = object_store::parse_url(&parsed)
                    .map_err(|e| anyhow::anyhow!("unsupported --artifacts URL `{u}`: {e}"))?;
                (Arc::from(store), prefix)
            }
        };
        Ok(Artifacts { store, prefix })
    }

    /// Stores `bytes` (shared, not copied) under their hash.
    pub async fn put(&self, sha256: &str, bytes: bytes::Bytes) -> object_store::Result<()> {
        self.put_in(Space::Components, sha256, bytes).await
    }

    pub async fn put_in(
        &self,
        space: Space,
        sha256: &str,
        bytes: bytes::Bytes,
    ) -> object_store::Result<()> {
        self.store
            .put(&key(&self.prefix, space, sha256), PutPayload::from(bytes))
            .await
            .map(drop)
    }

    /// A component's bytes, whole (a trust check reads every section).
    pub async fn read(&self, sha256: &str) -> object_store::Result<bytes::Bytes> {
        self.store
            .get(&key(&self.prefix, Space::Components, sha256))
            .await?
            .bytes()
            .await
    }

    pub async fn size(&self, sha256: &str) -> object_store::Result<u64> {
        self.size_in(Space::Components, sha256).await
    }

    pub async fn size_in(&self, space: Space, sha256: &str) -> object_store::Result<u64> {
        Ok(self
            .store
            .head(&key(&self.prefix, space, sha256))
            .await?
            .size)
    }

    /// The bytes in `range`, as a stream of chunks read as they are sent
    /// (never the whole range in memory).
    pub async fn stream_range(
        &self,
        sha256: &str,
        range: Range<u64>,
    ) -> object_store::Result<BoxStream<'static, object_store::Result<bytes::Bytes>>> {
        self.stream_range_in(Space::Components, sha256, range).await
    }

    pub async fn stream_range_in(
        &self,
        space: Space,
        sha256: &str,
        range: Range<u64>,
    ) -> object_store::Result<BoxStream<'static, object_store::Result<bytes::Bytes>>> {
        let options = GetOptions {
            range: Some(range.into()),
            ..Default::default()
        };
        Ok(self
            .store
            .get_opts(&key(&self.prefix, space, sha256), options)
            .await?
            .into_stream())
    }
}

/// A health-probe sample as an artifact: its reference and its JSON. Refused
/// (400, naming the limit) over [`MAX_PROBE_BYTES`] or when it is not
/// `{"inputs": [...]}`.
///
/// [`MAX_PROBE_BYTES`]: wasmops_protocol::MAX_PROBE_BYTES
pub fn probe_artifact(
    probe: &serde_json::Value,
) -> Result<(ArtifactRef, bytes::Bytes), CoordinatorError> {
    if !probe.get("inputs").is_some_and(|i| i.is_array()) {
        return Err(CoordinatorError::BadRequest(
            "a probe sample must be {\"inputs\": [...]}".into(),
        ));
    }
    let json = serde_json::to_vec(probe).expect("a JSON value serialises");
    let limit = wasmops_protocol::MAX_PROBE_BYTES;
    if json.len() > limit {
        return Err(CoordinatorError::BadRequest(format!(
            "the probe sample is {} bytes; at most {limit} are accepted (use fewer rows)",
            json.len()
        )));
    }
    let r = ArtifactRef {
        sha256: wasmops_trust::sha256_hex(&json),
        size_bytes: json.len() as u64,
    };
    Ok((r, json.into()))
}

/// Stores `probe` (if any) as an artifact; returns its reference.
pub async fn store_probe(
    c: &crate::Coordinator,
    probe: Option<&serde_json::Value>,
) -> Result<Option<ArtifactRef>, CoordinatorError> {
    let Some(probe) = probe else {
        return Ok(None);
    };
    let (r, json) = probe_artifact(probe)?;
    c.artifacts.put(&r.sha256, json).await?;
    Ok(Some(r))
}
