//! The statistics themselves, each on plain slices: two-sample tests
//! (Kolmogorov–Smirnov, chi-square, z-test of proportions) give p-values;
//! distances (normalised Wasserstein, Jensen–Shannon, population stability
//! index) compare two distributions. Every definition follows what Evidently
//! calls with scipy by default, so the values agree to rounding: see
//! `scripts/make_drift_fixtures.py` and `tests/fixtures/drift/cases.json`.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// Samples up to this size (each) get scipy's exact KS distribution, as
/// `scipy.stats.ks_2samp(method="auto")` does; larger ones the asymptotic one.
pub const KS_EXACT_MAX: usize = 10_000;

/// Two-sample Kolmogorov–Smirnov test, two-sided: the largest gap between the
/// two empirical CDFs and the probability of a gap at least that large when
/// both samples come from one continuous distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ks {
    pub statistic: f64,
    pub p_value: f64,
}

/// KS test of two non-empty samples (any order; NaN-free).
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> Ks {
    let (a, b) = (sorted(a), sorted(b));
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return Ks {
            statistic: 0.0,
            p_value: 1.0,
        };
    }
    // The gap in units of 1/lcm(n1, n2): |i/n1 − j/n2| · lcm = |i·n2 − j·n1| / g,
    // an integer, so the statistic is exact and ties cost nothing.
    let g = gcd(n1, n2);
    let (mut i, mut j, mut widest) = (0usize, 0usize, 0u64);
    while i < n1 || j < n2 {
        let v = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.min(*y),
            (Some(x), None) => *x,
            (None, Some(y)) => *y,
            (None, None) => unreachable!(),
        };
        while i < n1 && a[i] <= v {
            i += 1;
        }
        while j < n2 && b[j] <= v {
            j += 1;
        }
        let gap = (i as i128 * n2 as i128 - j as i128 * n1 as i128).unsigned_abs() / g as u128;
        widest = widest.max(gap as u64);
    }
    let lcm = (n1 / g) as f64 * n2 as f64;
    let statistic = widest as f64 / lcm;
    let p_value = if widest == 0 {
        1.0
    } else if n1.max(n2) <= KS_EXACT_MAX {
        ks_exact_p(n1, n2, widest)
    } else {
        ks_asymptotic_p(n1, n2, statistic)
    };
    Ks {
        statistic,
        p_value: p_value.clamp(0.0, 1.0),
    }
}

/// P(D ≥ h / lcm(m, n)) under the null, exactly: the share of monotone lattice
/// paths from (0, 0) to (m, n) that leave the band |x·n/g − y·m/g| < h
/// (Hodges 1958). Each column holds, per point, the probability that a random
/// path to it has left the band already, so every value stays in [0, 1] and
/// tiny p-values keep their relative precision (Viehmann 2021, "Numerically
/// more stable computation of the p-values for the two-sample
/// Kolmogorov–Smirnov test"). O(m · band width) time, O(n) memory.
fn ks_exact_p(m: usize, n: usize, h: u64) -> f64 {
    let (m, n) = if m >= n { (m, n) } else { (n, m) };
    let g = gcd(m, n);
    let (mg, ng, h) = ((m / g) as i64, (n / g) as i64, h as i64);
    let n_i = n as i64;
    // Rows of column x inside the band: lo ..= hi − 1.
    let lo = |x: i64| ((x * ng - h).div_euclid(mg) + 1).clamp(0, n_i) as usize;
    let hi = |x: i64| ((x * ng + h + mg - 1) / mg).min(n_i + 1) as usize;
    // Outside the band a path has left it: probability 1.
    let mut col = vec![1.0f64; n + 1];
    let (mut last_lo, first_hi) = (0, hi(0));
    col[..first_hi].fill(0.0);
    for x in 1..=m as i64 {
        let (l, u) = (lo(x), hi(x));
        if u <= l {
            return 1.0;
        }
        col[last_lo..l].fill(1.0);
        let xf = x as f64;
        for y in l..u {
            let below = if y == 0 { 0.0 } else { col[y - 1] };
            let yf = y as f64;
            // A path to (x, y) came from (x−1, y) with probability x/(x+y).
            col[y] = (col[y] * xf + below * yf) / (xf + yf);
        }
        last_lo = l;
    }
    col[n]
}

/// Kolmogorov's limiting distribution at λ = (√N + 0.12 + 0.11/√N)·D with
/// N = n1·n2/(n1+n2) (Stephens' small-sample correction). Used above
/// [`KS_EXACT_MAX`], where scipy switches to its own asymptotic form; the two
/// agree to about 1 % there.
fn ks_asymptotic_p(n1: usize, n2: usize, d: f64) -> f64 {
    let en = (n1 as f64 * n2 as f64) / (n1 + n2) as f64;
    let root = en.sqrt();
    kolmogorov_sf((root + 0.12 + 0.11 / root) * d)
}

/// P(K > λ) for Kolmogorov's distribution, by whichever series converges fast.
fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.18 {
        // 1 − √(2π)/λ · Σ exp(−(2k−1)²π²/(8λ²))
        let mut s = 0.0;
        for k in 1..=8 {
            let t = (2 * k - 1) as f64 * std::f64::consts::PI / lambda;
            s += (-t * t / 8.0).exp();
        }
        1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * s
    } else {
        // 2 Σ (−1)^(k−1) exp(−2k²λ²)
        let mut s = 0.0;
        for k in 1..=20 {
            let k = k as f64;
            let term = (-2.0 * k * k * lambda * lambda).exp();
            s += if k as u64 % 2 == 1 { term } else { -term };
        }
        2.0 * s
    }
}

/// Pearson's chi-square test of `observed` counts against `expected` counts
/// (same categories, the expected ones scaled to the observed total): scipy's
/// `chisquare(observed, expected)`. A category observed but never expected
/// makes the statistic infinite (p = 0); one category only has no test (`None`).
pub fn chi_square_p(observed: &[f64], expected: &[f64]) -> Option<f64> {
    if observed.len() < 2 {
        return None;
    }
    let mut statistic = 0.0;
    for (o, e) in observed.iter().zip(expected) {
        statistic += if *e == 0.0 {
            if *o == 0.0 { 0.0 } else { f64::INFINITY }
        } else {
            (o - e) * (o - e) / e
        };
    }
    let dist = ChiSquared::new((observed.len() - 1) as f64).ok()?;
    Some(if statistic.is_infinite() {
        0.0
    } else {
        dist.sf(statistic)
    })
}

/// Two-sided z-test of two proportions, `hits` out of `n` on each side, with
/// the pooled proportion: p = 2·(1 − Φ(|z|)) as Evidently writes it (so a
/// p-value below ~1e-16 rounds to 0 there and here alike).
pub fn z_test_p(hits1: f64, n1: f64, hits2: f64, n2: f64) -> f64 {
    let (p1, p2) = (hits1 / n1, hits2 / n2);
    let pooled = (hits1 + hits2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return 1.0;
    }
    let z = (p1 - p2) / se;
    let normal = Normal::standard();
    2.0 * (1.0 - normal.cdf(z.abs()))
}

/// First Wasserstein distance between two samples: the area between their
/// empirical CDFs (scipy's `wasserstein_distance` without weights).
pub fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    let (a, b) = (sorted(a), sorted(b));
    if a.is_empty() || b.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
    all.sort_by(f64::total_cmp);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut area) = (0, 0, 0.0);
    for w in all.windows(2) {
        while i < a.len() && a[i] <= w[0] {
            i += 1;
        }
        while j < b.len() && b[j] <= w[0] {
            j += 1;
        }
        area += (i as f64 / na - j as f64 / nb).abs() * (w[1] - w[0]);
    }
    area
}

/// W1 divided by the reference's population standard deviation (at least
/// 0.001), Evidently's `wasserstein_distance_norm`: comparable across columns.
pub fn wasserstein_norm(reference: &[f64], current: &[f64]) -> f64 {
    wasserstein(reference, current) / population_std(reference).max(0.001)
}

/// Population stability index Σ (r − c)·ln(r/c) over bin shares. Empty bins
/// must be filled first ([`fill_zeroes`]), as Evidently does.
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(r, c)| (r - c) * (r / c).ln())
        .sum()
}

/// Jensen–Shannon distance (natural log, so in [0, √ln 2]) between two
/// histograms, each normalised to sum 1 first: scipy's `jensenshannon`.
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    let mut divergence = 0.0;
    for (a, b) in p.iter().zip(q) {
        let (a, b) = (a / sp, b / sq);
        let m = (a + b) / 2.0;
        divergence += rel_entr(a, m) + rel_entr(b, m);
    }
    (divergence / 2.0).max(0.0).sqrt()
}

fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Evidently's `feel_zeroes` for PSI: empty bins get a tiny share so the log
/// stays finite — the smallest non-zero share / 10⁶ if that is ≤ 10⁻⁴, else
/// 10⁻⁴.
pub fn fill_zeroes(shares: &mut [f64]) {
    let smallest = shares
        .iter()
        .copied()
        .filter(|s| *s != 0.0)
        .fold(f64::INFINITY, f64::min);
    if !smallest.is_finite() {
        return;
    }
    let fill = if smallest <= 1e-4 {
        smallest / 1e6
    } else {
        1e-4
    };
    for s in shares.iter_mut().filter(|s| **s == 0.0) {
        *s = fill;
    }
}

/// numpy's `histogram_bin_edges(values, bins="sturges")`: ⌈log₂ n + 1⌉ equal
/// bins from the smallest to the largest value (one bin of width 1 around a
/// constant), edges computed as `linspace` does.
pub fn sturges_edges(values: &[f64]) -> Vec<f64> {
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    if values.is_empty() {
        (lo, hi) = (0.0, 1.0);
    }
    // The bin width comes from the data's range, before a constant's range is
    // widened to 1.
    let width = (hi - lo) / ((values.len() as f64).log2() + 1.0);
    if lo == hi {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let bins = if width > 0.0 {
        ((hi - lo) / width).ceil().max(1.0) as usize
    } else {
        1
    };
    let step = (hi - lo) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| i as f64 * step + lo).collect();
    edges[bins] = hi;
    edges
}

/// Counts of `values` in the bins between consecutive `edges` (each bin
/// half-open, the last one closed), as `numpy.histogram`; values outside are
/// not counted.
pub fn histogram(values: &[f64], edges: &[f64]) -> Vec<f64> {
    let bins = edges.len().saturating_sub(1);
    let mut counts = vec![0.0; bins];
    if bins == 0 {
        return counts;
    }
    for v in values {
        if *v < edges[0] || *v > edges[bins] {
            continue;
        }
        let i = edges
            .partition_point(|e| e <= v)
            .saturating_sub(1)
            .min(bins - 1);
        counts[i] += 1.0;
    }
    counts
}

/// Population standard deviation (numpy's `np.std`, ddof 0).
pub fn population_std(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ks_matches_small_closed_forms() {
        // n = m = 1: D is 1 whenever the values differ, and P(D ≥ 1) = 1.
        assert_eq!(ks_two_sample(&[0.0], &[1.0]).p_value, 1.0);
        // m = n = 2 with disjoint samples: D = 1; 2 of the C(4,2) = 6
        // orderings put one sample wholly first, so p = 2/6.
        let ks = ks_two_sample(&[0.0, 1.0], &[2.0, 3.0]);
        assert_eq!(ks.statistic, 1.0);
        assert!((ks.p_value - 2.0 / 6.0).abs() < 1e-15, "{ks:?}");
        // m = 3, n = 2 disjoint: D = 1; 2 of C(5,2) = 10 orderings.
        let ks = ks_two_sample(&[0.0, 1.0, 2.0], &[5.0, 6.0]);
        assert!((ks.p_value - 0.2).abs() < 1e-15, "{ks:?}");
        // The same values on both sides: no gap, p = 1.
        assert_eq!(ks_two_sample(&[1.0, 2.0], &[2.0, 1.0]).p_value, 1.0);
    }

    #[test]
    fn asymptotic_ks_is_continuous_between_its_two_series() {
        // scipy.special.kolmogorov(1.18) and (1.358).
        let (below, above) = (kolmogorov_sf(1.18 - 1e-12), kolmogorov_sf(1.18 + 1e-12));
        for got in [below, above] {
            assert!(
                (got - 0.1234538094297657).abs() < 1e-8,
                "{below} vs {above}"
            );
        }
        assert!((kolmogorov_sf(1.358) - 0.05002679733444698).abs() < 1e-8);
    }

    #[test]
    fn histogram_puts_the_maximum_in_the_last_bin_and_edges_are_closed_below() {
        let edges = [0.0, 1.0, 2.0];
        assert_eq!(histogram(&[0.0, 0.5, 1.0, 2.0, 2.5], &edges), [2.0, 2.0]);
        // A constant gets one bin of width 1 around it.
        assert_eq!(sturges_edges(&[3.0, 3.0]), [2.5, 3.5]);
    }

    #[test]
    fn fill_zeroes_uses_a_millionth_of_tiny_shares() {
        let mut s = [0.5, 0.0, 0.5];
        fill_zeroes(&mut s);
        assert_eq!(s, [0.5, 1e-4, 0.5]);
        let mut s = [1e-5, 0.0];
        fill_zeroes(&mut s);
        assert_eq!(s, [1e-5, 1e-5 / 1e6]);
    }
}
