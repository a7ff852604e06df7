//! A fitted linear model written as ONNX (opset 17, standard ops only), in
//! the shape wasmops builds and devices serve: input `X` float `[N, F]`;
//! a classifier answers `label` int64 `[N]` (the class codes it was trained
//! on) and `probabilities` float `[N, K]`, a regressor `variable` float
//! `[N, 1]`. Standardisation is folded into the weights; missing values
//! (NaN) are filled with the training mean by `IsNaN` + `Where`, present only
//! when the training data had missing values.
//!
//! Graph: `X → [Where(IsNaN(X), fill, X)] → MatMul(W) → Add(b)` then, for a
//! classifier, `Softmax → probabilities` and `Gather(classes, ArgMax) → label`.

use prost::Message;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::type_proto::{Tensor as TensorType, Value as TypeValue};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// What the linear scores become.
#[derive(Debug, Clone, PartialEq)]
pub enum Head {
    /// Softmax probabilities and the class code of the largest.
    Classifier { classes: Vec<i64> },
    /// One value per row.
    Regressor,
}

/// `scores = fill_missing(X) · weights + bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub features: usize,
    /// Per feature, the value a missing (NaN) input takes; `None`: no fill.
    pub fill: Option<Vec<f32>>,
    /// `features × outputs`, row-major.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub head: Head,
}

fn dims(shape: &[Option<i64>]) -> TensorShapeProto {
    TensorShapeProto {
        dim: shape
            .iter()
            .map(|d| Dimension {
                denotation: String::new(),
                value: Some(match d {
                    Some(n) => dimension::Value::DimValue(*n),
                    None => dimension::Value::DimParam("N".into()),
                }),
            })
            .collect(),
    }
}

fn value(name: &str, elem: DataType, shape: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(TypeValue::TensorType(TensorType {
                elem_type: elem as i32,
                shape: Some(dims(shape)),
            })),
        }),
        ..Default::default()
    }
}

fn floats(name: &str, shape: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: shape.to_vec(),
        data_type: DataType::Float as i32,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: format!("{op}_{}", outputs[0]),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

impl Linear {
    fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// The ONNX file's bytes; `about` goes into its metadata (`trained_by`).
    pub fn to_onnx(&self, about: &str) -> Vec<u8> {
        let f = self.features as i64;
        let k = self.outputs() as i64;
        assert_eq!(
            self.weights.len() as i64,
            f * k,
            "weights are features × outputs"
        );
        let mut nodes = vec![];
        let mut init = vec![
            floats("W", &[f, k], &self.weights),
            floats("B", &[k], &self.bias),
        ];
        let mut x = "X";
        if let Some(fill) = &self.fill {
            init.push(floats("fill", &[f], fill));
            nodes.push(node("IsNaN", &["X"], &["missing"], vec![]));
            nodes.push(node(
                "Where",
                &["missing", "fill", "X"],
                &["filled"],
                vec![],
            ));
            x = "filled";
        }
        nodes.push(node("MatMul", &[x, "W"], &["product"], vec![]));
        let input = value("X", DataType::Float, &[None, Some(f)]);
        let outputs = match &self.head {
            Head::Classifier { classes } => {
                assert_eq!(classes.len() as i64, k, "one class per output");
                nodes.push(node("Add", &["product", "B"], &["scores"], vec![]));
                nodes.push(node(
                    "Softmax",
                    &["scores"],
                    &["probabilities"],
                    vec![int_attr("axis", 1)],
                ));
                nodes.push(node(
                    "ArgMax",
                    &["scores"],
                    &["best"],
                    vec![int_attr("axis", 1), int_attr("keepdims", 0)],
                ));
                init.push(TensorProto {
                    name: "classes".into(),
                    dims: vec![k],
                    data_type: DataType::Int64 as i32,
                    int64_data: classes.clone(),
                    ..Default::default()
                });
                nodes.push(node(
                    "Gather",
                    &["classes", "best"],
                    &["label"],
                    vec![int_attr("axis", 0)],
                ));
                vec![
                    value("label", DataType::Int64, &[None]),
                    value("probabilities", DataType::Float, &[None, Some(k)]),
                ]
            }
            Head::Regressor => {
                nodes.push(node("Add", &["product", "B"], &["variable"], vec![]));
                vec![value("variable", DataType::Float, &[None, Some(k)])]
            }
        };
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            producer_name: "wasmops-trainer".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(GraphProto {
                name: "linear".into(),
                node: nodes,
                initializer: init,
                input: vec![input],
                output: outputs,
                ..Default::default()
            }),
            metadata_props: vec![StringStringEntryProto {
                key: "trained_by".into(),
                value: about.into(),
            }],
            ..Default::default()
        };
        model.encode_to_vec()
    }
}
