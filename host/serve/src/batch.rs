//! Dynamic batching: requests for one model that wait at the same moment
//! share one fresh instance and one `[N, …]` call.
//!
//! Data path: a predict request leaves its body in its model's [`Queue`] and
//! asks for a slot. Whoever gets a slot takes what is queued (the server's
//! `drain`), parses each body, groups the requests whose inputs agree in
//! names, element types and every dimension but the first ([`Layout`]),
//! stacks each group along axis 0 ([`concat`]), runs it once and cuts the
//! outputs back into each request's rows ([`split`]). Nothing waits for
//! company: a batch is only what queued while every slot was busy, so at low
//! load each request runs alone, and under load the cost of making an
//! instance (and of the model's per-call set-up) is shared.
//!
//! A model is batched only when its metadata starts every input and output
//! with the same symbolic dimension and [`probe`] finds, at start, that rows
//! run together give what they give alone. A batch that fails is run again
//! request by request, so a bad request fails only itself.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use wasmops_runtime::bindings::{Dim, ModelInfo, Tensor, TensorData};
use wasmops_runtime::synthetic::{Fill, synthetic_inputs};

use crate::backend::Backend;

/// Rows of one batch and rows of another agree this closely (relative, as
/// [`wasmops_runtime::output_difference`] measures) for a model to be
/// batched: summing in another order moves f32 results by ~1e-7.
const ROW_TOLERANCE: f64 = 1e-4;

/// One request's body, waiting, and where its answer goes.
pub(crate) struct Job<R> {
    pub id: u64,
    pub body: Bytes,
    pub reply: tokio::sync::oneshot::Sender<R>,
}

/// The requests of one model waiting for a slot, oldest first.
pub(crate) struct Queue<R> {
    jobs: Mutex<VecDeque<Job<R>>>,
    next: AtomicU64,
}

impl<R> Queue<R> {
    pub fn new() -> Queue<R> {
        Queue {
            jobs: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(0),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<Job<R>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a body; the id finds it again.
    pub fn push(&self, body: Bytes, reply: tokio::sync::oneshot::Sender<R>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.jobs().push_back(Job { id, body, reply });
        id
    }

    /// Takes back a job nobody has taken yet (its request gave up waiting).
    pub fn remove(&self, id: u64) -> bool {
        let mut jobs = self.jobs();
        match jobs.iter().position(|j| j.id == id) {
            Some(i) => {
                jobs.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn holds(&self, id: u64) -> bool {
        self.jobs().iter().any(|j| j.id == id)
    }

    /// The oldest `n` jobs (at least one when any wait).
    pub fn take(&self, n: usize) -> Vec<Job<R>> {
        let mut jobs = self.jobs();
        let n = n.clamp(1, jobs.len().max(1)).min(jobs.len());
        jobs.drain(..n).collect()
    }
}

/// What must agree for requests to share a batch: per input (by name) its
/// element type and every dimension after the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout(Vec<(String, u8, Vec<u32>)>);

fn kind(d: &TensorData) -> u8 {
    match d {
        TensorData::Float32(_) => 0,
        TensorData::Int64(_) => 1,
        TensorData::Text(_) => 2,
    }
}

fn len(d: &TensorData) -> usize {
    match d {
        TensorData::Float32(v) => v.len(),
        TensorData::Int64(v) => v.len(),
        TensorData::Text(v) => v.len(),
    }
}

/// A request's layout and row count, or `None` when it cannot share a batch
/// (no inputs, a scalar, inputs disagreeing on rows, zero rows, or data
/// that does not fill its shape: the model names those problems itself).
pub(crate) fn layout(inputs: &[Tensor]) -> Option<(Layout, usize)> {
    let rows = *inputs.first()?.shape.first()?;
    let mut parts = Vec::with_capacity(inputs.len());
    for t in inputs {
        let (&first, rest) = t.shape.split_first()?;
        let cells = t
            .shape
            .iter()
            .try_fold(1usize, |n, d| n.checked_mul(*d as usize))?;
        if first != rows || cells != len(&t.data) {
            return None;
        }
        parts.push((t.name.clone(), kind(&t.data), rest.to_vec()));
    }
    parts.sort();
    if rows == 0 || parts.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    Some((Layout(parts), rows as usize))
}

/// The requests' inputs stacked along axis 0, in the first request's input
/// order. All must have the same [`Layout`].
pub(crate) fn concat(requests: &[&[Tensor]]) -> Vec<Tensor> {
    let Some(first) = requests.first() else {
        return vec![];
    };
    first
        .iter()
        .map(|t| {
            let mut data = empty_like(&t.data);
            let mut rows = 0;
            for r in requests {
                if let Some(same) = r.iter().find(|o| o.name == t.name) {
                    rows += same.shape[0];
                    append(&mut data, &same.data);
                }
            }
            let mut shape = t.shape.clone();
            shape[0] = rows;
            Tensor {
                name: t.name.clone(),
                shape,
                data,
            }
        })
        .collect()
}

fn empty_like(d: &TensorData) -> TensorData {
    match d {
        TensorData::Float32(_) => TensorData::Float32(vec![]),
        TensorData::Int64(_) => TensorData::Int64(vec![]),
        TensorData::Text(_) => TensorData::Text(vec![]),
    }
}

fn append(to: &mut TensorData, from: &TensorData) {
    match (to, from) {
        (TensorData::Float32(a), TensorData::Float32(b)) => a.extend_from_slice(b),
        (TensorData::Int64(a), TensorData::Int64(b)) => a.extend_from_slice(b),
        (TensorData::Text(a), TensorData::Text(b)) => a.extend_from_slice(b),
        _ => unreachable!("requests of one layout share element types"),
    }
}

/// Cuts a batch's tensors (outputs, or inputs) into consecutive parts of
/// `rows` rows each; `None` unless every tensor has exactly those rows.
pub(crate) fn split(tensors: Vec<Tensor>, rows: &[usize]) -> Option<Vec<Vec<Tensor>>> {
    let total: usize = rows.iter().sum();
    let mut parts: Vec<Vec<Tensor>> = rows.iter().map(|_| vec![]).collect();
    for t in tensors {
        let (&first, rest) = t.shape.split_first()?;
        let per_row = rest
            .iter()
            .try_fold(1usize, |n, d| n.checked_mul(*d as usize))?;
        if first as usize != total || per_row.checked_mul(total)? != len(&t.data) {
            return None;
        }
        let mut data = t.data;
        // From the back, so each part is split off the end without copying the rest.
        for (part, &n) in parts.iter_mut().zip(rows).rev() {
            let at = len(&data) - n * per_row;
            let tail = match &mut data {
                TensorData::Float32(v) => TensorData::Float32(v.split_off(at)),
                TensorData::Int64(v) => TensorData::Int64(v.split_off(at)),
                TensorData::Text(v) => TensorData::Text(v.split_off(at)),
            };
            let mut shape = t.shape.clone();
            shape[0] = n as u32;
            part.push(Tensor {
                name: t.name.clone(),
                shape,
                data: tail,
            });
        }
    }
    Some(parts)
}

/// Whether the metadata lets requests be stacked: every input and output
/// starts with one and the same symbolic dimension.
fn stackable(info: &ModelInfo) -> bool {
    let first = |shape: &[Dim]| match shape.first() {
        Some(Dim::Symbol(s)) => Some(s.clone()),
        _ => None,
    };
    let Some(batch) = info.inputs.first().and_then(|s| first(&s.shape)) else {
        return false;
    };
    !info.outputs.is_empty()
        && info
            .inputs
            .iter()
            .chain(&info.outputs)
            .all(|s| first(&s.shape).as_ref() == Some(&batch))
}

/// Checks, once at start, that `model` may be batched: its metadata allows
/// it, and three made-up rows run together give what each gives alone. The
/// error says why not (the server then runs each request alone).
pub fn probe(model: &dyn Backend) -> Result<(), String> {
    const ROWS: usize = 3;
    let info = model.info();
    if !stackable(info) {
        return Err(
            "its inputs and outputs do not all start with one symbolic batch dimension".into(),
        );
    }
    let together = synthetic_inputs(info, ROWS as u32, Fill::Noise)
        .or_else(|_| synthetic_inputs(info, ROWS as u32, Fill::Zeros))?;
    let alone = split(together.clone(), &[1; ROWS]).ok_or("made-up rows could not be cut")?;
    let run = |inputs: &[Tensor]| {
        model
            .predict(inputs)
            .map(|p| p.outputs)
            .map_err(|e| format!("made-up rows fail: {e}"))
    };
    let batched = split(run(&together)?, &[1; ROWS])
        .ok_or("its outputs do not have one row per input row")?;
    for (i, (row, in_batch)) in alone.iter().zip(&batched).enumerate() {
        let by_itself = run(row)?;
        match wasmops_runtime::output_difference(&by_itself, in_batch) {
            Ok(d) if d <= ROW_TOLERANCE => {}
            Ok(d) => {
                return Err(format!(
                    "row {i} comes out {d:.1e} apart in a batch (rows depend on each other)"
                ));
            }
            Err(e) => return Err(format!("row {i} differs in a batch: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Prediction;
    use wasmops_runtime::HostError;
    use wasmops_runtime::bindings::{ElementType, TensorSpec};

    fn t(name: &str, shape: &[u32], data: TensorData) -> Tensor {
        Tensor {
            name: name.into(),
            shape: shape.to_vec(),
            data,
        }
    }

    fn f(v: &[f32]) -> TensorData {
        TensorData::Float32(v.to_vec())
    }

    #[test]
    fn requests_stack_and_split_back_by_rows() {
        let a = vec![
            t("x", &[1, 2], f(&[1., 2.])),
            t("c", &[1], TensorData::Text(vec!["a".into()])),
        ];
        // Another input order, two rows.
        let b = vec![
            t("c", &[2], TensorData::Text(vec!["b".into(), "c".into()])),
            t("x", &[2, 2], f(&[3., 4., 5., 6.])),
        ];
        let (la, ra) = layout(&a).unwrap();
        let (lb, rb) = layout(&b).unwrap();
        assert_eq!((la == lb, ra, rb), (true, 1, 2));
        let all = concat(&[&a, &b]);
        assert_eq!(all[0], t("x", &[3, 2], f(&[1., 2., 3., 4., 5., 6.])));
        assert_eq!(all[1].shape, [3]);
        let parts = split(all, &[1, 2]).unwrap();
        assert_eq!(parts[0], a);
        assert_eq!(parts[1][0], b[1]);
        assert_eq!(parts[1][1], b[0]);
        // Outputs without the batch's rows are not cut.
        assert!(split(vec![t("p", &[2], f(&[0., 1.]))], &[1, 2]).is_none());
    }

    #[test]
    fn requests_that_cannot_share_a_batch_are_told_apart() {
        let rows_disagree = [t("x", &[2, 1], f(&[1., 2.])), t("y", &[1], f(&[1.]))];
        assert!(layout(&rows_disagree).is_none());
        assert!(
            layout(&[t("x", &[2, 2], f(&[1., 2., 3.]))]).is_none(),
            "short data"
        );
        assert!(layout(&[t("x", &[], f(&[1.]))]).is_none(), "scalar");
        assert!(layout(&[t("x", &[0, 4], f(&[]))]).is_none(), "no rows");
        assert!(layout(&[]).is_none());
        let (wide, _) = layout(&[t("x", &[1, 3], f(&[1., 2., 3.]))]).unwrap();
        let (narrow, _) = layout(&[t("x", &[1, 2], f(&[1., 2.]))]).unwrap();
        assert_ne!(wide, narrow);
        let (ints, _) = layout(&[t("x", &[1, 2], TensorData::Int64(vec![1, 2]))]).unwrap();
        assert_ne!(ints, narrow);
    }

    #[test]
    fn the_queue_hands_out_the_oldest_and_gives_back_the_untaken() {
        let q = Queue::<()>::new();
        let ids: Vec<u64> = (0..4)
            .map(|_| q.push(Bytes::new(), tokio::sync::oneshot::channel().0))
            .collect();
        assert!(q.remove(ids[1]));
        assert!(!q.remove(ids[1]));
        let taken: Vec<u64> = q.take(2).iter().map(|j| j.id).collect();
        assert_eq!(taken, [ids[0], ids[2]]);
        assert!(q.holds(ids[3]) && !q.holds(ids[0]));
        assert_eq!(q.take(0).len(), 1, "at least one");
        assert!(q.take(5).is_empty());
    }

    /// Scales each row by a factor: row-wise, or (`mixing`) by the batch's
    /// mean, as a model that normalises across the batch would.
    struct Scale {
        info: ModelInfo,
        mixing: bool,
    }

    impl Backend for Scale {
        fn info(&self) -> &ModelInfo {
            &self.info
        }
        fn runtime(&self) -> &'static str {
            "test"
        }
        fn describe(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn predict(&self, inputs: &[Tensor]) -> Result<Prediction, HostError> {
            let TensorData::Float32(x) = &inputs[0].data else {
                panic!("float input")
            };
            let mean = x.iter().sum::<f32>() / x.len() as f32;
            let y = x
                .iter()
                .map(|v| if self.mixing { v - mean } else { v * 2.0 })
                .collect();
            Ok(Prediction {
                outputs: vec![t("y", &inputs[0].shape, TensorData::Float32(y))],
                instantiate: None,
            })
        }
    }

    fn spec(name: &str, shape: Vec<Dim>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            element_type: ElementType::Float32,
            shape,
        }
    }

    fn scale(mixing: bool, output_batch: Dim) -> Scale {
        let n = || Dim::Symbol("N".into());
        Scale {
            info: ModelInfo {
                name: "m".into(),
                version: "1".into(),
                inputs: vec![spec("x", vec![n(), Dim::Fixed(2)])],
                outputs: vec![spec("y", vec![output_batch, Dim::Fixed(2)])],
                preprocessing: vec![],
            },
            mixing,
        }
    }

    #[test]
    fn only_models_whose_rows_are_independent_are_batched() {
        assert_eq!(probe(&scale(false, Dim::Symbol("N".into()))), Ok(()));
        let mixing = probe(&scale(true, Dim::Symbol("N".into()))).unwrap_err();
        assert!(mixing.contains("rows depend on each other"), "{mixing}");
        let fixed = probe(&scale(false, Dim::Fixed(3))).unwrap_err();
        assert!(fixed.contains("symbolic batch dimension"), "{fixed}");
    }
}
