//! Routes of the closed loop: datasets (push, production rows, versions,
//! their bytes) and runs (queue, read, cancel; and the worker's side: claim,
//! heartbeat with log lines, finish).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use wasmops_api::{ClaimRequest, DatasetPush, FromProduction, RunProgress, RunRequest, RunResult};

use super::{Api, ApiError, ApiResult, Body, allow, discard, read_upload};
use crate::artifacts::Space;
use crate::auth::Action;
use crate::error::CoordinatorError;
use crate::{datasets, runs};

pub async fn list_datasets(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(datasets::list(&c).await?).into_response())
}

/// `POST /v1/datasets/{name}?label=…`: authorised before the body is read,
/// like a component upload.
pub async fn push_dataset(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<DatasetPush>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let chunks = body.into_data_stream();
    let who = match allow(&c, &headers, Action::Train).await {
        Ok(who) => who,
        Err(e) => return Err(discard(&c, chunks, e)),
    };
    let Query(push) = match query {
        Ok(q) => q,
        Err(e) => {
            let refusal = ApiError::client(
                StatusCode::BAD_REQUEST,
                format!("a dataset push needs ?label=COLUMN[&format=csv|json][&file=NAME]: {e}"),
            );
            return Err(discard(&c, chunks, refusal));
        }
    };
    let (bytes, _) = read_upload(&c, &headers, chunks, "a dataset").await?;
    let v = datasets::push(&c, &who, &name, push, bytes).await?;
    let status = if v.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(v)).into_response())
}

pub async fn dataset_from_production(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
    Body(req): Body<FromProduction>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Train).await?;
    let v = datasets::from_production(&c, &who, &name, req).await?;
    let status = if v.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(v)).into_response())
}

pub async fn show_dataset(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(datasets::versions(&c, &name).await?).into_response())
}

pub async fn show_dataset_version(
    State(c): Api,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    let v = datasets::resolve(&c, &format!("{name}@{version}")).await?;
    Ok(Json(v).into_response())
}

/// A dataset version's file, streamed from the store.
pub async fn dataset_data(
    State(c): Api,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::ReadData).await?;
    let v = datasets::resolve(&c, &format!("{name}@{version}")).await?;
    let chunks = c
        .artifacts
        .stream_range_in(Space::Datasets, &v.sha256, 0..v.size_bytes)
        .await
        .map_err(CoordinatorError::from)?;
    let mut resp = axum::body::Body::from_stream(chunks).into_response();
    let content_type = match v.format {
        wasmops_api::DatasetFormat::Csv => "text/csv",
        wasmops_api::DatasetFormat::Json => "application/json",
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from_str(&v.size_bytes.to_string()).expect("digits"),
    );
    h.insert(
        "x-wasmops-sha256",
        HeaderValue::from_str(&v.sha256).expect("hex"),
    );
    Ok(resp)
}

#[derive(Deserialize)]
pub struct RunsQuery {
    model: Option<String>,
    limit: Option<usize>,
    before_ms: Option<i64>,
}

pub async fn list_runs(
    State(c): Api,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    let page = runs::Page {
        limit: q.limit.unwrap_or(wasmops_api::DEFAULT_RUNS_PAGE),
        before_ms: q.before_ms,
    };
    Ok(Json(runs::list(&c, q.model.as_deref(), page).await?).into_response())
}

pub async fn create_run(
    State(c): Api,
    headers: HeaderMap,
    Body(req): Body<RunRequest>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Train).await?;
    Ok((
        StatusCode::CREATED,
        Json(runs::create(&c, &who, req).await?),
    )
        .into_response())
}

pub async fn show_run(
    State(c): Api,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(runs::get(&c, &id).await?).into_response())
}

pub async fn run_logs(
    State(c): Api,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    let logs = runs::logs(&c, &id).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], logs).into_response())
}

pub async fn cancel_run(
    State(c): Api,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Train).await?;
    Ok(Json(runs::cancel(&c, &who, &id).await?).into_response())
}

pub async fn claim_run(
    State(c): Api,
    headers: HeaderMap,
    Body(req): Body<ClaimRequest>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Work).await?;
    Ok(match runs::claim(&c, &req.worker).await? {
        Some(run) => Json(run).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

pub async fn run_heartbeat(
    State(c): Api,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(p): Body<RunProgress>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Work).await?;
    runs::progress(&c, &id, &p).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn finish_run(
    State(c): Api,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(r): Body<RunResult>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Work).await?;
    Ok(Json(runs::finish(&c, &id, r).await?).into_response())
}

pub async fn show_loop(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(crate::loops::view(&c, &name).await?).into_response())
}

pub async fn set_loop(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
    Body(settings): Body<wasmops_api::LoopSettings>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Train).await?;
    Ok(Json(crate::loops::set(&c, &who, &name, settings).await?).into_response())
}

/// `POST /v1/models/{name}/loop/trigger`: a run of the model's loop now
/// (`wasmops retrain MODEL`), cool-down or not.
pub async fn trigger_loop(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Train).await?;
    match crate::loops::trigger(&c, &name, "manual", false).await? {
        Some(id) => Ok((StatusCode::CREATED, Json(runs::get(&c, &id).await?)).into_response()),
        None => Err(ApiError::client(
            StatusCode::CONFLICT,
            "no run started: not enough labelled production rows yet (see the coordinator log)",
        )),
    }
}

pub async fn approve_run(
    State(c): Api,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Deploy).await?;
    Ok(Json(crate::loops::approve(&c, &who, &id).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::super::router;
    use crate::auth::Role;

    async fn token(c: &crate::Coordinator, name: &str, role: Role) -> String {
        let mut tx = c.db.pool.begin().await.unwrap();
        let t = crate::auth::create(&mut tx, name, role, None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        t
    }

    #[tokio::test]
    async fn datasets_and_runs_over_http() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::testing::open(dir.path()).await;
        let scientist = token(&c, "ds", Role::DataScientist).await;
        let viewer = token(&c, "v", Role::Viewer).await;
        let worker = token(&c, "w", Role::Worker).await;
        let device = token(&c, "d", Role::Device).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(c)).await });
        let http = reqwest::Client::new();
        let ask = async |token: &str, method: &str, path: &str, body: &str| {
            let r = http
                .request(method.parse().unwrap(), format!("http://{addr}{path}"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let sha = r
                .headers()
                .get("x-wasmops-sha256")
                .map(|v| v.to_str().unwrap().to_string());
            (status, r.text().await.unwrap(), sha)
        };
        let csv = "a,b,y\n1,2,0\n3,4,1\n5,6,1\n";
        // Pushes: refused without or with a wrong label, stored once by content.
        let (s, body, _) = ask(&scientist, "POST", "/v1/datasets/d1", csv).await;
        assert_eq!(s, 400, "{body}");
        assert!(body.contains("?label="), "{body}");
        let (s, body, _) = ask(&scientist, "POST", "/v1/datasets/d1?label=z", csv).await;
        assert_eq!(s, 400, "{body}");
        assert!(body.contains("no label column `z`"), "{body}");
        let (s, body, _) = ask(
            &scientist,
            "POST",
            "/v1/datasets/d1?label=y",
            "a,y\n1,0\n2\n",
        )
        .await;
        assert_eq!(s, 400, "{body}");
        assert!(body.contains("line 3"), "{body}");
        let (s, body, _) = ask(&viewer, "POST", "/v1/datasets/d1?label=y", csv).await;
        assert_eq!(s, 403, "{body}");
        let (s, body, _) = ask(
            &scientist,
            "POST",
            "/v1/datasets/d1?label=y&file=x.csv",
            csv,
        )
        .await;
        assert_eq!(s, 201, "{body}");
        let v: wasmops_api::DatasetVersion = serde_json::from_str(&body).unwrap();
        assert_eq!((v.version, v.rows, v.label.as_str()), (1, 3, "y"));
        assert_eq!(
            v.labels,
            wasmops_api::LabelSummary::Classes {
                counts: [("0".into(), 1), ("1".into(), 2)].into()
            }
        );
        let (s, body, _) = ask(&scientist, "POST", "/v1/datasets/d1?label=y", csv).await;
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("\"created\":false"), "{body}");
        let (s, _, _) = ask(
            &scientist,
            "POST",
            "/v1/datasets/d1?label=y",
            "a,b,y\n7,8,0\n",
        )
        .await;
        assert_eq!(s, 201);
        // Reads: versions, latest, bytes (not for viewers, not via /v1/artifacts).
        let (s, body, _) = ask(&viewer, "GET", "/v1/datasets/d1/versions/latest", "").await;
        assert_eq!(s, 200);
        assert!(body.contains("\"version\":2"), "{body}");
        let (s, body, sha) = ask(&scientist, "GET", "/v1/datasets/d1/versions/1/data", "").await;
        assert_eq!((s, body.as_str()), (200, csv));
        assert_eq!(sha.as_deref(), Some(v.sha256.as_str()));
        let (s, _, _) = ask(&viewer, "GET", "/v1/datasets/d1/versions/1/data", "").await;
        assert_eq!(s, 403);
        let (s, _, _) = ask(&device, "GET", &format!("/v1/artifacts/{}", v.sha256), "").await;
        assert_eq!(s, 404, "dataset bytes are not artifacts devices can fetch");
        let (s, body, _) = ask(&viewer, "GET", "/v1/datasets/d1/versions/9", "").await;
        assert_eq!(s, 404, "{body}");
        let (s, body, _) = ask(&viewer, "GET", "/v1/datasets", "").await;
        assert_eq!(s, 200);
        assert_eq!(body.matches("\"id\":\"d1\"").count(), 2, "{body}");

        // Runs: checked, one at a time per model, claimed once, leased.
        let run = |trainer: &str| {
            format!(
                r#"{{"model":"m","kind":"train","trainer":{trainer},"dataset":"d1@1","trigger":"manual"}}"#
            )
        };
        let logistic = r#"{"kind":"builtin","algorithm":"logistic"}"#;
        for (trainer, says) in [
            (
                r#"{"kind":"builtin","algorithm":"svm"}"#,
                "unknown built-in trainer `svm`",
            ),
            (r#"{"kind":"command","command":"python t.py"}"#, "{out}"),
        ] {
            let (s, body, _) = ask(&scientist, "POST", "/v1/runs", &run(trainer)).await;
            assert_eq!(s, 400, "{body}");
            assert!(body.contains(says), "{body}");
        }
        let (s, body, _) = ask(
            &scientist,
            "POST",
            "/v1/runs",
            &run(logistic).replace("d1@1", "d1@7"),
        )
        .await;
        assert_eq!(s, 404, "{body}");
        let (s, _, _) = ask(&viewer, "POST", "/v1/runs", &run(logistic)).await;
        assert_eq!(s, 403);
        let (s, body, _) = ask(&scientist, "POST", "/v1/runs", &run(logistic)).await;
        assert_eq!(s, 201, "{body}");
        let queued: wasmops_api::Run = serde_json::from_str(&body).unwrap();
        assert_eq!(queued.status, wasmops_api::RunStatus::Queued);
        assert_eq!(queued.datasets[0].sha256, v.sha256);
        let (s, body, _) = ask(&scientist, "POST", "/v1/runs", &run(logistic)).await;
        assert_eq!(s, 409, "{body}");
        assert!(body.contains(&queued.id), "{body}");
        // Only workers claim; the first claim wins, the next finds nothing.
        let claim = r#"{"worker":"w1"}"#;
        let (s, _, _) = ask(&scientist, "POST", "/v1/runs/claim", claim).await;
        assert_eq!(s, 403);
        let (s, body, _) = ask(&worker, "POST", "/v1/runs/claim", claim).await;
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("\"status\":\"running\""), "{body}");
        let (s, _, _) = ask(&worker, "POST", "/v1/runs/claim", r#"{"worker":"w2"}"#).await;
        assert_eq!(s, 204);
        let id = &queued.id;
        let beat = format!("/v1/runs/{id}/heartbeat");
        let (s, _, _) = ask(
            &worker,
            "POST",
            &beat,
            r#"{"worker":"w1","lines":["epoch 1\u0000 loss 0.5"]}"#,
        )
        .await;
        assert_eq!(s, 204);
        let (s, body, _) = ask(&worker, "POST", &beat, r#"{"worker":"w2"}"#).await;
        assert_eq!(s, 409, "{body}");
        let (_, logs, _) = ask(&viewer, "GET", &format!("/v1/runs/{id}/logs"), "").await;
        assert_eq!(logs, "epoch 1  loss 0.5\n");
        let finish = format!("/v1/runs/{id}/finish");
        let (s, body, _) = ask(
            &worker,
            "POST",
            &finish,
            r#"{"worker":"w1","status":"failed"}"#,
        )
        .await;
        assert_eq!(s, 400, "{body}");
        let (s, body, _) = ask(
            &worker,
            "POST",
            &finish,
            r#"{"worker":"w1","status":"succeeded","metrics":{"accuracy":0.9},"candidate":"1.1.0","code":"builtin:logistic"}"#,
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let done: wasmops_api::Run = serde_json::from_str(&body).unwrap();
        assert_eq!(done.status, wasmops_api::RunStatus::Succeeded);
        assert_eq!(done.metrics["accuracy"], 0.9);
        assert_eq!(done.candidate.as_deref(), Some("1.1.0"));
        assert!(done.duration_ms(0).is_some_and(|d| d >= 0));
        let (s, _, _) = ask(
            &worker,
            "POST",
            &finish,
            r#"{"worker":"w1","status":"failed","error":"x"}"#,
        )
        .await;
        assert_eq!(s, 409, "a finished run stays finished");
        // A worker that goes silent loses its run when its lease runs out.
        let (s, body, _) = ask(&scientist, "POST", "/v1/runs", &run(logistic)).await;
        assert_eq!(s, 201, "{body}");
        let second: wasmops_api::Run = serde_json::from_str(&body).unwrap();
        let (s, _, _) = ask(&worker, "POST", "/v1/runs/claim", claim).await;
        assert_eq!(s, 200);
        let c2 = crate::testing::open(dir.path()).await;
        sqlx::query("UPDATE runs SET lease_until = 0 WHERE id = $1")
            .bind(&second.id)
            .execute(&c2.db.pool)
            .await
            .unwrap();
        let (s, _, _) = ask(&worker, "POST", "/v1/runs/claim", claim).await;
        assert_eq!(s, 204);
        let (_, body, _) = ask(&viewer, "GET", &format!("/v1/runs/{}", second.id), "").await;
        let lost: wasmops_api::Run = serde_json::from_str(&body).unwrap();
        assert_eq!(lost.status, wasmops_api::RunStatus::Failed);
        assert!(lost.error.unwrap().contains("stopped reporting"));
        let (_, body, _) = ask(&viewer, "GET", "/v1/runs?model=m", "").await;
        let all: Vec<wasmops_api::Run> = serde_json::from_str(&body).unwrap();
        assert_eq!(all.len(), 2);
    }
}
