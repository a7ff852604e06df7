//! A data scientist's sample as named columns, read from CSV (header row,
//! empty cell = missing) or JSON (`{"columns": {"name": [values, null]}}`).
//!
//! A column's kind is fixed by its first value: a number makes it numeric
//! (every later value must be a finite number, or missing), anything else
//! categorical (later numbers are category names). NaN and ±inf are refused
//! rather than guessed at: a missing value is an empty cell or `null`.

use std::path::Path;

use serde::Serialize;

use crate::DriftError;

/// What a column holds, as the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Numeric,
    Categorical,
}

/// One column's values in row order; `None` is a missing cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Numeric(Vec<Option<f64>>),
    Categorical(Vec<Option<String>>),
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Numeric => "numeric",
            Kind::Categorical => "categorical",
        }
    }
}

impl Values {
    pub fn kind(&self) -> Kind {
        match self {
            Values::Numeric(_) => Kind::Numeric,
            Values::Categorical(_) => Kind::Categorical,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Values::Numeric(v) => v.len(),
            Values::Categorical(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many cells are missing.
    pub fn missing(&self) -> usize {
        match self {
            Values::Numeric(v) => v.iter().filter(|x| x.is_none()).count(),
            Values::Categorical(v) => v.iter().filter(|x| x.is_none()).count(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
}

/// Named columns of equal length.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: usize,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Reads `path` as JSON if it starts with `{`, else as CSV. `what` names the
    /// file in errors ("reference", "current"). Columns that `like` has keep
    /// its kinds (current data is read as the reference was).
    pub fn read(path: &Path, what: &str, like: Option<&Table>) -> Result<Table, DriftError> {
        let bytes = std::fs::read(path).map_err(|e| DriftError::Input {
            what: what.to_string(),
            detail: format!("cannot read {}: {e}", path.display()),
        })?;
        let table = if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            Table::from_json(&bytes, like)
        } else {
            Table::from_csv(&bytes, like)
        };
        table.map_err(|detail| DriftError::Input {
            what: what.to_string(),
            detail: format!("{}: {detail}", path.display()),
        })
    }

    /// Parses CSV with a header row. Errors name the line and column.
    pub fn from_csv(bytes: &[u8], like: Option<&Table>) -> Result<Table, String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| csv_error(&e))?
            .iter()
            .map(str::to_string)
            .collect();
        if header.is_empty() || header.iter().all(String::is_empty) {
            return Err("the file is empty: a header row naming the columns comes first".into());
        }
        check_names(&header)?;
        let mut builders: Vec<Builder> = header.iter().map(|h| Builder::new(h, like)).collect();
        let mut rows = 0;
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(&e))?;
            rows += 1;
            // Line of the record in the file: the header is line 1.
            let line = record.position().map_or(rows + 1, |p| p.line() as usize);
            for (b, cell) in builders.iter_mut().zip(record.iter()) {
                let cell = (!cell.is_empty()).then_some(cell);
                b.push_text(cell, &format!("line {line}"))?;
            }
        }
        finish(builders, rows)
    }

    /// Parses `{"columns": {"name": [number | string | bool | null, …]}}`,
    /// or the inputs JSON models take (`{"inputs": [{"name", "shape",
    /// "data"}]}`): a `[rows]` tensor is a column of its name, a
    /// `[rows, k]` tensor `k` columns `name[0]` … `name[k-1]`.
    pub fn from_json(bytes: &[u8], like: Option<&Table>) -> Result<Table, String> {
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(bytes)
            && let Some(inputs) = o.get("inputs")
        {
            return Table::from_json(inputs_as_columns(inputs)?.as_bytes(), like);
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            columns: InOrder,
        }
        let file: File = serde_json::from_slice(bytes).map_err(|e| {
            format!("not the expected JSON {{\"columns\": {{\"name\": [values]}}}}: {e}")
        })?;
        let names: Vec<String> = file.columns.0.iter().map(|(k, _)| k.clone()).collect();
        check_names(&names)?;
        let mut builders = vec![];
        let mut rows = None;
        for (name, values) in file.columns.0 {
            let serde_json::Value::Array(values) = values else {
                return Err(format!("column `{name}` is not an array of values"));
            };
            match rows {
                None => rows = Some(values.len()),
                Some(n) if n != values.len() => {
                    return Err(format!(
                        "column `{name}` has {} values, the columns before it {n}: every column needs one value per row",
                        values.len()
                    ));
                }
                Some(_) => {}
            }
            let mut b = Builder::new(&name, like);
            for (i, v) in values.iter().enumerate() {
                let at = format!("row {}", i + 1);
                match v {
                    serde_json::Value::Null => b.push_text(None, &at)?,
                    serde_json::Value::Number(x) => {
                        b.push_number(x.as_f64().unwrap_or(f64::NAN), &x.to_string(), &at)?
                    }
                    serde_json::Value::String(s) => b.push_category(s, &at)?,
                    serde_json::Value::Bool(x) => b.push_category(&x.to_string(), &at)?,
                    other => {
                        return Err(format!(
                            "{at} of column `{name}`: {other} is not a number, a string or null"
                        ));
                    }
                }
            }
            builders.push(b);
        }
        finish(builders, rows.unwrap_or(0))
    }
}

/// A JSON object's entries in file order (serde_json's map sorts them).
struct InOrder(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for InOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<InOrder, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = InOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of columns")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<InOrder, A::Error> {
                let mut out = vec![];
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(InOrder(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// `{"inputs": [tensors]}` rewritten as `{"columns": {…}}`, in tensor order.
fn inputs_as_columns(inputs: &serde_json::Value) -> Result<String, String> {
    let Some(tensors) = inputs.as_array() else {
        return Err("`inputs` is not an array of tensors".into());
    };
    let mut columns: Vec<String> = vec![];
    let mut rows = None;
    for (i, t) in tensors.iter().enumerate() {
        let name = t["name"].as_str().unwrap_or_default();
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_u64().map(|d| d as usize))
                    .collect()
            })
            .unwrap_or_default();
        let Some(data) = t["data"].as_array() else {
            return Err(format!("input {} (`{name}`) has no data array", i + 1));
        };
        let (n, k) = match shape.as_slice() {
            [n] => (*n, None),
            [n, k] => (*n, Some(*k)),
            _ => {
                return Err(format!(
                    "input `{name}` has shape {:?}: a dataset takes [rows] or [rows, columns]",
                    t["shape"]
                ));
            }
        };
        if name.is_empty() || n * k.unwrap_or(1) != data.len() {
            return Err(format!(
                "input {} (`{name}`): a name, and shape {shape:?} holding {} values",
                i + 1,
                data.len()
            ));
        }
        if *rows.get_or_insert(n) != n {
            return Err(format!(
                "input `{name}` has {n} rows, the inputs before it {}",
                rows.unwrap_or(0)
            ));
        }
        let column =
            |values: Vec<&serde_json::Value>| serde_json::to_string(&values).expect("json");
        match k {
            None => columns.push(format!(
                "{}: {}",
                serde_json::to_string(name).expect("json"),
                column(data.iter().collect())
            )),
            Some(k) => {
                for j in 0..k {
                    columns.push(format!(
                        "{}: {}",
                        serde_json::to_string(&format!("{name}[{j}]")).expect("json"),
                        column(data.iter().skip(j).step_by(k).collect())
                    ));
                }
            }
        }
    }
    Ok(format!("{{\"columns\": {{{}}}}}", columns.join(", ")))
}

fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => format!(
            "line {} has {len} cells, the header {expected_len}: every row needs one cell per column",
            pos.as_ref().map_or(0, |p| p.line())
        ),
        csv::ErrorKind::Utf8 { pos, .. } => format!(
            "line {} is not UTF-8 text",
            pos.as_ref().map_or(0, |p| p.line())
        ),
        _ => format!("not CSV: {e}"),
    }
}

fn check_names(names: &[String]) -> Result<(), String> {
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(format!("column {} has no name", i + 1));
        }
        if names[..i].contains(n) {
            return Err(format!("column `{n}` appears twice"));
        }
    }
    Ok(())
}

fn finish(builders: Vec<Builder>, rows: usize) -> Result<Table, String> {
    if rows == 0 {
        return Err("no data rows".into());
    }
    Ok(Table {
        columns: builders.into_iter().map(Builder::finish).collect(),
        rows,
    })
}

/// A column being read: its kind is unknown until its first value.
struct Builder {
    name: String,
    values: Option<Values>,
    leading_missing: usize,
}

impl Builder {
    fn new(name: &str, like: Option<&Table>) -> Builder {
        let values = like.and_then(|t| t.column(name)).map(|c| match c.values {
            Values::Numeric(_) => Values::Numeric(vec![]),
            Values::Categorical(_) => Values::Categorical(vec![]),
        });
        Builder {
            name: name.to_string(),
            values,
            leading_missing: 0,
        }
    }

    fn push_text(&mut self, cell: Option<&str>, at: &str) -> Result<(), String> {
        let Some(text) = cell else {
            match &mut self.values {
                None => self.leading_missing += 1,
                Some(Values::Numeric(v)) => v.push(None),
                Some(Values::Categorical(v)) => v.push(None),
            }
            return Ok(());
        };
        match (&self.values, text.parse::<f64>()) {
            (Some(Values::Categorical(_)), _) => self.push_category(text, at),
            (_, Ok(x)) => self.push_number(x, text, at),
            (None, Err(_)) => self.push_category(text, at),
            (Some(Values::Numeric(_)), Err(_)) => Err(not_a_number(&self.name, text, at)),
        }
    }

    fn push_number(&mut self, x: f64, text: &str, at: &str) -> Result<(), String> {
        if let Some(Values::Categorical(v)) = &mut self.values {
            v.push(Some(text.to_string()));
            return Ok(());
        }
        if !x.is_finite() {
            return Err(format!(
                "{at}, column `{}`: `{}` is not a finite number (leave the cell empty for a missing value)",
                self.name,
                shorten(text)
            ));
        }
        let lead = self.leading_missing;
        let Values::Numeric(v) = self
            .values
            .get_or_insert_with(|| Values::Numeric(vec![None; lead]))
        else {
            unreachable!("categorical handled above")
        };
        // -0.0 and 0.0 are one value.
        v.push(Some(x + 0.0));
        Ok(())
    }

    fn push_category(&mut self, text: &str, at: &str) -> Result<(), String> {
        let lead = self.leading_missing;
        match self
            .values
            .get_or_insert_with(|| Values::Categorical(vec![None; lead]))
        {
            Values::Categorical(v) => {
                v.push(Some(text.to_string()));
                Ok(())
            }
            Values::Numeric(_) => Err(not_a_number(&self.name, text, at)),
        }
    }

    fn finish(self) -> Column {
        Column {
            name: self.name,
            // A column with no value at all: numeric and all missing.
            values: self
                .values
                .unwrap_or(Values::Numeric(vec![None; self.leading_missing])),
        }
    }
}

fn not_a_number(column: &str, text: &str, at: &str) -> String {
    format!(
        "{at}, column `{column}`: `{}` is not a number, and the column is numeric (its first value, or the reference's, was a number)",
        shorten(text)
    )
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_kinds_come_from_the_first_value_and_empty_cells_are_missing() {
        let t = Table::from_csv(b"a,b,c\n,x,1\n2.5,3,\n1,y,2\n", None).unwrap();
        assert_eq!(t.rows, 3);
        assert_eq!(
            t.columns[0].values,
            Values::Numeric(vec![None, Some(2.5), Some(1.0)])
        );
        assert_eq!(
            t.columns[1].values,
            Values::Categorical(vec![Some("x".into()), Some("3".into()), Some("y".into())])
        );
        assert_eq!(t.columns[2].values.missing(), 1);
    }

    #[test]
    fn bad_csv_is_refused_naming_the_line_and_column() {
        let e = Table::from_csv(b"a,b\n1,2\n3\n", None).unwrap_err();
        assert!(e.contains("line 3 has 1 cells"), "{e}");
        let e = Table::from_csv(b"a,b\n1,2\n3,oops\n", None).unwrap_err();
        assert!(
            e.contains("line 3, column `b`: `oops` is not a number"),
            "{e}"
        );
        let e = Table::from_csv(b"a\n1\ninf\n", None).unwrap_err();
        assert!(
            e.contains("line 3, column `a`: `inf` is not a finite number"),
            "{e}"
        );
        let e = Table::from_csv(b"a\nNaN\n", None).unwrap_err();
        assert!(e.contains("`NaN` is not a finite number"), "{e}");
        assert!(Table::from_csv(b"", None).unwrap_err().contains("empty"));
        assert!(
            Table::from_csv(b"a,b\n", None)
                .unwrap_err()
                .contains("no data rows")
        );
        assert!(
            Table::from_csv(b"a,a\n1,2\n", None)
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn json_columns_read_like_csv() {
        let t = Table::from_json(
            br#"{"columns":{"t":[null,1.5,2],"s":["a",null,true]}}"#,
            None,
        )
        .unwrap();
        assert_eq!(t.rows, 3);
        assert_eq!(
            t.column("t").unwrap().values,
            Values::Numeric(vec![None, Some(1.5), Some(2.0)])
        );
        assert_eq!(t.column("s").unwrap().values.kind(), Kind::Categorical);
        let e = Table::from_json(br#"{"columns":{"t":[1,2],"s":["a"]}}"#, None).unwrap_err();
        assert!(e.contains("column `s` has 1 values"), "{e}");
        let e = Table::from_json(br#"{"columns":{"t":[1,"x"]}}"#, None).unwrap_err();
        assert!(e.contains("row 2, column `t`"), "{e}");
        let e = Table::from_json(br#"{"columns":{"t":[1,[2]]}}"#, None).unwrap_err();
        assert!(e.contains("row 2 of column `t`"), "{e}");
    }

    #[test]
    fn the_inputs_json_reads_as_columns() {
        let t = Table::from_json(
            br#"{"inputs":[{"name":"X","shape":[2,2],"data":[1,2,3,null]},{"name":"y","shape":[2],"data":["a","b"]}]}"#,
            None,
        )
        .unwrap();
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["X[0]", "X[1]", "y"]);
        assert_eq!(
            t.column("X[1]").unwrap().values,
            Values::Numeric(vec![Some(2.0), None])
        );
        for (bad, says) in [
            (
                r#"{"inputs":[{"name":"X","shape":[2,2],"data":[1,2,3]}]}"#,
                "holding 3 values",
            ),
            (
                r#"{"inputs":[{"name":"X","shape":[1,1,1],"data":[1]}]}"#,
                "[rows] or [rows, columns]",
            ),
            (
                r#"{"inputs":[{"name":"X","shape":[1],"data":[1]},{"name":"y","shape":[2],"data":[1,2]}]}"#,
                "has 2 rows",
            ),
            (r#"{"inputs":{}}"#, "not an array"),
        ] {
            let e = Table::from_json(bad.as_bytes(), None).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
