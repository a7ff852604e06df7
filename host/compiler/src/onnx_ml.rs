//! ONNX-ML operators that scikit-learn exports use and tract 0.23 lacks.
//!
//! Each is lowered at load time to ops tract already runs and serialises to
//! NNEF (`Sub`/`Mul`, and tract-onnx-opl's tree-ensemble kernel), so the guest
//! needs no custom kernels. Checked against onnxruntime by the fixture tests.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;
use tract_onnx_opl::ml::tree::{Aggregate, Cmp, TreeEnsemble, TreeEnsembleData};
use tract_onnx_opl::ml::tree_ensemble_classifier::TreeEnsembleClassifier as TreeScores;

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("Scaler", scaler);
    reg.insert("TreeEnsembleRegressor", tree_ensemble_regressor);
}

/// A `[1, n]` constant that broadcasts over the batch.
fn row(v: &[f32]) -> TractResult<Arc<Tensor>> {
    Ok(tensor1(v).into_shape(&[1, v.len()])?.into_arc_tensor())
}

/// `Y = (X - offset) * scale`, per column (StandardScaler, MinMaxScaler, RobustScaler...).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Scaler {
    offset: Arc<Tensor>,
    scale: Arc<Tensor>,
}

fn scaler(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let offset: Vec<f32> = node
        .get_attr_opt_vec("offset")?
        .unwrap_or_else(|| vec![0.0]);
    let scale: Vec<f32> = node.get_attr_opt_vec("scale")?.unwrap_or_else(|| vec![1.0]);
    Ok((
        expand(Scaler {
            offset: row(&offset)?,
            scale: row(&scale)?,
        }),
        vec![],
    ))
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let mut x = inputs[0];
        if model.outlet_fact(x)?.datum_type != f32::datum_type() {
            x = model.wire_node(
                format!("{prefix}.to_f32"),
                tract_core::ops::cast::cast(f32::datum_type()),
                &[x],
            )?[0];
        }
        let offset = model.add_const(format!("{prefix}.offset"), self.offset.clone())?;
        let scale = model.add_const(format!("{prefix}.scale"), self.scale.clone())?;
        let centred = model.wire_node(
            format!("{prefix}.sub"),
            tract_core::ops::math::sub(),
            &[x, offset],
        )?;
        model.wire_node(
            format!("{prefix}.mul"),
            tract_core::ops::math::mul(),
            &[centred[0], scale],
        )
    }
}

/// Sum (or average, min, max) of leaf values per target, plus base values.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct TreeEnsembleRegressor {
    ensemble: TreeEnsemble,
    base_values: Option<Arc<Tensor>>,
}

fn tree_ensemble_regressor(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let post: &str = node.get_attr_opt("post_transform")?.unwrap_or("NONE");
    if post != "NONE" {
        bail!("TreeEnsembleRegressor post_transform {post} is not supported (only NONE)");
    }
    let n_targets: usize = node.get_attr("n_targets")?;
    let aggregate = match node.get_attr_opt("aggregate_function")?.unwrap_or("SUM") {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Avg,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => bail!("unknown aggregate_function {other}"),
    };
    let ensemble = parse_ensemble(node, n_targets, aggregate)?;
    let base_values: Option<Vec<f32>> = node.get_attr_opt_vec("base_values")?;
    if let Some(b) = &base_values {
        node.expect(b.len() == n_targets, "base_values has one value per target")?;
    }
    Ok((
        expand(TreeEnsembleRegressor {
            ensemble,
            base_values: base_values.map(|b| row(&b)).transpose()?,
        }),
        vec![],
    ))
}

impl Expansion for TreeEnsembleRegressor {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], self.ensemble.n_classes().to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let scores = model.wire_node(
            format!("{prefix}.trees"),
            TreeScores {
                ensemble: self.ensemble.clone(),
            },
            inputs,
        )?;
        match &self.base_values {
            None => Ok(scores),
            Some(base) => {
                let base = model.add_const(format!("{prefix}.base_values"), base.clone())?;
                model.wire_node(
                    format!("{prefix}.add_base"),
                    tract_core::ops::math::add(),
                    &[scores[0], base],
                )
            }
        }
    }
}

/// Comparison of a branch, normalised to the ones tract's kernel decodes
/// (`>=`/`>` become `<`/`<=` with the branches and the NaN direction swapped).
fn branch_mode(mode: &str) -> TractResult<Option<(Cmp, bool)>> {
    Ok(Some(match mode {
        "BRANCH_LEQ" => (Cmp::LessEqual, false),
        "BRANCH_LT" => (Cmp::Less, false),
        "BRANCH_GTE" => (Cmp::Less, true),
        "BRANCH_GT" => (Cmp::LessEqual, true),
        "BRANCH_EQ" => (Cmp::Equal, false),
        "BRANCH_NEQ" => (Cmp::NotEqual, false),
        "LEAF" => return Ok(None),
        other => bail!("unknown node mode {other}"),
    }))
}

/// Packs the ONNX attribute arrays into tract's flat tree tables.
fn parse_ensemble(
    node: &NodeProto,
    n_targets: usize,
    aggregate: Aggregate,
) -> TractResult<TreeEnsemble> {
    let usizes = |name: &str| -> TractResult<Vec<usize>> {
        node.get_attr_vec::<i64>(name)?
            .into_iter()
            .map(|v| usize::try_from(v).map_err(|_| format_err!("{name}: negative value {v}")))
            .collect()
    };
    let tree_ids = usizes("nodes_treeids")?;
    let node_ids = usizes("nodes_nodeids")?;
    let features = usizes("nodes_featureids")?;
    let true_ids = usizes("nodes_truenodeids")?;
    let false_ids = usizes("nodes_falsenodeids")?;
    let values: Vec<f32> = node.get_attr_vec("nodes_values")?;
    let modes: Vec<String> = node.get_attr_vec::<String>("nodes_modes")?;
    let n = tree_ids.len();
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_values", values.len()),
        ("nodes_modes", modes.len()),
    ] {
        node.expect(len == n, || {
            format!("{name} has {len} entries, nodes_treeids has {n}")
        })?;
    }
    let nan_true: Vec<i64> = node
        .get_attr_opt_vec("nodes_missing_value_tracks_true")?
        .unwrap_or_else(|| vec![0; n]);
    node.expect(
        nan_true.len() == n,
        "nodes_missing_value_tracks_true has one entry per node",
    )?;

    let leaf_trees = usizes("target_treeids")?;
    let leaf_nodes = usizes("target_nodeids")?;
    let leaf_targets = usizes("target_ids")?;
    let leaf_weights: Vec<f32> = node.get_attr_vec("target_weights")?;
    let m = leaf_trees.len();
    node.expect(
        leaf_nodes.len() == m && leaf_targets.len() == m && leaf_weights.len() == m,
        "target_* attributes have the same length",
    )?;
    if let Some(t) = leaf_targets.iter().find(|t| **t >= n_targets) {
        bail!("target id {t} is out of range for n_targets={n_targets}");
    }

    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (tree_ids[i], node_ids[i]));
    let mut leaf_order: Vec<usize> = (0..m).collect();
    leaf_order.sort_by_key(|&i| (leaf_trees[i], leaf_nodes[i]));

    let mut trees: Vec<u32> = vec![];
    let mut nodes: Vec<u32> = vec![];
    let mut leaves: Vec<u32> = vec![];
    let mut next_leaf = 0;
    let mut tree_size = 0;
    for (pos, &i) in order.iter().enumerate() {
        if pos == 0 || tree_ids[i] != tree_ids[order[pos - 1]] {
            node.expect(tree_ids[i] == trees.len(), || {
                format!(
                    "tree ids must run 0,1,2..., found {} after {} trees",
                    tree_ids[i],
                    trees.len()
                )
            })?;
            trees.push((nodes.len() / 5) as u32);
            tree_size = order[pos..]
                .iter()
                .take_while(|&&j| tree_ids[j] == tree_ids[i])
                .count();
        }
        let base = *trees.last().unwrap();
        node.expect(node_ids[i] == nodes.len() / 5 - base as usize, || {
            format!("node ids in tree {} must run 0,1,2...", tree_ids[i])
        })?;
        match branch_mode(&modes[i])? {
            Some((cmp, swap)) => {
                let (t, f) = if swap {
                    (false_ids[i], true_ids[i])
                } else {
                    (true_ids[i], false_ids[i])
                };
                node.expect(t < tree_size && f < tree_size, || {
                    format!(
                        "tree {} node {} points outside its tree",
                        tree_ids[i], node_ids[i]
                    )
                })?;
                let nan = (nan_true[i] != 0) ^ swap;
                nodes.extend([
                    features[i] as u32,
                    base + t as u32,
                    base + f as u32,
                    values[i].to_bits(),
                    cmp as u32 | (0x100 * nan as u32),
                ]);
            }
            None => {
                let start = (leaves.len() / 2) as u32;
                while next_leaf < m
                    && (
                        leaf_trees[leaf_order[next_leaf]],
                        leaf_nodes[leaf_order[next_leaf]],
                    ) == (tree_ids[i], node_ids[i])
                {
                    let l = leaf_order[next_leaf];
                    leaves.extend([leaf_targets[l] as u32, leaf_weights[l].to_bits()]);
                    next_leaf += 1;
                }
                nodes.extend([start, (leaves.len() / 2) as u32, 0, 0, 0]);
            }
        }
    }
    node.expect(
        next_leaf == m,
        "every target_* entry belongs to a LEAF node",
    )?;
    let max_used_feature = features.iter().copied().max().unwrap_or(0);
    let data = TreeEnsembleData {
        trees: rctensor1(&trees),
        nodes: tensor1(&nodes)
            .into_shape(&[nodes.len() / 5, 5])?
            .into_arc_tensor(),
        leaves: tensor1(&leaves)
            .into_shape(&[leaves.len() / 2, 2])?
            .into_arc_tensor(),
    };
    TreeEnsemble::build(data, max_used_feature, n_targets, aggregate)
}
