//! The agent's local HTTP API for the device's applications:
//! `POST /v1/predict` (the `run` JSON format) and `GET /v1/status`.

use std::sync::Arc;

use crate::agent::Agent;

pub(crate) fn local_api(agent: Arc<Agent>) -> axum::Router {
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    let json = [("content-type", "application/json")];
    axum::Router::new()
        .route(
            "/v1/predict",
            post(
                move |State(a): State<Arc<Agent>>, body: String| async move {
                    match a.serve(body).await {
                        Ok(out) => (StatusCode::OK, json, out),
                        Err(e) => (
                            StatusCode::BAD_REQUEST,
                            json,
                            serde_json::json!({"error": format!("{e:#}")}).to_string(),
                        ),
                    }
                },
            ),
        )
        .route(
            "/v1/status",
            get(|State(a): State<Arc<Agent>>| async move { axum::Json(a.status_json()) }),
        )
        .with_state(agent)
}
