//! Traffic scenarios for a simulated fleet: each device's application draws
//! rows of a training set at random, sends them through its agent's normal
//! prediction path, and posts the outcomes to the coordinator a little
//! later (delayed labels), as a real application would. From a set time the
//! scenario changes the world:
//!
//! - `steady`: nothing changes (inputs stay the training distribution);
//! - `covariate-shift`: the chosen features (two by default) move by half
//!   their training std;
//! - `stuck-sensor`: on every tenth device the chosen feature reads 0;
//! - `concept-drift`: inputs stay, but the outcome of each row becomes the
//!   next class (the label rule changed).

use std::time::Duration;

/// Which world the devices live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Steady,
    CovariateShift,
    StuckSensor,
    ConceptDrift,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        Ok(match s {
            "steady" => Kind::Steady,
            "covariate-shift" => Kind::CovariateShift,
            "stuck-sensor" => Kind::StuckSensor,
            "concept-drift" => Kind::ConceptDrift,
            _ => {
                return Err(format!(
                    "unknown scenario `{s}`: steady, covariate-shift, stuck-sensor or concept-drift"
                ));
            }
        })
    }
}

/// A scenario with its training rows.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub kind: Kind,
    /// The model's input tensor (`[rows, features]`).
    pub input: String,
    /// Training rows (features in the model's order) …
    pub rows: Vec<Vec<f64>>,
    /// … text inputs of the same rows, `[rows]` tensors by name (a
    /// pipeline's categorical input, say) …
    pub text: Vec<(String, Vec<String>)>,
    /// … and each row's outcome, as the model names classes (empty: no
    /// outcomes are posted).
    pub outcomes: Vec<String>,
    /// Features the scenario moves or sticks (indices into a row).
    pub features: Vec<usize>,
    /// From this long after the fleet starts.
    pub change_after: Duration,
    /// Rows per prediction request.
    pub rows_per_request: usize,
    /// Outcomes are posted this long after the prediction.
    pub label_delay: Duration,
}

/// A small deterministic generator (xorshift64*): each device its own stream.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

/// Devices whose chosen sensor sticks in `stuck-sensor`: every tenth.
pub fn is_stuck(device: usize) -> bool {
    device.is_multiple_of(10)
}

impl Scenario {
    /// Population std of feature `j` in the training rows.
    fn std(&self, j: usize) -> f64 {
        let n = self.rows.len().max(1) as f64;
        let mean = self.rows.iter().map(|r| r[j]).sum::<f64>() / n;
        (self.rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n).sqrt()
    }

    /// The next class after `outcome` among the outcomes' classes.
    fn next_class(&self, outcome: &str) -> String {
        let mut classes: Vec<&String> = self.outcomes.iter().collect();
        classes.sort();
        classes.dedup();
        let i = classes.iter().position(|c| *c == outcome).unwrap_or(0);
        classes[(i + 1) % classes.len()].clone()
    }

    /// One request of device `device` (`changed`: the scenario's change has
    /// begun): the body, and the outcome of each row (if outcomes are known).
    pub fn request(&self, device: usize, changed: bool, rng: &mut Rng) -> (String, Vec<String>) {
        let width = self.rows.first().map_or(0, Vec::len);
        let n = self.rows_per_request.max(1);
        let mut data = Vec::with_capacity(n * width);
        let mut outcomes = Vec::with_capacity(n);
        let mut text: Vec<Vec<&str>> = vec![Vec::with_capacity(n); self.text.len()];
        for _ in 0..n {
            let i = rng.below(self.rows.len());
            for (k, (_, values)) in self.text.iter().enumerate() {
                text[k].push(values.get(i).map_or("", String::as_str));
            }
            let mut row = self.rows[i].clone();
            let mut outcome = self.outcomes.get(i).cloned();
            if changed {
                match self.kind {
                    Kind::Steady => {}
                    Kind::CovariateShift => {
                        for &j in &self.features {
                            row[j] += 0.5 * self.std(j);
                        }
                    }
                    Kind::StuckSensor => {
                        if is_stuck(device) {
                            for &j in &self.features {
                                row[j] = 0.0;
                            }
                        }
                    }
                    Kind::ConceptDrift => {
                        outcome = outcome.map(|o| self.next_class(&o));
                    }
                }
            }
            data.extend(row);
            outcomes.extend(outcome);
        }
        let mut inputs =
            vec![serde_json::json!({"name": self.input, "shape": [n, width], "data": data})];
        for ((name, _), values) in self.text.iter().zip(text) {
            inputs.push(serde_json::json!({"name": name, "shape": [n], "data": values}));
        }
        (
            serde_json::json!({ "inputs": inputs }).to_string(),
            outcomes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(kind: Kind) -> Scenario {
        Scenario {
            kind,
            input: "X".into(),
            rows: vec![vec![1.0, 10.0], vec![3.0, 30.0]],
            text: vec![],
            outcomes: vec!["0".into(), "1".into()],
            features: vec![0],
            change_after: Duration::ZERO,
            rows_per_request: 4,
            label_delay: Duration::ZERO,
        }
    }

    fn rows(body: &str) -> Vec<f64> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["inputs"][0]["shape"], serde_json::json!([4, 2]));
        v["inputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }

    #[test]
    fn each_scenario_changes_what_it_says() {
        let mut rng = Rng::new(7);
        // Before the change every scenario sends training rows.
        for kind in [Kind::CovariateShift, Kind::StuckSensor, Kind::ConceptDrift] {
            let (body, outcomes) = scenario(kind).request(0, false, &mut rng);
            let data = rows(&body);
            for (k, o) in outcomes.iter().enumerate() {
                let x = data[2 * k];
                assert!(x == 1.0 || x == 3.0);
                assert_eq!(o, if x == 1.0 { "0" } else { "1" });
            }
        }
        // Half a std (1.0 here) on the chosen feature only.
        let data = rows(&scenario(Kind::CovariateShift).request(3, true, &mut rng).0);
        for pair in data.chunks(2) {
            assert!(pair[0] == 1.5 || pair[0] == 3.5, "{pair:?}");
            assert!(pair[1] == 10.0 || pair[1] == 30.0);
        }
        // Stuck on every tenth device only.
        let s = scenario(Kind::StuckSensor);
        assert!(
            rows(&s.request(10, true, &mut rng).0)
                .chunks(2)
                .all(|p| p[0] == 0.0)
        );
        assert!(
            rows(&s.request(11, true, &mut rng).0)
                .chunks(2)
                .all(|p| p[0] != 0.0)
        );
        // Concept drift: the outcome is the next class, the inputs stay.
        let (body, outcomes) = scenario(Kind::ConceptDrift).request(0, true, &mut rng);
        for (pair, o) in rows(&body).chunks(2).zip(&outcomes) {
            assert_eq!(o, if pair[0] == 1.0 { "1" } else { "0" });
        }
        assert!("drifting".parse::<Kind>().unwrap_err().contains("steady"));
    }
}
