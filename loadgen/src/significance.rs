//! The statistics `loadgen compare` decides with: a Mann-Whitney U test on the per-run
//! figures of two sides, and a bootstrap confidence interval of the relative change
//! of their medians.
//!
//! Why these: latency figures of repeated runs are skewed and have outliers (one run
//! hit by a noisy neighbour), so a rank test, which assumes no distribution, decides
//! whether the sides differ, and medians, not means, say by how much. Owns: pure
//! functions of two samples. Must not: know about reports or steps.

/// Two-sided p-value of the Mann-Whitney U test that `a` and `b` come from the same
/// distribution. Exact (the distribution of U counted over every arrangement) when
/// neither side has more than [`EXACT_MAX`] values and there are no ties; otherwise
/// the normal approximation with the tie correction. Identical samples give 1.
pub fn mann_whitney_p(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return 1.0;
    }
    let u = u_statistic(a, b);
    let ties = has_ties(a, b);
    if !ties && n <= EXACT_MAX && m <= EXACT_MAX {
        let counts = u_distribution(n, m);
        let total: f64 = counts.iter().sum();
        // U is an integer without ties.
        let u = u.round() as usize;
        let below: f64 = counts[..=u].iter().sum::<f64>() / total;
        let above: f64 = counts[u..].iter().sum::<f64>() / total;
        return (2.0 * below.min(above)).min(1.0);
    }
    if ties && arrangements(n, m) <= EXACT_MAX_ARRANGEMENTS {
        return exact_p_with_ties(a, b, u);
    }
    let (nf, mf) = (n as f64, m as f64);
    let mean = nf * mf / 2.0;
    let variance =
        nf * mf / 12.0 * ((nf + mf + 1.0) - tie_term(a, b) / ((nf + mf) * (nf + mf - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    // Continuity correction of 0.5 toward the mean: U within it is no evidence at all.
    if (u - mean).abs() <= 0.5 {
        return 1.0;
    }
    let z = ((u - mean).abs() - 0.5) / variance.sqrt();
    (2.0 * normal_upper_tail(z)).min(1.0)
}

/// Sides no larger than this get the exact test (without ties).
const EXACT_MAX: usize = 40;

/// With ties, the exact test enumerates every split of the pooled values; up to this
/// many (10 runs a side is 184,756).
const EXACT_MAX_ARRANGEMENTS: f64 = 1e6;

/// C(n+m, n): the ways to split n+m values into sides of n and m.
fn arrangements(n: usize, m: usize) -> f64 {
    let mut count = 1.0f64;
    for i in 0..n.min(m) {
        count = count * (n + m - i) as f64 / (i + 1) as f64;
    }
    count
}

/// The exact two-sided p-value with ties: the share of all splits of the pooled
/// values whose U lies at least as far from its mean as the observed `u`. Server CPU
/// is read in 10 ms ticks, so equal per-run figures are common and the normal
/// approximation would be needlessly coarse for 5 runs a side.
fn exact_p_with_ties(a: &[f64], b: &[f64], u: f64) -> f64 {
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let (n, total) = (a.len(), pooled.len());
    let mean = (n * b.len()) as f64 / 2.0;
    let observed = (u - mean).abs() - 1e-9;
    // Every n-subset of the pooled indices as side a, in lexicographic order.
    let mut pick: Vec<usize> = (0..n).collect();
    let (mut extreme, mut all) = (0u64, 0u64);
    loop {
        let mut u_split = 0.0;
        let mut in_a = vec![false; total];
        for &i in &pick {
            in_a[i] = true;
        }
        for &i in &pick {
            for (j, &y) in pooled.iter().enumerate() {
                if !in_a[j] {
                    if pooled[i] > y {
                        u_split += 1.0;
                    } else if pooled[i] == y {
                        u_split += 0.5;
                    }
                }
            }
        }
        all += 1;
        if (u_split - mean).abs() >= observed {
            extreme += 1;
        }
        // Next combination.
        let Some(k) = (0..n).rev().find(|&k| pick[k] < total - n + k) else {
            break;
        };
        pick[k] += 1;
        for later in k + 1..n {
            pick[later] = pick[later - 1] + 1;
        }
    }
    extreme as f64 / all as f64
}

/// The smallest two-sided p-value the exact test can give with `n` and `m` runs
/// (both sides completely apart): 2 / C(n+m, n). Fewer runs than that needs cannot
/// reach a significance level, whatever the figures.
pub fn smallest_p(n: usize, m: usize) -> f64 {
    (2.0 / arrangements(n, m)).min(1.0)
}

/// U of `a`: pairs where the `a` value is larger, ties counting one half.
fn u_statistic(a: &[f64], b: &[f64]) -> f64 {
    let mut u = 0.0;
    for &x in a {
        for &y in b {
            if x > y {
                u += 1.0;
            } else if x == y {
                u += 0.5;
            }
        }
    }
    u
}

fn has_ties(a: &[f64], b: &[f64]) -> bool {
    let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
    all.sort_by(f64::total_cmp);
    all.windows(2).any(|w| w[0] == w[1])
}

/// Sum of t^3 - t over groups of t tied values (the variance's tie correction).
fn tie_term(a: &[f64], b: &[f64]) -> f64 {
    let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
    all.sort_by(f64::total_cmp);
    let mut term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j] == all[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        term += t * t * t - t;
        i = j;
    }
    term
}

/// How many of the C(n+m, n) arrangements give each U = 0..=n*m (no ties), by the
/// recurrence f(n, m, u) = f(n-1, m, u-m) + f(n, m-1, u).
fn u_distribution(n: usize, m: usize) -> Vec<f64> {
    // table[j] holds the distribution for (i, j) while i grows.
    let mut table: Vec<Vec<f64>> = (0..=m).map(|_| vec![1.0]).collect();
    for i in 1..=n {
        let mut row: Vec<Vec<f64>> = Vec::with_capacity(m + 1);
        row.push(vec![1.0]);
        for j in 1..=m {
            let mut dist = vec![0.0; i * j + 1];
            // The largest value is from a (U gains j) or from b (U unchanged).
            for (u, count) in table[j].iter().enumerate() {
                dist[u + j] += count;
            }
            for (u, count) in row[j - 1].iter().enumerate() {
                dist[u] += count;
            }
            row.push(dist);
        }
        table = row;
    }
    table.pop().unwrap_or_else(|| vec![1.0])
}

/// P(Z > z) for a standard normal Z (Abramowitz and Stegun 26.2.17, error < 7.5e-8).
fn normal_upper_tail(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.231_641_9 * z.abs());
    let poly = t
        * (0.319_381_530
            + t * (-0.356_563_782
                + t * (1.781_477_937 + t * (-1.821_255_978 + t * 1.330_274_429))));
    let tail = (-z * z / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt() * poly;
    if z >= 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

/// The median (the mean of the middle two for an even count); 0 for no values.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 0 {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// Relative change of the medians, `median(b) / median(a) - 1` (0 when a's is 0).
pub fn median_change(a: &[f64], b: &[f64]) -> f64 {
    let base = median(a);
    if base > 0.0 {
        median(b) / base - 1.0
    } else {
        0.0
    }
}

/// Resamples in the bootstrap: enough for stable 2.5% and 97.5% percentiles.
const BOOTSTRAP_RESAMPLES: usize = 4000;

/// A `confidence` (e.g. 0.95) percentile-bootstrap interval of [`median_change`]:
/// both sides resampled with replacement. The generator has a fixed seed, so the
/// same figures always give the same interval.
pub fn bootstrap_change_interval(a: &[f64], b: &[f64], confidence: f64) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (0.0, 0.0);
    }
    let mut rng = SplitMix64(0x6c6f_6164_6765_6e21);
    let mut resample = |values: &[f64], into: &mut Vec<f64>| {
        into.clear();
        for _ in 0..values.len() {
            into.push(values[(rng.next() % values.len() as u64) as usize]);
        }
    };
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let mut changes = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        resample(a, &mut ra);
        resample(b, &mut rb);
        changes.push(median_change(&ra, &rb));
    }
    changes.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| {
        changes[((q * (changes.len() - 1) as f64).round() as usize).min(changes.len() - 1)]
    };
    (at(tail), at(1.0 - tail))
}

/// A small, fixed-seed pseudo-random generator (SplitMix64): reproducible intervals
/// without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_distribution_matches_known_values() {
        // n = m = 2: U in 0..=4 with counts 1, 1, 2, 1, 1 (C(4,2) = 6 arrangements).
        assert_eq!(u_distribution(2, 2), vec![1.0, 1.0, 2.0, 1.0, 1.0]);
        let five = u_distribution(5, 5);
        assert_eq!(five.iter().sum::<f64>(), 252.0);
        assert!((smallest_p(5, 5) - 2.0 / 252.0).abs() < 1e-12);
    }

    #[test]
    fn identical_samples_show_no_difference() {
        let same = [100.0, 100.0, 100.0, 100.0, 100.0];
        assert_eq!(mann_whitney_p(&same, &same), 1.0);
        let a = [101.0, 99.0, 103.0, 98.0, 100.0];
        assert_eq!(mann_whitney_p(&a, &a), 1.0);
        assert_eq!(median_change(&a, &a), 0.0);
        let (low, high) = bootstrap_change_interval(&a, &a, 0.95);
        assert!(low <= 0.0 && high >= 0.0, "{low} {high}");
    }

    #[test]
    fn separated_samples_are_significant_and_the_change_is_measured() {
        let a = [100.0, 102.0, 98.0, 101.0, 99.0];
        let b: Vec<f64> = a.iter().map(|x| x * 1.2).collect();
        let p = mann_whitney_p(&a, &b);
        assert!((p - 2.0 / 252.0).abs() < 1e-12, "{p}");
        assert!((median_change(&a, &b) - 0.2).abs() < 1e-9);
        let (low, high) = bootstrap_change_interval(&a, &b, 0.95);
        assert!(low > 0.1 && high < 0.3, "{low} {high}");
        // Interleaved samples are not.
        let c = [99.5, 101.5, 98.5, 100.5, 102.5];
        assert!(mann_whitney_p(&a, &c) > 0.5);
    }

    #[test]
    fn ties_get_the_exact_test() {
        // CPU figures quantised to ticks: sides apart, with ties inside each side.
        let a = [2.980, 2.727, 2.980, 2.828, 2.929];
        let b = [3.333, 3.283, 3.434, 3.333, 3.384];
        assert!((mann_whitney_p(&a, &b) - 2.0 / 252.0).abs() < 1e-12);
        // A tie across the sides: one of the 252 splits is no longer as extreme.
        let c = [2.980, 3.333, 2.980, 2.828, 2.929];
        let p = mann_whitney_p(&c, &b);
        assert!(p > 2.0 / 252.0 && p < 0.1, "{p}");
    }

    #[test]
    fn normal_approximation_agrees_with_the_exact_test() {
        let a: Vec<f64> = (0..30).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..30).map(|i| i as f64 + 6.5).collect();
        let exact = mann_whitney_p(&a, &b);
        let a_tied: Vec<f64> = a.iter().chain([0.0].iter()).copied().collect();
        let approx = mann_whitney_p(&a_tied, &b);
        assert!(exact > 0.005 && exact < 0.2, "{exact}");
        assert!((exact - approx).abs() < 0.03, "{exact} vs {approx}");
        assert!((normal_upper_tail(1.96) - 0.025).abs() < 1e-4);
    }
}
