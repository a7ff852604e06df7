use super::*;

fn run(toml: &str, mut inputs: Vec<Tensor>) -> Result<Vec<Tensor>, PipelineError> {
    Pipeline::from_toml(toml)?.apply(&mut inputs, "x")?;
    Ok(inputs)
}

fn data(t: &Tensor) -> &[f32] {
    match &t.data {
        Data::F32(v) => v,
        other => panic!("not f32: {other:?}"),
    }
}

#[test]
fn scale_impute_clip_in_order() {
    let toml = r#"
        [[step]]
        op = "impute"
        values = [1.0, 10.0]
        [[step]]
        op = "standard-scale"
        mean = [1.0, 2.0]
        std = [2.0, 4.0]
        [[step]]
        op = "clip"
        min = -1.0
        max = 1.5
    "#;
    let out = run(
        toml,
        vec![Tensor::f32("x", vec![2, 2], vec![5.0, f32::NAN, -9.0, 4.0])],
    )
    .unwrap();
    // (5-1)/2=2 -> clipped 1.5; NaN->10 -> (10-2)/4=2 -> 1.5; (-9-1)/2=-5 -> -1; (4-2)/4=0.5
    assert_eq!(data(&out[0]), &[1.5, 1.5, -1.0, 0.5]);
}

#[test]
fn min_max_matches_sklearn_formula() {
    let toml =
        "[[step]]\nop = \"min-max\"\nmin = [0.0, 10.0]\nmax = [4.0, 10.0]\nrange = [-1.0, 1.0]\n";
    let out = run(toml, vec![Tensor::f32("x", vec![1, 2], vec![1.0, 10.0])]).unwrap();
    assert_eq!(data(&out[0]), &[-0.5, -1.0]);
}

#[test]
fn one_hot_and_category_map() {
    let toml = r#"
        [[step]]
        op = "one-hot"
        column = 1
        categories = [3.0, 7.0]
        [[step]]
        op = "category-map"
        source = "color"
        categories = ["red", "green", "blue"]
    "#;
    let color = Tensor {
        name: "color".into(),
        shape: vec![2],
        data: Data::Text(vec!["blue".into(), "red".into()]),
    };
    let out = run(
        toml,
        vec![
            Tensor::f32("x", vec![2, 2], vec![0.5, 7.0, 0.25, 3.0]),
            color,
        ],
    )
    .unwrap();
    assert_eq!(out.len(), 1, "the text source is consumed");
    assert_eq!(out[0].shape, vec![2, 6]);
    assert_eq!(
        data(&out[0]),
        &[0.5, 0.0, 1.0, 0.0, 0.0, 1.0, 0.25, 1.0, 0.0, 1.0, 0.0, 0.0]
    );
}

#[test]
fn unknown_category_is_named() {
    let toml = "[[step]]\nop = \"one-hot\"\ncolumn = 0\ncategories = [1.0]\n";
    let err = run(toml, vec![Tensor::f32("x", vec![1, 1], vec![2.0])]).unwrap_err();
    assert!(err.to_string().contains("unknown category 2"), "{err}");
}

#[test]
fn resize_normalize_chw() {
    // 2x2 single-channel image upscaled to 4x4 with half-pixel centres: the ONNX
    // Resize reference gives rows [1, 1.25, 1.75, 2] for a top row of [1, 2].
    let toml = r#"
        [[step]]
        op = "resize"
        height = 4
        width = 4
        [[step]]
        op = "normalize"
        scale = 2.0
        mean = [1.0]
        std = [0.5]
        [[step]]
        op = "hwc-to-chw"
    "#;
    let out = run(
        toml,
        vec![Tensor::f32("x", vec![2, 2, 1], vec![1.0, 2.0, 3.0, 4.0])],
    )
    .unwrap();
    assert_eq!(out[0].shape, vec![1, 1, 4, 4]);
    let first_row: Vec<f32> = data(&out[0])[..4]
        .iter()
        .map(|v| (v * 0.5 + 1.0) / 2.0)
        .collect();
    assert_eq!(first_row, vec![1.0, 1.25, 1.75, 2.0]);
}

#[test]
fn hwc_to_chw_moves_channels() {
    let out = run(
        "[[step]]\nop = \"hwc-to-chw\"\n",
        vec![Tensor::f32(
            "x",
            vec![1, 1, 2, 3],
            vec![1., 2., 3., 4., 5., 6.],
        )],
    )
    .unwrap();
    assert_eq!(out[0].shape, vec![1, 3, 1, 2]);
    assert_eq!(data(&out[0]), &[1., 4., 2., 5., 3., 6.]);
}

#[test]
fn bad_config_names_the_step() {
    let err = Pipeline::from_toml("[[step]]\nop = \"standard-scale\"\nmean = [1.0]\nstd = [0.0]\n")
        .unwrap_err();
    assert!(err.to_string().contains("step 1 (standard-scale)"), "{err}");
    let err = Pipeline::from_toml("[[step]]\nop = \"sharpen\"\n").unwrap_err();
    assert!(err.to_string().contains("sharpen"), "{err}");
    let err = Pipeline::from_toml("[[step\nop=").unwrap_err();
    assert!(matches!(err, PipelineError::Parse(_)));
}

#[test]
fn wrong_width_and_nan_are_refused() {
    let err = run(
        "[[step]]\nop = \"standard-scale\"\nmean = [0.0, 0.0]\nstd = [1.0, 1.0]\n",
        vec![Tensor::f32("x", vec![1, 3], vec![0.0; 3])],
    )
    .unwrap_err();
    assert!(err.to_string().contains("last axis is 3"), "{err}");
    let err = check_finite(&Tensor::f32("x", vec![2], vec![0.0, f32::NAN])).unwrap_err();
    assert!(err.to_string().contains("element 1 is NaN"), "{err}");
}

#[test]
fn raw_shapes_are_worked_back_from_the_model_shape() {
    use Extent::*;
    let toml = "[[step]]\nop = \"one-hot\"\ncolumn = 0\ncategories = [1.0, 2.0, 3.0]\n[[step]]\nop = \"category-map\"\nsource = \"c\"\ncategories = [\"a\", \"b\"]\n";
    let p = Pipeline::from_toml(toml).unwrap();
    assert_eq!(
        p.raw_shape("x", "x", vec![Symbol("N".into()), Fixed(8)]),
        vec![Symbol("N".into()), Fixed(4)]
    );
    let img =
        "[[step]]\nop = \"resize\"\nheight = 224\nwidth = 224\n[[step]]\nop = \"hwc-to-chw\"\n";
    let p = Pipeline::from_toml(img).unwrap();
    assert_eq!(
        p.raw_shape(
            "x",
            "x",
            vec![Symbol("N".into()), Fixed(3), Fixed(224), Fixed(224)]
        ),
        vec![
            Symbol("N".into()),
            Symbol("H".into()),
            Symbol("W".into()),
            Fixed(3)
        ]
    );
}
