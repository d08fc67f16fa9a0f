//! Statistics for comparing refusal rates: intervals, paired tests and multiple-comparison correction.
//!
//! Everything here is closed-form or a finite sum, deterministic, and free of panics on any
//! input: bad input is an `Err` or a `None`, never a crash. Outcomes are booleans where `true`
//! means the event being counted (in parallax: a refusal).
//!
//! The methods, and why each was chosen:
//!
//! - one rate: the Wilson score interval ([`wilson`]);
//! - two rates over the same questions: the 2×2 [`PairedTable`], McNemar's exact test
//!   ([`mcnemar_exact`]) and Newcombe's paired score interval for the difference
//!   ([`newcombe_paired`]), bundled by [`compare_paired`];
//! - many comparisons at once: Holm's step-down adjustment ([`holm_adjust`],
//!   [`holm_significant`]);
//! - several samples of one question: [`majority`].
//!
//! Known-answer tests against statsmodels, SciPy and published worked examples live in
//! `tests/stats.rs`.

use serde::{Serialize, Serializer};

/// The standard normal quantile for a two-sided 95% interval, Φ⁻¹(0.975).
///
/// Equal to `scipy.stats.norm.ppf(0.975)`; this is the `z` behind [`Confidence::P95`].
pub const Z_95: f64 = 1.959963984540054;

/// Why a statistic could not be computed from the input it was given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("confidence level must lie strictly between 0 and 1, got {0}")]
    InvalidConfidence(f64),
    #[error("significance level alpha must lie strictly between 0 and 1, got {0}")]
    InvalidAlpha(f64),
    #[error("p-value at position {index} is not a probability in [0, 1]: {value}")]
    InvalidPValue { index: usize, value: f64 },
    #[error("paired outcome lists differ in length: {a} and {b}")]
    LengthMismatch { a: usize, b: usize },
    #[error("no paired outcomes to compare")]
    Empty,
}

/// A two-sided confidence level and its normal critical value `z = Φ⁻¹(1 − α/2)`.
///
/// Serialises as the level alone (`0.95`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confidence {
    level: f64,
    z: f64,
}

impl Confidence {
    /// 95%, with `z` = [`Z_95`] exactly.
    pub const P95: Confidence = Confidence { level: 0.95, z: Z_95 };

    /// A confidence level strictly between 0 and 1, e.g. `0.99`.
    ///
    /// `z = −Φ⁻¹((1 − level)/2)`, computed with Wichura's algorithm AS 241 (PPND16):
    /// M. J. Wichura (1988), "The percentage points of the normal distribution", Applied
    /// Statistics 37:477–484. Chosen because it is accurate to about 1 part in 10¹⁶ over the
    /// whole range with three fixed rational approximations (no iteration), and it is what R's
    /// `qnorm` uses. The lower tail `(1 − level)/2` is exact in floating point (Sterbenz), so no
    /// precision is lost to `1 − p` near 1.
    pub fn new(level: f64) -> Result<Confidence, StatsError> {
        if !(level > 0.0 && level < 1.0) {
            return Err(StatsError::InvalidConfidence(level));
        }
        let z = -normal_quantile((1.0 - level) / 2.0);
        Ok(Confidence { level, z })
    }

    /// The confidence level, e.g. `0.95`.
    pub fn level(self) -> f64 {
        self.level
    }

    /// The two-sided critical value `z`, e.g. 1.959963984540054 for 95%.
    pub fn z(self) -> f64 {
        self.z
    }
}

impl Default for Confidence {
    fn default() -> Confidence {
        Confidence::P95
    }
}

impl Serialize for Confidence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.level)
    }
}

/// A confidence interval `[lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

/// The Wilson score interval for a binomial proportion `k` of `n`.
///
/// With `p̂ = k/n` and `z` from `confidence`:
///
/// ```text
/// centre = (k + z²/2) / (n + z²)
/// half   = z · √(k(n − k)/n + z²/4) / (n + z²)
/// [lower, upper] = [centre − half, centre + half]
/// ```
///
/// Source: E. B. Wilson (1927), "Probable inference, the law of succession, and statistical
/// inference", JASA 22:209–212; the form above is the one in R. G. Newcombe (1998), "Two-sided
/// confidence intervals for the single proportion: comparison of seven methods", Statistics in
/// Medicine 17:857–872 (method 3).
///
/// Why: unlike the Wald interval `p̂ ± z√(p̂(1−p̂)/n)`, it never leaves [0, 1], never has zero
/// width at `k = 0` or `k = n` (exactly the cases "this model never refuses" produces), and its
/// coverage stays close to nominal at small `n` (Newcombe 1998; Brown, Cai & DasGupta 2001,
/// Statistical Science 16:101–133). It is also the building block of [`newcombe_paired`].
///
/// The bound at an end of the scale is set exactly (`lower = 0` when `k = 0`, `upper = 1`
/// when `k = n`), which the formula gives in exact arithmetic.
///
/// `None` when `n = 0` (no observations, no interval) or `k > n` (not a proportion).
pub fn wilson(k: u64, n: u64, confidence: Confidence) -> Option<Interval> {
    if n == 0 || k > n {
        return None;
    }
    let z = confidence.z();
    let z2 = z * z;
    let (kf, nf) = (k as f64, n as f64);
    let denominator = nf + z2;
    let centre = (kf + z2 / 2.0) / denominator;
    let half = z * (kf * (nf - kf) / nf + z2 / 4.0).sqrt() / denominator;
    let lower = if k == 0 { 0.0 } else { (centre - half).max(0.0) };
    let upper = if k == n { 1.0 } else { (centre + half).min(1.0) };
    Some(Interval { lower, upper })
}

/// McNemar's exact test: the two-sided p-value for "both arms have the same rate", from the
/// discordant counts of a paired table.
///
/// `a_only` = pairs where only A had the event (Newcombe's `b`), `b_only` = pairs where only B
/// had it (`c`). Under the null hypothesis each discordant pair is equally likely to go either
/// way, so with `m = a_only + b_only`:
///
/// ```text
/// p = min(1, 2 · P(X ≤ min(a_only, b_only))),   X ~ Binomial(m, 1/2)
/// p = 1 when m = 0
/// ```
///
/// Source: Q. McNemar (1947), "Note on the sampling error of the difference between correlated
/// proportions or percentages", Psychometrika 12:153–157, in its exact conditional (binomial)
/// form; this is `statsmodels.stats.contingency_tables.mcnemar(table, exact=True)` and
/// `scipy.stats.binomtest(min(b, c), b + c, 0.5)`.
///
/// Why: the concordant pairs carry no information about the difference, and the exact form
/// never exceeds its nominal size, which matters because per-question comparisons often have
/// only a handful of discordant pairs, where the χ² approximation is poor. It is conservative;
/// Fagerland, Lydersen & Laake (2013, BMC Medical Research Methodology 13:91) prefer the
/// mid-p variant for power. We keep the conservative test because a claimed regional
/// difference must not be an artefact of the approximation.
///
/// The tail is summed in log space (see `binomial_half_lower_tail`). Measured against SciPy,
/// the relative error is about 1e-15 · m (4e-12 at m = 4,150, 1.3e-10 at m = 100,000, 1.2e-8
/// at m = 10,000,000); a p-value below ~1e-308 underflows to 0.
pub fn mcnemar_exact(a_only: u64, b_only: u64) -> f64 {
    let Some(m) = a_only.checked_add(b_only) else {
        return 0.0; // more than 2^64 discordant pairs with any imbalance: beyond f64 anyway
    };
    if m == 0 {
        return 1.0;
    }
    let k = a_only.min(b_only);
    (2.0 * binomial_half_lower_tail(k, m)).min(1.0)
}

/// The paired 2×2 table of two aligned outcome lists (`true` = the event, e.g. a refusal).
///
/// In Newcombe's notation the cells are `a` = [`both`](Self::both),
/// `b` = [`only_a`](Self::only_a), `c` = [`only_b`](Self::only_b),
/// `d` = [`neither`](Self::neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PairedTable {
    /// Event under both A and B (`a`).
    pub both: u64,
    /// Event under A only (`b`).
    pub only_a: u64,
    /// Event under B only (`c`).
    pub only_b: u64,
    /// Event under neither (`d`).
    pub neither: u64,
}

impl PairedTable {
    /// Counts the four kinds of pair in two aligned outcome lists (same questions, same order).
    pub fn from_outcomes(a: &[bool], b: &[bool]) -> Result<PairedTable, StatsError> {
        if a.len() != b.len() {
            return Err(StatsError::LengthMismatch { a: a.len(), b: b.len() });
        }
        let mut table = PairedTable::default();
        for (&x, &y) in a.iter().zip(b) {
            match (x, y) {
                (true, true) => table.both += 1,
                (true, false) => table.only_a += 1,
                (false, true) => table.only_b += 1,
                (false, false) => table.neither += 1,
            }
        }
        Ok(table)
    }

    /// The number of pairs.
    pub fn n(&self) -> u64 {
        self.both.saturating_add(self.only_a).saturating_add(self.only_b).saturating_add(self.neither)
    }
}

/// A difference of two proportions with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairedDifference {
    /// `rate A − rate B`.
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

/// Newcombe's hybrid score interval for the difference of paired proportions
/// (`p₁ − p₂`, A minus B), "method 10" of R. G. Newcombe (1998), "Improved confidence
/// intervals for the difference between binomial proportions based on paired data",
/// Statistics in Medicine 17:2635–2650.
///
/// With `n = a + b + c + d`, `p₁ = (a + b)/n`, `p₂ = (a + c)/n`, `D = p₁ − p₂`, Wilson
/// intervals `(l₁, u₁)` for `a + b` of `n` and `(l₂, u₂)` for `a + c` of `n`:
///
/// ```text
/// lower = D − √((p₁ − l₁)² − 2φ̂(p₁ − l₁)(u₂ − p₂) + (u₂ − p₂)²)
/// upper = D + √((u₁ − p₁)² − 2φ̂(u₁ − p₁)(p₂ − l₂) + (p₂ − l₂)²)
/// ```
///
/// where `φ̂` estimates the correlation between the two marginal proportions:
///
/// ```text
/// A = ad − bc
/// φ̂ = (A − n/2) / √((a+b)(c+d)(a+c)(b+d))   if A > n/2
/// φ̂ = 0                                      if 0 ≤ A ≤ n/2
/// φ̂ = A / √((a+b)(c+d)(a+c)(b+d))           if A < 0
/// φ̂ = 0                                      if any margin is 0 (φ undefined)
/// ```
///
/// The `n/2` correction of a positive `ad − bc` is Newcombe's. It is also what two independent
/// implementations do: Fagerland, Lydersen & Laake's R package `contingencytables`
/// (`Newcombe_square_and_add_CI_paired_2x2`) and `confIntPairedProportion` in the R package
/// biostatUZH (which cites the worked example in Altman et al., *Statistics with Confidence*,
/// 2nd ed., 2000, p. 52); and it reproduces the figure that `contingencytables` publishes for
/// its Cavo et al. example (see the tests), which the uncorrected `φ̂` does not.
///
/// Why: it is the Wilson interval's square-and-add extension to paired data, so it inherits
/// its behaviour at 0 and 1 (limits stay in [−1, 1], no zero-width intervals when there are
/// no discordant pairs), it has close-to-nominal coverage in Newcombe's evaluation and in
/// Fagerland, Lydersen & Laake (2014, Statistics in Medicine 33:2850–2875), and it is closed
/// form. The bounds are clamped to [−1, 1] against rounding only.
///
/// `None` when the table is empty.
pub fn newcombe_paired(table: PairedTable, confidence: Confidence) -> Option<PairedDifference> {
    let n = table.n();
    let row_a = table.both.checked_add(table.only_a)?; // a + b: events under A
    let row_b = table.both.checked_add(table.only_b)?; // a + c: events under B
    let Interval { lower: l1, upper: u1 } = wilson(row_a, n, confidence)?;
    let Interval { lower: l2, upper: u2 } = wilson(row_b, n, confidence)?;
    let nf = n as f64;
    let p1 = row_a as f64 / nf;
    let p2 = row_b as f64 / nf;
    let estimate = (table.only_a as f64 - table.only_b as f64) / nf;
    let phi = newcombe_phi(table);

    let (d1, e2) = (p1 - l1, u2 - p2);
    let (e1, d2) = (u1 - p1, p2 - l2);
    let lower = estimate - (d1 * d1 - 2.0 * phi * d1 * e2 + e2 * e2).max(0.0).sqrt();
    let upper = estimate + (e1 * e1 - 2.0 * phi * e1 * d2 + d2 * d2).max(0.0).sqrt();
    Some(PairedDifference { estimate, lower: lower.max(-1.0), upper: upper.min(1.0) })
}

/// Newcombe's corrected `φ̂` for [`newcombe_paired`]; `ad − bc` and its comparison with
/// `n/2` are exact (u128 products of u64 counts cannot overflow).
fn newcombe_phi(t: PairedTable) -> f64 {
    let (a, b, c, d) = (t.both as u128, t.only_a as u128, t.only_b as u128, t.neither as u128);
    let margins = [a + b, c + d, a + c, b + d];
    if margins.contains(&0) {
        return 0.0;
    }
    let n = a + b + c + d;
    let (ad, bc) = (a * d, b * c);
    let numerator = if ad < bc {
        -((bc - ad) as f64)
    } else if ad - bc > n / 2 {
        // ad − bc > n/2 in integers ⇔ 2(ad − bc) > n.
        (ad - bc) as f64 - n as f64 / 2.0
    } else {
        0.0
    };
    let denominator = margins.iter().map(|&m| (m as f64).sqrt()).product::<f64>();
    numerator / denominator
}

/// Holm's step-down adjustment of p-values, returned in input order.
///
/// Sort the `m` p-values ascending, `p₍₁₎ ≤ … ≤ p₍ₘ₎`; then
///
/// ```text
/// adjusted₍ᵢ₎ = min(1, max_{j ≤ i} (m − j + 1) · p₍ⱼ₎)
/// ```
///
/// so adjusted values are monotone in the raw ones and capped at 1. Rejecting where
/// `adjusted ≤ α` is Holm's procedure. Ties get equal adjusted values.
///
/// Source: S. Holm (1979), "A simple sequentially rejective multiple test procedure",
/// Scandinavian Journal of Statistics 6:65–70; the adjusted-p form is that of
/// `statsmodels.stats.multitest.multipletests(p, method="holm")` and R's `p.adjust`.
///
/// Why: it controls the family-wise error rate under any dependence between the tests,
/// and comparisons in one report share models, regions and questions, so they are dependent.
/// It is uniformly more powerful than Bonferroni and needs no assumption that Hochberg's or
/// Hommel's methods would.
///
/// Errors if a p-value is NaN or outside [0, 1].
pub fn holm_adjust(p_values: &[f64]) -> Result<Vec<f64>, StatsError> {
    if let Some((index, &value)) = p_values.iter().enumerate().find(|(_, p)| !(0.0..=1.0).contains(*p)) {
        return Err(StatsError::InvalidPValue { index, value });
    }
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p_values[i].total_cmp(&p_values[j]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0_f64;
    for (rank, &index) in order.iter().enumerate() {
        running = running.max((m - rank) as f64 * p_values[index]);
        adjusted[index] = running.min(1.0);
    }
    Ok(adjusted)
}

/// Which hypotheses Holm's procedure rejects at family-wise level `alpha`, in input order:
/// `holm_adjust(p_values)[i] ≤ alpha`.
///
/// Takes the raw p-values (not adjusted ones). Equivalent to Holm's sequential rule: reject
/// `p₍ᵢ₎` while `p₍ⱼ₎ ≤ α/(m − j + 1)` for every `j ≤ i` (Holm 1979).
///
/// Errors if `alpha` is not strictly between 0 and 1, or a p-value is invalid.
pub fn holm_significant(p_values: &[f64], alpha: f64) -> Result<Vec<bool>, StatsError> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::InvalidAlpha(alpha));
    }
    Ok(holm_adjust(p_values)?.into_iter().map(|p| p <= alpha).collect())
}

/// A paired comparison of two arms (e.g. two models, or one model in two regions) over the
/// same questions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairedComparison {
    /// Number of pairs (questions).
    pub n: u64,
    pub table: PairedTable,
    /// Proportion of `true` under A: `(both + only_a) / n`.
    pub rate_a: f64,
    /// Proportion of `true` under B: `(both + only_b) / n`.
    pub rate_b: f64,
    /// `rate_a − rate_b` with Newcombe's paired interval ([`newcombe_paired`]).
    pub difference: PairedDifference,
    /// McNemar's exact two-sided p-value ([`mcnemar_exact`]).
    pub mcnemar_p: f64,
    /// Level of the interval in `difference`.
    pub confidence: Confidence,
}

impl PairedComparison {
    /// The comparison from an already counted table; `None` when the table is empty.
    pub fn from_table(table: PairedTable, confidence: Confidence) -> Option<PairedComparison> {
        let difference = newcombe_paired(table, confidence)?;
        let n = table.n();
        let nf = n as f64;
        Some(PairedComparison {
            n,
            table,
            rate_a: (table.both as f64 + table.only_a as f64) / nf,
            rate_b: (table.both as f64 + table.only_b as f64) / nf,
            difference,
            mcnemar_p: mcnemar_exact(table.only_a, table.only_b),
            confidence,
        })
    }
}

/// Compares two aligned outcome lists (`a[i]` and `b[i]` are the same question).
///
/// Errors when the lengths differ or the lists are empty.
pub fn compare_paired(a: &[bool], b: &[bool], confidence: Confidence) -> Result<PairedComparison, StatsError> {
    let table = PairedTable::from_outcomes(a, b)?;
    PairedComparison::from_table(table, confidence).ok_or(StatsError::Empty)
}

/// The outcome of a question asked several times: the majority of its samples, with a tie
/// counting as `true` (a refusal).
///
/// `true` when `2 · (number of true) ≥ number of samples`. Ties resolve towards refusal so that
/// a model which refuses half the time is not reported as compliant. `None` when there are no
/// samples.
pub fn majority(samples: &[bool]) -> Option<bool> {
    if samples.is_empty() {
        return None;
    }
    let yes = samples.iter().filter(|&&s| s).count();
    Some(yes >= samples.len() - yes)
}

/// `P(X ≤ k)` for `X ~ Binomial(m, 1/2)` and `k ≤ m/2`, in log space.
///
/// ```text
/// P(X ≤ k) = 2⁻ᵐ Σ_{i=0..k} C(m, i) = exp(ln C(m, k) − m ln 2) · Σ_{i=0..k} C(m, i)/C(m, k)
/// ```
///
/// The ratios are built downwards from the largest term, `C(m, i−1)/C(m, i) = i/(m − i + 1)`,
/// so they are all ≤ 1 and nothing overflows; the sum stops once a term no longer changes it
/// (terms fall geometrically, so only O(√m) of them matter). `ln C(m, k)` comes from
/// [`ln_factorial`]. Chosen over summing pmfs directly because `C(m, i)` and `2⁻ᵐ` over/underflow
/// f64 from `m ≈ 1030`.
fn binomial_half_lower_tail(k: u64, m: u64) -> f64 {
    let mf = m as f64;
    let mut term = 1.0_f64;
    let mut sum = 1.0_f64;
    let mut i = k;
    while i > 0 {
        term *= i as f64 / (mf - i as f64 + 1.0);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
        i -= 1;
    }
    let ln_choose = ln_factorial(m) - ln_factorial(k) - ln_factorial(m - k);
    (ln_choose - mf * std::f64::consts::LN_2 + sum.ln()).exp()
}

/// `ln(n!) = ln Γ(n + 1)`.
///
/// Exact (to rounding) for `n ≤ 20`, where `n!` fits in a u64. Above, Stirling's asymptotic
/// series (Abramowitz & Stegun, *Handbook of Mathematical Functions*, 6.1.41, applied as
/// `ln n! = ln n + ln Γ(n)`):
///
/// ```text
/// ln n! = n ln n − n + ½ ln(2πn) + 1/(12n) − 1/(360n³) + 1/(1260n⁵) − 1/(1680n⁷) + 1/(1188n⁹)
/// ```
///
/// whose first omitted term is below 1e-17 for `n ≥ 21`, so the error is rounding alone
/// (a few ulps of the result). Chosen over a Lanczos approximation because for the integer
/// arguments we need it is simpler and at least as accurate.
fn ln_factorial(n: u64) -> f64 {
    if n <= 20 {
        return ((1..=n).product::<u64>() as f64).ln();
    }
    let x = n as f64;
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series =
        inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 * (1.0 / 1680.0 - inv2 / 1188.0))));
    x * x.ln() - x + 0.5 * (std::f64::consts::TAU * x).ln() + series
}

/// `Φ⁻¹(p)` for `0 < p < 1`: Wichura (1988), algorithm AS 241 (PPND16), relative accuracy
/// about 1e-16. Coefficients as published (Applied Statistics 37:477–484).
#[allow(clippy::excessive_precision, clippy::unreadable_literal)]
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 8] = [
        3.3871328727963666080e0,
        1.3314166789178437745e2,
        1.9715909503065514427e3,
        1.3731693765509461125e4,
        4.5921953931549871457e4,
        6.7265770927008700853e4,
        3.3430575583588128105e4,
        2.5090809287301226727e3,
    ];
    const B: [f64; 8] = [
        1.0,
        4.2313330701600911252e1,
        6.8718700749205790830e2,
        5.3941960214247511077e3,
        2.1213794301586595867e4,
        3.9307895800092710610e4,
        2.8729085735721942674e4,
        5.2264952788528545610e3,
    ];
    const C: [f64; 8] = [
        1.42343711074968357734e0,
        4.63033784615654529590e0,
        5.76949722146069140550e0,
        3.64784832476320460504e0,
        1.27045825245236838258e0,
        2.41780725177450611770e-1,
        2.27238449892691845833e-2,
        7.74545014278341407640e-4,
    ];
    const D: [f64; 8] = [
        1.0,
        2.05319162663775882187e0,
        1.67638483018380384940e0,
        6.89767334985100004550e-1,
        1.48103976427480074590e-1,
        1.51986665636164571966e-2,
        5.47593808499534494600e-4,
        1.05075007164441684324e-9,
    ];
    const E: [f64; 8] = [
        6.65790464350110377720e0,
        5.46378491116411436990e0,
        1.78482653991729133580e0,
        2.96560571828504891230e-1,
        2.65321895265761230930e-2,
        1.24266094738807843860e-3,
        2.71155556874348757815e-5,
        2.01033439929228813265e-7,
    ];
    const F: [f64; 8] = [
        1.0,
        5.99832206555887937690e-1,
        1.36929880922735805310e-1,
        1.48753612908506148525e-2,
        7.86869131145613259100e-4,
        1.84631831751005468180e-5,
        1.42151175831644588870e-7,
        2.04426310338993978564e-15,
    ];
    fn ratio(num: &[f64; 8], den: &[f64; 8], x: f64) -> f64 {
        let horner = |c: &[f64; 8]| c.iter().rev().fold(0.0, |acc, &k| acc * x + k);
        horner(num) / horner(den)
    }

    let q = p - 0.5;
    if q.abs() <= 0.425 {
        return q * ratio(&A, &B, 0.180625 - q * q);
    }
    let tail = if q < 0.0 { p } else { 1.0 - p };
    let r = (-tail.ln()).sqrt();
    let value = if r <= 5.0 { ratio(&C, &D, r - 1.6) } else { ratio(&E, &F, r - 5.0) };
    if q < 0.0 { -value } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_factorial_is_continuous_at_the_switch_and_matches_known_values() {
        // ln(21!) = ln(51090942171709440000) and ln(100!) = 363.73937555556347 (from
        // math.lgamma(22) and math.lgamma(101) in CPython 3).
        assert!((ln_factorial(21) - 51_090_942_171_709_440_000_f64.ln()).abs() < 1e-13);
        assert!((ln_factorial(100) - 363.73937555556347).abs() < 1e-12);
        assert!((ln_factorial(20) + 21f64.ln() - ln_factorial(21)).abs() < 1e-13);
    }

    #[test]
    fn normal_quantile_matches_scipy() {
        // scipy.stats.norm.ppf(p), SciPy 1.17.1.
        for (p, expected) in [
            (0.975, 1.959963984540054),
            (0.995, 2.5758293035489004),
            (0.95, 1.6448536269514722),
            (0.5, 0.0),
            (0.6, 0.2533471031357997),
            (0.9, 1.2815515655446004),
            (0.999, 3.090232306167813),
            (1e-05, -4.264890793922825),
            (1e-12, -7.034483825301131),
            (0.025, -1.9599639845400545),
            (0.0001, -3.7190164854556804),
            (0.999999999, 5.997807019601637),
        ] {
            let got = normal_quantile(p);
            assert!((got - expected).abs() <= 1e-14 * expected.abs().max(1.0), "p={p}: {got} vs {expected}");
        }
    }
}
