//! The wasi:http front of a model component (`wasmops build --http`).
//!
//! `build --http` composes this component with a built model component: the
//! model's `wasmops:model/model` export fills this one's import, and the
//! result exports `wasi:http/incoming-handler`, so any wasi:http host
//! (`wasmtime serve`, and others) serves the model with no wasmops host.
//!
//! Data path, per request (a wasi:http host makes a fresh instance for each):
//! method and path → route → for a prediction, the body read within
//! [`MAX_BODY_BYTES`] → `wasmops_predict_json` typed by the model's metadata
//! (the same parser and wording as `wasmops run` and `serve`) → the model's
//! `predict` → its outputs as JSON. The routes and answers are `wasmops
//! serve`'s: `POST /v1/models/{name}/predict`, `GET /v1/models`,
//! `GET /v1/models/{name}`, `GET /v1/health`; 400 for a body that is not the
//! predict JSON, 404 for another name, 405, 413 past the limit, 422 for
//! tensors the model refuses, 500 when the model fails.

#![cfg(target_family = "wasm")]

use serde_json::{Value, json};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasmops_predict_json::{
    Data, ElementType as Wire, Refusal, Tensor as Plain, TensorRef, Values,
};

wit_bindgen::generate!({
    inline: "package wasmops:http-front;\nworld front { import wasmops:model/model@0.1.0; }",
    path: "../../wit",
    world: "wasmops:http-front/front",
    generate_all,
});

use wasmops::model::model;
use wasmops::model::types::{
    Dim, ElementType, ModelInfo, PredictError, Tensor, TensorData, TensorSpec,
};

/// The largest request body read, as `wasmops serve --max-body-mb` defaults.
const MAX_BODY_BYTES: usize = 16 << 20;

struct Front;

impl wasip2::exports::http::incoming_handler::Guest for Front {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = answer(&request);
        respond(out, status, body.to_string().as_bytes());
    }
}

wasip2::http::proxy::export!(Front);

fn failure(status: u16, message: impl Into<String>) -> (u16, Value) {
    (status, json!({ "error": message.into() }))
}

fn answer(request: &IncomingRequest) -> (u16, Value) {
    let path = request.path_with_query().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    let info = model::metadata();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method();
    let get = matches!(method, Method::Get);
    match parts.as_slice() {
        ["v1", "health"] if get => (200, json!({"status": "ok", "models": 1})),
        ["v1", "models"] if get => (200, json!({ "models": [summary(&info)] })),
        ["v1", "models", name] if get => match known(&info, name) {
            Ok(()) => (200, describe(&info)),
            Err(e) => e,
        },
        ["v1", "models", name, "predict"] if matches!(method, Method::Post) => {
            match known(&info, name) {
                Ok(()) => predict(request, &info),
                Err(e) => e,
            }
        }
        ["v1", "health"]
        | ["v1", "models"]
        | ["v1", "models", _]
        | ["v1", "models", _, "predict"] => {
            failure(405, format!("{path} does not take that method"))
        }
        _ => failure(
            404,
            "no such route (POST /v1/models/{name}/predict, GET /v1/models, GET /v1/models/{name}, GET /v1/health)",
        ),
    }
}

fn known(info: &ModelInfo, name: &str) -> Result<(), (u16, Value)> {
    if name == info.name {
        return Ok(());
    }
    // The name is echoed only when it is short and printable.
    let shown = if name.len() <= 64 && name.chars().all(|c| !c.is_control()) {
        format!("`{name}`")
    } else {
        "that name".into()
    };
    Err(failure(
        404,
        format!(
            "no model {shown} is served here (served: [{:?}])",
            info.name
        ),
    ))
}

fn summary(info: &ModelInfo) -> Value {
    json!({"name": info.name, "version": info.version, "runtime": "wasm (wasi:http)"})
}

fn describe(info: &ModelInfo) -> Value {
    let mut doc = summary(info);
    doc["model"] = info.name.clone().into();
    doc["inputs"] = specs(&info.inputs);
    doc["outputs"] = specs(&info.outputs);
    doc["preprocessing"] = json!(info.preprocessing);
    doc
}

// The mappings below are the host's (`wasmops_runtime::tensors_json`,
// `HostError`) over wit-bindgen's types instead of wasmtime's: the wording
// and the JSON live once, in wasmops-predict-json.
fn wire(t: ElementType) -> Wire {
    match t {
        ElementType::Float32 => Wire::Float32,
        ElementType::Int64 => Wire::Int64,
        ElementType::Int32 => Wire::Int32,
        ElementType::Boolean => Wire::Boolean,
        ElementType::Text => Wire::Text,
        ElementType::Other => Wire::Other,
    }
}

fn specs(list: &[TensorSpec]) -> Value {
    list.iter()
        .map(|s| {
            let shape: Vec<String> = s
                .shape
                .iter()
                .map(|d| match d {
                    Dim::Fixed(v) => v.to_string(),
                    Dim::Symbol(s) => s.clone(),
                })
                .collect();
            json!({"name": s.name, "type": wire(s.element_type).name(), "shape": shape})
        })
        .collect()
}

fn predict(request: &IncomingRequest, info: &ModelInfo) -> (u16, Value) {
    let body = match read_body(request) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return failure(400, "the request body is not UTF-8 JSON");
    };
    let kind_of = |name: &str| {
        info.inputs
            .iter()
            .find(|s| s.name == name)
            .map_or(wasmops_predict_json::Kind::Float32, |s| {
                wire(s.element_type).kind()
            })
    };
    let inputs: Vec<Tensor> = match wasmops_predict_json::parse_inputs(text, kind_of) {
        Ok(t) => t.into_iter().map(binding).collect(),
        Err(e) => return failure(400, e.to_string()),
    };
    match model::predict(&inputs) {
        Ok(outputs) => {
            let json = wasmops_predict_json::outputs_json(outputs.iter().map(view));
            (200, serde_json::from_str(&json).unwrap_or(Value::Null))
        }
        Err(e) => {
            let r = refusal(&e);
            failure(if r.is_bad_input() { 422 } else { 500 }, r.to_string())
        }
    }
}

fn refusal(e: &PredictError) -> Refusal<'_> {
    match e {
        PredictError::UnknownInput(m) => Refusal::UnknownInput(m),
        PredictError::MissingInput(m) => Refusal::MissingInput(m),
        PredictError::BadShape(m) => Refusal::BadShape(m),
        PredictError::BadType(m) => Refusal::BadType(m),
        PredictError::InvalidValue(m) => Refusal::InvalidValue(m),
        PredictError::Inference(m) => Refusal::Inference(m),
        PredictError::NotInitialized => Refusal::NotInitialized,
    }
}

fn binding(t: Plain) -> Tensor {
    Tensor {
        name: t.name,
        shape: t.shape,
        data: match t.data {
            Data::Float32(v) => TensorData::Float32(v),
            Data::Int64(v) => TensorData::Int64(v),
            Data::Text(v) => TensorData::Text(v),
        },
    }
}

fn view(t: &Tensor) -> TensorRef<'_> {
    TensorRef {
        name: &t.name,
        shape: &t.shape,
        data: match &t.data {
            TensorData::Float32(v) => Values::Float32(v),
            TensorData::Int64(v) => Values::Int64(v),
            TensorData::Text(v) => Values::Text(v),
        },
    }
}

/// The request body, refused past [`MAX_BODY_BYTES`] (on its announced
/// length before a byte is read, else as it arrives).
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, (u16, Value)> {
    let too_big = || {
        failure(
            413,
            format!("the request body may be at most {MAX_BODY_BYTES} bytes"),
        )
    };
    let announced = request
        .headers()
        .get("content-length")
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_big());
    }
    let unreadable = || failure(400, "the request body could not be read");
    let body = request.consume().map_err(|()| unreadable())?;
    let stream = body.stream().map_err(|()| unreadable())?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                out.extend_from_slice(&chunk);
                if out.len() > MAX_BODY_BYTES {
                    return Err(too_big());
                }
            }
            Err(wasip2::io::streams::StreamError::Closed) => break,
            Err(_) => return Err(unreadable()),
        }
    }
    Ok(out)
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"application/json".to_vec())])
        .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        // At most 4096 bytes per blocking write, as wasi:io allows.
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
