//! Fault injection for end-to-end tests: named points in the coordinator where
//! a test makes a pass fail (as the step's own I/O would) or hang (so the test
//! can SIGKILL the process exactly there). Set with the hidden flag
//! `--fault NAME=fail-every:N` or `--fault NAME=hang-at:N`; with no flag every
//! point is a no-op costing one comparison.
//!
//! Points: `rollout-end` (before each device's end state is published, see
//! [`crate::rollouts::controller`]).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::CoordinatorError;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    /// Passes N, 2N, 3N… fail.
    FailEvery(u64),
    /// Pass N never returns.
    HangAt(u64),
}

#[derive(Debug, Default)]
pub struct Faults {
    points: Vec<(String, Action, AtomicU64)>,
}

impl Faults {
    /// Parses `NAME=fail-every:N` / `NAME=hang-at:N` specs.
    pub fn parse(specs: &[String]) -> anyhow::Result<Faults> {
        let mut points = vec![];
        for spec in specs {
            let bad = || {
                anyhow::anyhow!(
                    "bad --fault `{spec}`: want NAME=fail-every:N or NAME=hang-at:N (N ≥ 1)"
                )
            };
            let (name, action) = spec.split_once('=').ok_or_else(bad)?;
            let (kind, n) = action.split_once(':').ok_or_else(bad)?;
            let n: u64 = n.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
            let action = match kind {
                "fail-every" => Action::FailEvery(n),
                "hang-at" => Action::HangAt(n),
                _ => return Err(bad()),
            };
            points.push((name.to_string(), action, AtomicU64::new(0)));
        }
        Ok(Faults { points })
    }

    /// One pass through point `name`.
    pub async fn hit(&self, name: &str) -> Result<(), CoordinatorError> {
        for (point, action, passes) in &self.points {
            if point != name {
                continue;
            }
            let pass = passes.fetch_add(1, Ordering::SeqCst) + 1;
            match *action {
                Action::FailEvery(n) if pass % n == 0 => {
                    tracing::warn!("fault {name}: failing pass {pass}");
                    return Err(CoordinatorError::Bus(format!(
                        "injected fault at {name} (pass {pass})"
                    )));
                }
                Action::HangAt(n) if pass == n => {
                    tracing::warn!("fault {name}: hanging at pass {pass}");
                    std::future::pending::<()>().await;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_fail_as_specified_and_specs_are_checked() {
        let f = Faults::parse(&["p=fail-every:2".into()]).unwrap();
        let mut got = vec![];
        for _ in 0..5 {
            got.push(f.hit("p").await.is_ok());
            assert!(f.hit("other").await.is_ok());
        }
        assert_eq!(got, [true, false, true, false, true]);
        for bad in ["p", "p=fail-every", "p=fail-every:0", "p=explode:1"] {
            assert!(Faults::parse(&[bad.into()]).is_err(), "{bad}");
        }
        let hang = Faults::parse(&["p=hang-at:2".into()]).unwrap();
        assert!(hang.hit("p").await.is_ok());
        let second = tokio::time::timeout(std::time::Duration::from_millis(50), hang.hit("p"));
        assert!(second.await.is_err(), "pass 2 hangs");
    }
}
