//! The page's telemetry: the agent's own counting ([`wasmops_counting`])
//! behind a C ABI, so a browser's predictions are measured exactly as a
//! device's are and reach the coordinator as the same [`Report`]s.
//!
//! Data path in the Worker: after each prediction, `verifier.js` stages the
//! input and output tensors ([`wasmops_reporter_tensor`]: raw f32/i64 bytes,
//! text as a JSON array) and records them with the latency and row ids
//! ([`wasmops_reporter_record`]). Every interval it takes the window as
//! numbered reports ([`wasmops_reporter_take`]) and posts each to
//! `POST /v1/devices/{id}/telemetry` until the coordinator acknowledges it.

use serde::Deserialize;
use wasmops_counting::{Counting, Observation, TensorRef, Window};
use wasmops_predict_json::{Data, Tensor};
use wasmops_profile::Profile;
use wasmops_protocol::telemetry::{MAX_REPORT_BYTES, Report, split_versions};

/// What `wasmops_reporter_new` takes (JSON).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The device id the page reports as (its token's device).
    pub device: String,
    /// Random per page load: sequence numbers restart with each load.
    pub stream: String,
    /// The component's signed reference profile (claims), if it has one.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Raw input rows to keep in each window's sample (0: none).
    #[serde(default)]
    pub sample_rows: usize,
}

/// What `wasmops_reporter_record` takes besides numbers (JSON).
#[derive(Debug, Deserialize)]
struct Meta {
    model: String,
    version: String,
    #[serde(default)]
    ids: Vec<String>,
}

/// A tensor of the prediction being recorded: an input or an output.
#[derive(Debug)]
struct Staged {
    output: bool,
    tensor: Tensor,
}

/// One page's telemetry: its window and its numbering.
#[derive(Debug)]
pub struct Reporter {
    device: String,
    stream: String,
    next_seq: u64,
    sample_rows: usize,
    counting: Counting,
    window: Window,
    staged: Vec<Staged>,
}

impl Reporter {
    pub fn new(config: Config, now_ms: i64) -> Reporter {
        Reporter {
            counting: Counting::of(config.profile.as_ref()),
            device: config.device,
            stream: config.stream,
            next_seq: 0,
            sample_rows: config.sample_rows,
            window: Window::new(now_ms),
            staged: vec![],
        }
    }

    /// Stages a tensor of the prediction being recorded.
    fn stage(&mut self, output: bool, tensor: Tensor) {
        self.staged.push(Staged { output, tensor });
    }

    /// Records one prediction over the staged tensors, then clears them.
    fn record(&mut self, meta: &Meta, latency_ms: f64, ok: bool, at_ms: i64) {
        let staged = std::mem::take(&mut self.staged);
        let views = |output: bool| -> Vec<TensorRef> {
            staged
                .iter()
                .filter(|s| s.output == output)
                .map(|s| s.tensor.view())
                .collect()
        };
        let (inputs, outputs) = (views(false), views(true));
        self.window.record(Observation {
            model: &meta.model,
            version: &meta.version,
            shadow: false,
            latency_ms,
            inputs: &inputs,
            outputs: ok.then_some(outputs.as_slice()),
            agreed: false,
            counting: &self.counting,
            ids: if ok { &meta.ids } else { &[] },
            sample_rows: self.sample_rows,
            at_ms,
        });
    }

    /// Closes the window: its numbered reports (none if nothing happened).
    pub fn take(&mut self, now_ms: i64) -> Vec<Report> {
        let (started, versions) = self.window.take(now_ms);
        if versions.is_empty() {
            return vec![];
        }
        split_versions(versions, MAX_REPORT_BYTES)
            .into_iter()
            .map(|versions| {
                let seq = self.next_seq;
                self.next_seq += 1;
                Report {
                    device: self.device.clone(),
                    stream: self.stream.clone(),
                    seq,
                    window_start_ms: started,
                    window_end_ms: now_ms,
                    versions,
                    dropped_reports: 0,
                    dropped_predictions: 0,
                }
            })
            .collect()
    }
}

/// A new reporter from its JSON [`Config`]; null when the config is not one.
///
/// # Safety
/// `config` must be a readable buffer from `wasmops_alloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wasmops_reporter_new(
    config: *const u8,
    config_len: usize,
    now_ms: f64,
) -> *mut Reporter {
    let bytes = unsafe { std::slice::from_raw_parts(config, config_len) };
    match serde_json::from_slice::<Config>(bytes) {
        Ok(c) => Box::into_raw(Box::new(Reporter::new(c, now_ms as i64))),
        Err(_) => std::ptr::null_mut(),
    }
}

/// Stages one tensor of the prediction about to be recorded. `kind`: 0
/// float32 (`data` holds little-endian f32s), 1 int64 (i64s), 2 text (a JSON
/// array of strings). Returns 0, or 1 when the bytes do not fit the kind.
///
/// # Safety
/// `r` from [`wasmops_reporter_new`]; the buffers readable, `shape` holding
/// `shape_len` u32s.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn wasmops_reporter_tensor(
    r: *mut Reporter,
    output: u32,
    name: *const u8,
    name_len: usize,
    shape: *const u32,
    shape_len: usize,
    kind: u32,
    data: *const u8,
    data_len: usize,
) -> u32 {
    let (r, name, shape, data) = unsafe {
        (
            &mut *r,
            std::slice::from_raw_parts(name, name_len),
            std::slice::from_raw_parts(shape, shape_len),
            std::slice::from_raw_parts(data, data_len),
        )
    };
    let values = match kind {
        0 if data.len().is_multiple_of(4) => Data::Float32(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
        ),
        1 if data.len().is_multiple_of(8) => Data::Int64(
            data.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        ),
        2 => match serde_json::from_slice(data) {
            Ok(v) => Data::Text(v),
            Err(_) => return 1,
        },
        _ => return 1,
    };
    r.stage(
        output != 0,
        Tensor {
            name: String::from_utf8_lossy(name).into_owned(),
            shape: shape.to_vec(),
            data: values,
        },
    );
    0
}

/// Records the staged prediction: `meta` is JSON `{model, version, ids}`
/// (ids: one per row, for labels later); `ok` 0 when it failed. Returns 0,
/// or 1 when `meta` is not that JSON (the staged tensors are dropped).
///
/// # Safety
/// `r` from [`wasmops_reporter_new`]; `meta` readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wasmops_reporter_record(
    r: *mut Reporter,
    meta: *const u8,
    meta_len: usize,
    latency_ms: f64,
    ok: u32,
    at_ms: f64,
) -> u32 {
    let (r, meta) = unsafe { (&mut *r, std::slice::from_raw_parts(meta, meta_len)) };
    match serde_json::from_slice::<Meta>(meta) {
        Ok(m) => {
            r.record(&m, latency_ms, ok != 0, at_ms as i64);
            0
        }
        Err(_) => {
            r.staged.clear();
            1
        }
    }
}

/// Closes the window: a result buffer (`u32` length, then a JSON array of
/// [`Report`]s, empty when nothing was recorded).
///
/// # Safety
/// `r` from [`wasmops_reporter_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wasmops_reporter_take(r: *mut Reporter, now_ms: f64) -> *mut u8 {
    let r = unsafe { &mut *r };
    crate::result_buffer(&serde_json::to_vec(&r.take(now_ms as i64)).expect("reports serialise"))
}

/// Frees a reporter.
///
/// # Safety
/// `r` from [`wasmops_reporter_new`], not used after.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wasmops_reporter_free(r: *mut Reporter) {
    if !r.is_null() {
        drop(unsafe { Box::from_raw(r) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn the_c_abi_counts_a_prediction_into_a_numbered_report() {
        let config = br#"{"device":"web-1","stream":"s1"}"#;
        let r = unsafe { wasmops_reporter_new(config.as_ptr(), config.len(), 1000.0) };
        assert!(!r.is_null());
        let (x, p) = (f32_bytes(&[1.0, 2.0, 3.0, 4.0]), f32_bytes(&[0.25, 0.75]));
        let (sx, sp) = ([1u32, 4], [1u32, 2]);
        let label = br#"["b"]"#;
        let sl = [1u32];
        unsafe {
            assert_eq!(
                wasmops_reporter_tensor(
                    r,
                    0,
                    b"X".as_ptr(),
                    1,
                    sx.as_ptr(),
                    2,
                    0,
                    x.as_ptr(),
                    x.len()
                ),
                0
            );
            assert_eq!(
                wasmops_reporter_tensor(
                    r,
                    1,
                    b"p".as_ptr(),
                    1,
                    sp.as_ptr(),
                    2,
                    0,
                    p.as_ptr(),
                    p.len()
                ),
                0
            );
            assert_eq!(
                wasmops_reporter_tensor(
                    r,
                    1,
                    b"l".as_ptr(),
                    1,
                    sl.as_ptr(),
                    1,
                    2,
                    label.as_ptr(),
                    label.len()
                ),
                0
            );
            // Three bytes are not f32s.
            assert_eq!(
                wasmops_reporter_tensor(r, 0, b"X".as_ptr(), 1, sx.as_ptr(), 2, 0, x.as_ptr(), 3),
                1
            );
        }
        let meta = br#"{"model":"iris","version":"1.0.0","ids":["p1"]}"#;
        assert_eq!(
            unsafe { wasmops_reporter_record(r, meta.as_ptr(), meta.len(), 2.5, 1, 1500.0) },
            0
        );
        let reports = unsafe { (*r).take(2000) };
        assert_eq!(reports.len(), 1);
        let rep = &reports[0];
        assert_eq!(
            (rep.device.as_str(), rep.stream.as_str(), rep.seq),
            ("web-1", "s1", 0)
        );
        assert_eq!((rep.window_start_ms, rep.window_end_ms), (1000, 2000));
        rep.check().unwrap();
        let v = &rep.versions[0];
        assert_eq!(
            (v.model.as_str(), v.version.as_str(), v.predictions),
            ("iris", "1.0.0", 1)
        );
        assert_eq!(v.features.len(), 4, "{:?}", v.features.keys());
        assert_eq!(v.classes["l"]["b"], 1);
        assert_eq!(v.records[0].id, "p1");
        assert_eq!(v.records[0].at_ms, 1500);
        // Nothing recorded since: no report, and the numbering goes on.
        assert!(unsafe { (*r).take(3000) }.is_empty());
        unsafe { wasmops_reporter_free(r) };
    }

    #[test]
    fn a_bad_config_makes_no_reporter() {
        let config = br#"{"device":"web-1"}"#;
        assert!(unsafe { wasmops_reporter_new(config.as_ptr(), config.len(), 0.0) }.is_null());
    }
}
