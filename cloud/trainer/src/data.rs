//! A dataset file as training rows: numeric features (missing = NaN) and a
//! label, split into training and holdout rows by a seeded shuffle.

use wasmops_drift::table::{Table, Values};

use crate::TrainerError;

/// What is learnt.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Integer class codes (a classifier's `label` output gives them back).
    Classes(Vec<i64>),
    /// A numeric target (a regressor).
    Values(Vec<f64>),
}

impl Target {
    fn len(&self) -> usize {
        match self {
            Target::Classes(v) => v.len(),
            Target::Values(v) => v.len(),
        }
    }

    fn pick(&self, rows: &[usize]) -> Target {
        match self {
            Target::Classes(v) => Target::Classes(rows.iter().map(|&i| v[i]).collect()),
            Target::Values(v) => Target::Values(rows.iter().map(|&i| v[i]).collect()),
        }
    }
}

/// Rows ready for a trainer: `x` is row-major (`rows × features.len()`),
/// a missing value is NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub features: Vec<String>,
    pub x: Vec<f64>,
    pub y: Target,
    /// Rows of the file left out because their label was missing.
    pub unlabelled: usize,
}

impl Frame {
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        let f = self.features.len();
        &self.x[i * f..(i + 1) * f]
    }

    /// Parses a dataset file (JSON if it starts with `{`, else CSV).
    /// `classify`: the label is a class code (else a numeric target).
    pub fn parse(bytes: &[u8], label: &str, classify: bool) -> Result<Frame, TrainerError> {
        let table = if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            Table::from_json(bytes, None)
        } else {
            Table::from_csv(bytes, None)
        }
        .map_err(TrainerError::Data)?;
        Frame::from_table(&table, label, classify)
    }

    pub fn from_table(table: &Table, label: &str, classify: bool) -> Result<Frame, TrainerError> {
        let bad = |m: String| Err(TrainerError::Data(m));
        let Some(target) = table.column(label) else {
            return bad(format!("no label column `{label}`"));
        };
        let Values::Numeric(labels) = &target.values else {
            return bad(format!(
                "the label column `{label}` holds text: the built-in trainers take integer class codes or numbers (encode the classes, or use a command trainer)"
            ));
        };
        let mut features = vec![];
        let mut columns = vec![];
        for c in &table.columns {
            if c.name == label {
                continue;
            }
            match &c.values {
                Values::Numeric(v) => {
                    features.push(c.name.clone());
                    columns.push(v);
                }
                Values::Categorical(_) => {
                    return bad(format!(
                        "column `{}` is categorical: the built-in trainers take numeric features (encode it, or use a command trainer)",
                        c.name
                    ));
                }
            }
        }
        if features.is_empty() {
            return bad("no feature columns besides the label".into());
        }
        let keep: Vec<usize> = (0..table.rows).filter(|&i| labels[i].is_some()).collect();
        if keep.is_empty() {
            return bad(format!("the label column `{label}` has no values"));
        }
        let mut x = Vec::with_capacity(keep.len() * features.len());
        for &i in &keep {
            for col in &columns {
                x.push(col[i].unwrap_or(f64::NAN));
            }
        }
        let present: Vec<f64> = keep.iter().map(|&i| labels[i].expect("kept")).collect();
        let y = if classify {
            if let Some(v) = present
                .iter()
                .find(|v| v.fract() != 0.0 || v.abs() > (1u64 << 53) as f64)
            {
                return bad(format!(
                    "the label column `{label}` holds {v}, not an integer class code"
                ));
            }
            Target::Classes(present.iter().map(|v| *v as i64).collect())
        } else {
            Target::Values(present)
        };
        Ok(Frame {
            features,
            x,
            y,
            unlabelled: table.rows - keep.len(),
        })
    }

    /// These rows only, in this order.
    pub fn pick(&self, rows: &[usize]) -> Frame {
        let mut x = Vec::with_capacity(rows.len() * self.features.len());
        for &i in rows {
            x.extend_from_slice(self.row(i));
        }
        Frame {
            features: self.features.clone(),
            x,
            y: self.y.pick(rows),
            unlabelled: 0,
        }
    }

    /// (training rows, holdout rows): a seeded shuffle, `share` of the rows
    /// (at least one, and at least one left to train on) held out.
    pub fn split(&self, share: f64, seed: u64) -> Result<(Frame, Frame), TrainerError> {
        let n = self.rows();
        if n < 2 {
            return Err(TrainerError::Data(format!(
                "{n} labelled row: too few to train and hold out"
            )));
        }
        let mut order: Vec<usize> = (0..n).collect();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for i in (1..n).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            order.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let held = ((n as f64 * share).round() as usize).clamp(1, n - 1);
        let (holdout, train) = order.split_at(held);
        Ok((self.pick(train), self.pick(holdout)))
    }

    /// Whether `other` has the same feature columns in the same order.
    pub fn same_columns(&self, other: &Frame) -> bool {
        self.features == other.features
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_split() {
        let f = Frame::parse(b"a,b,y\n1,,0\n2,3,1\n4,5,\n6,7,1\n", "y", true).unwrap();
        assert_eq!(f.rows(), 3);
        assert_eq!(f.unlabelled, 1);
        assert!(f.row(0)[1].is_nan());
        assert_eq!(f.y, Target::Classes(vec![0, 1, 1]));
        let (train, holdout) = f.split(0.34, 7).unwrap();
        assert_eq!((train.rows(), holdout.rows()), (2, 1));
        let (again, _) = f.split(0.34, 7).unwrap();
        assert_eq!((again.x, again.y), (train.x, train.y), "seeded");
        assert_eq!(holdout.y, Target::Classes(vec![0]));
        let e = Frame::parse(b"a,y\n1,0.5\n", "y", true).unwrap_err();
        assert!(e.to_string().contains("not an integer class code"), "{e}");
        let e = Frame::parse(b"a,y\nx,1\n", "y", true).unwrap_err();
        assert!(e.to_string().contains("column `a` is categorical"), "{e}");
        let e = Frame::parse(b"a,y\n1,1\n", "label", true).unwrap_err();
        assert!(e.to_string().contains("no label column `label`"), "{e}");
    }
}
