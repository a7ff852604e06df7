//! Static files (`wasmops serve --web DIR`): a browser bundle written by
//! `wasmops web`, served beside the predict API with the MIME types a
//! browser insists on (`application/wasm` for streaming compilation,
//! `text/javascript` for module workers), cross-origin isolated (COOP
//! `same-origin`, COEP `require-corp`: a page's `performance.now()` then
//! resolves 5 µs instead of 100 µs, and `SharedArrayBuffer` is there). Only
//! files under the directory, never dot-files, never through a symlink that
//! leads out of it.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// The MIME type of a bundle file, by extension.
pub fn mime_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file a request path names under `root` (canonical), if it may be served.
async fn resolve(root: &Path, uri_path: &str) -> Option<PathBuf> {
    let rel = uri_path.trim_start_matches('/');
    let rel = if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}index.html")
    } else {
        rel.to_string()
    };
    // Percent escapes, backslashes and dot segments are refused, not decoded:
    // a bundle's own names need none of them.
    if rel
        .split('/')
        .any(|part| part.is_empty() || part.starts_with('.'))
        || rel.contains(['%', '\\', '\0'])
    {
        return None;
    }
    let path = tokio::fs::canonicalize(root.join(rel)).await.ok()?;
    path.starts_with(root).then_some(path)
}

pub(crate) async fn serve(
    State(root): State<std::sync::Arc<PathBuf>>,
    method: Method,
    uri: Uri,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return crate::failure(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not served here"),
        );
    }
    let Some(path) = resolve(&root, uri.path()).await else {
        return crate::failure(
            StatusCode::NOT_FOUND,
            format!("no such file: {}", uri.path()),
        );
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, mime_type(&path)),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (
                    header::HeaderName::from_static("cross-origin-opener-policy"),
                    "same-origin",
                ),
                (
                    header::HeaderName::from_static("cross-origin-embedder-policy"),
                    "require-corp",
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => crate::failure(
            StatusCode::NOT_FOUND,
            format!("{} is a directory", uri.path()),
        ),
        Err(e) => {
            tracing::error!("cannot read {}: {e}", path.display());
            crate::failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the file".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_only_what_is_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = tokio::fs::canonicalize(dir.path()).await.unwrap();
        std::fs::create_dir(root.join("model")).unwrap();
        std::fs::write(root.join("index.html"), "<p>").unwrap();
        std::fs::write(root.join("model/model.js"), "").unwrap();
        std::fs::write(root.join(".secret"), "").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("out.txt")).unwrap();
        assert_eq!(resolve(&root, "/").await, Some(root.join("index.html")));
        assert_eq!(
            resolve(&root, "/model/model.js").await,
            Some(root.join("model/model.js"))
        );
        for bad in [
            "/.secret",
            "/../etc/passwd",
            "/model/../index.html",
            "/%2e%2e/x",
            "/out.txt",
            "//x",
            "/nope.js",
        ] {
            assert_eq!(resolve(&root, bad).await, None, "{bad}");
        }
        assert_eq!(mime_type(Path::new("a/verifier.wasm")), "application/wasm");
        assert_eq!(
            mime_type(Path::new("worker.js")),
            "text/javascript; charset=utf-8"
        );
    }
}
