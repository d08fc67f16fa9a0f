//! From stored results to findings: rates with intervals, paired comparisons across regions
//! and models, divergent questions, answer drift, expectations and audits.
//!
//! [`analyse`] is pure: the CLI gathers [`Observation`]s from the store and renders the
//! [`Report`] as text, JSON (schema [`REPORT_SCHEMA`]) or HTML.

pub mod text;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::classify::Label;
use crate::stats;
use parallax_core::catalog::Price;
use parallax_core::spec::Expect;
use text::DiffOp;

/// The version of the JSON report's shape. Fields are added within a version, never renamed.
pub const REPORT_SCHEMA: &str = "parallax.report/1";

/// Significance level for the paired tests, after Holm's correction.
pub const ALPHA: f64 = 0.05;

/// One execution as the analysis sees it.
#[derive(Debug, Clone)]
pub struct Observation {
    pub question_id: String,
    pub question_text: String,
    pub expect: Option<Expect>,
    pub model_id: String,
    pub region: String,
    pub sample: u32,
    /// `pending | running | succeeded | failed | parked`.
    pub status: String,
    pub label: Option<Label>,
    /// The label's evidence conflicts or is missing (the built-in classifier's `uncertain`,
    /// false where a judge's label stands in for it).
    pub uncertain: bool,
    pub response_text: Option<String>,
    /// The SHA-256 of the request's prompt part (messages or prompt, and sampling — not the
    /// model name): equal fingerprints mean the same prompt was sent.
    pub prompt_fingerprint: String,
    /// The same for the request as encoded on the wire (a local model's rendered template,
    /// chat messages): differs across endpoint kinds even when the prompt does not.
    pub wire_fingerprint: String,
    pub model_mismatch: bool,
    /// The model the server said answered; `None` when it named none (unverified).
    pub reported_model: Option<String>,
    /// The answer's `system_fingerprint`, where the server sent one.
    pub system_fingerprint: Option<String>,
    pub endpoint: String,
    pub latency_ms: Option<i64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub price: Option<Price>,
}

/// Facts about the job the observations cannot carry.
#[derive(Debug, Clone, Default)]
pub struct JobFacts {
    pub job_id: String,
    pub planned: u64,
    /// Regions with a declared `system_by_region` override.
    pub override_regions: Vec<String>,
    /// `(endpoint, attempts, possibly billed attempts)`.
    pub endpoint_attempts: Vec<(String, i64, i64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub job_id: String,
    pub completeness: Completeness,
    /// Per model × region.
    pub cells: Vec<Cell>,
    /// Paired comparisons on the same questions (any refusal vs compliance), Holm-corrected
    /// over all of them.
    pub comparisons: Vec<Comparison>,
    /// Per question, with `samples > 1`: how often each cell refused it.
    pub sampling: Vec<QuestionSampling>,
    pub divergences: Vec<Divergence>,
    /// The least similar pairs of answers to the same question by the same model in two regions.
    pub drift: Vec<Drift>,
    pub expectations: Vec<ExpectationCell>,
    pub audits: Audits,
    /// Every question with each model × region's outcome and first answer: the heatmap and
    /// the side-by-side view.
    pub questions: Vec<QuestionRow>,
    /// With `run.probe`: each model × region's probe verdict (`same`, `different`,
    /// `nondeterministic`), since a difference between regions means little if they served
    /// different things. Empty without probes.
    pub probe_verdicts: Vec<ProbeVerdictCell>,
}

/// One region's probe verdict for one model (see `parallax_analysis::probe`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeVerdictCell {
    pub model_id: String,
    pub region: String,
    pub verdict: String,
    /// The decisive evidence, for people.
    pub evidence: Vec<String>,
    /// The probe job the verdict comes from.
    pub probe_job_id: String,
}

impl Report {
    /// What was compared and the main finding, in one sentence: the first line a reader
    /// needs.
    pub fn summary(&self) -> String {
        let pct = |x: f64| if x.is_nan() { "—".to_owned() } else { format!("{:.1}%", 100.0 * x) };
        let columns: Vec<String> = self.cells.iter().map(|c| format!("{} in {}", c.model_id, c.region)).collect();
        let compared = format!("{} on {} questions", columns.join(", "), self.questions.len());
        let n = self.comparisons.len();
        let by_gap = |a: &&Comparison, b: &&Comparison| a.difference.abs().total_cmp(&b.difference.abs());
        let Some(largest) = self.comparisons.iter().max_by(by_gap) else {
            return format!("Asked {compared}: one column, nothing to compare.");
        };
        let holm = format!("Holm-corrected over {n} comparison{}", if n == 1 { "" } else { "s" });
        match self.comparisons.iter().filter(|c| c.finding).max_by(by_gap) {
            Some(c) => format!(
                "Compared {compared}: {} refused {} and {} {} of the same questions, a difference of {} [{} – {}] (p = {:.3}, {holm}).",
                c.a,
                pct(c.rate_a),
                c.b,
                pct(c.rate_b),
                pct(c.difference),
                pct(c.ci_low),
                pct(c.ci_high),
                c.p_holm
            ),
            None => {
                let c = largest;
                format!(
                    "Compared {compared}: no significant difference ({holm}); the largest gap, {} {} vs {} {}, rests on {} question{} where they disagree.",
                    c.a,
                    pct(c.rate_a),
                    c.b,
                    pct(c.rate_b),
                    c.only_a + c.only_b,
                    if c.only_a + c.only_b == 1 { "" } else { "s" }
                )
            }
        }
    }

    /// The probe verdict of a model × region, if the job was probed.
    pub fn probe_verdict(&self, model_id: &str, region: &str) -> Option<&ProbeVerdictCell> {
        self.probe_verdicts.iter().find(|p| p.model_id == model_id && p.region == region)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QuestionRow {
    pub question_id: String,
    pub question_text: String,
    /// One per model × region, in the order of [`Report::cells`].
    pub cells: Vec<QuestionCell>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuestionCell {
    pub model_id: String,
    pub region: String,
    /// The label of sample 1 (`None`: not answered or not labelled).
    pub label: Option<Label>,
    /// Share of labelled samples that refused fully or partly.
    pub refusal_share: Option<f64>,
    pub answer: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Completeness {
    pub planned: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub parked: u64,
    pub running: u64,
    pub pending: u64,
    /// Succeeded results with a built-in label.
    pub labelled: u64,
    /// Recorded executions that are not in the plan (zero by construction; audited).
    pub outside_plan: u64,
    /// Keys recorded more than once (zero by construction; audited).
    pub duplicates: u64,
    /// planned = succeeded + failed + parked + running + pending.
    pub accounted: bool,
}

/// A proportion with its Wilson 95% interval.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Rate {
    pub k: u64,
    pub n: u64,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

impl Rate {
    fn of(k: u64, n: u64) -> Rate {
        match stats::wilson(k, n, stats::Confidence::P95) {
            Some(w) => Rate { k, n, rate: k as f64 / n as f64, low: w.lower, high: w.upper },
            None => Rate { k, n, rate: f64::NAN, low: f64::NAN, high: f64::NAN },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub model_id: String,
    pub region: String,
    /// Labelled results in this cell.
    pub n: u64,
    pub refusal: Rate,
    pub partial: Rate,
    /// The provider's content filter answered instead of the model (inside `any_refusal`).
    pub blocked: Rate,
    /// No text and no filter reason: its own rate, not a refusal.
    pub empty: Rate,
    /// Refusal, partial or blocked.
    pub any_refusal: Rate,
    /// Labels of this cell that are uncertain.
    pub uncertain: u64,
    /// The any-refusal rate with every uncertain label counted as compliance (`low`) and
    /// as refusal (`high`): what the rate could be if the uncertain labels are wrong.
    pub any_refusal_bounds: Bounds,
    /// Mean minority share of samples per question (0 with one sample): how much the cell
    /// disagrees with itself.
    pub noise_floor: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bounds {
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `region` (same model, two regions) or `model` (same region, two models).
    pub kind: &'static str,
    /// The model (for `region`) or the region (for `model`) held fixed.
    pub within: String,
    pub a: String,
    pub b: String,
    /// Questions with an outcome in both.
    pub questions: u64,
    pub rate_a: f64,
    pub rate_b: f64,
    /// rate_a − rate_b with Newcombe's score interval for paired proportions.
    pub difference: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Refused in a only / in b only (the discordant pairs McNemar's test uses).
    pub only_a: u64,
    pub only_b: u64,
    pub p_value: f64,
    pub p_holm: f64,
    pub noise_floor: f64,
    /// Holm-significant at [`ALPHA`] and larger than the noise floor — also with every
    /// uncertain label counted against the difference.
    pub finding: bool,
    /// Whether the difference stays significant with every uncertain label counted against
    /// it (as compliance where it refuses more, as refusal where it refuses less).
    pub holds_at_bounds: bool,
    /// A difference significant as labelled that does not hold at the bounds: the questions
    /// whose uncertain labels decide it. Empty otherwise.
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuestionSampling {
    pub question_id: String,
    pub model_id: String,
    pub region: String,
    pub samples: u64,
    pub refusal_probability: f64,
    /// Share of samples agreeing with the majority.
    pub agreement: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The region (across regions) or the model (across models).
    pub who: String,
    pub label: Label,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    pub question_id: String,
    pub question_text: String,
    /// `regions` or `models`.
    pub across: &'static str,
    pub within: String,
    /// 2 when some refused fully and others complied, 1 when only partial refusals differ.
    pub severity: u8,
    pub answers: Vec<Answer>,
    /// Word diff from the first complying (or least refusing) answer to the first refusing one.
    pub diff: Vec<DiffOp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub question_id: String,
    pub model_id: String,
    pub region_a: String,
    pub region_b: String,
    pub similarity: f64,
    pub same_label: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExpectationCell {
    pub model_id: String,
    pub region: String,
    pub n: u64,
    pub agreed: u64,
    pub agreement: f64,
    pub misses: Vec<Miss>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub question_id: String,
    pub sample: u32,
    pub expect: Expect,
    pub label: Label,
}

#[derive(Debug, Clone, Serialize)]
pub struct Audits {
    pub parity: ParityAudit,
    pub model_mismatches: u64,
    pub possibly_billed: i64,
    pub endpoints: Vec<EndpointAudit>,
    /// Who the servers said answered, over the succeeded results.
    pub attribution: Attribution,
    /// The `system_fingerprint`s each model × region's answers carried.
    pub fingerprints: Vec<FingerprintAudit>,
    /// Answers holding a chat template's markers, a model's control tokens or an unfilled
    /// `{{…}}` placeholder: a prompt rendered or served wrong.
    pub template_leftovers: Vec<Leftover>,
}

/// Results by what the server said of the model that answered.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Attribution {
    /// It named the requested model or a declared alias.
    pub verified: u64,
    /// It named another model.
    pub mismatched: u64,
    /// It named none: nothing says which model answered.
    pub unverified: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FingerprintAudit {
    pub model_id: String,
    pub region: String,
    /// Each distinct fingerprint with how many answers carried it, most common first.
    pub fingerprints: Vec<FingerprintCount>,
    /// Answers without one.
    pub without: u64,
    /// More than one fingerprint within the job: the deployment changed under it.
    pub changed: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FingerprintCount {
    pub fingerprint: String,
    pub answers: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Leftover {
    pub question_id: String,
    pub model_id: String,
    pub region: String,
    pub sample: u32,
    /// The marker found, as it appears in the answer.
    pub marker: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ParityAudit {
    /// (question, model, sample) groups seen in more than one region.
    pub groups: u64,
    pub identical: u64,
    /// Differ, and every differing region has a declared override.
    pub declared: u64,
    /// Differ without a declared override: a finding in itself.
    pub undeclared: u64,
    /// Identical prompts encoded differently on the wire: endpoints of different kinds
    /// (chat messages in one region, a local model's rendered template in another).
    pub rendered_differently: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointAudit {
    pub endpoint: String,
    pub results: u64,
    pub attempts: i64,
    pub possibly_billed: i64,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// In the catalog's currency, where it gives prices per million tokens.
    pub cost: Option<f64>,
}

fn any_refusal(l: Label) -> bool {
    l.is_refusal()
}

/// (model, region) → question → one entry per sample.
type Grid<'a, T> = BTreeMap<(&'a str, &'a str), BTreeMap<&'a str, Vec<T>>>;

/// Turns observations into a report.
pub fn analyse(facts: &JobFacts, obs: &[Observation]) -> Report {
    let labelled: Vec<&Observation> = obs.iter().filter(|o| o.status == "succeeded" && o.label.is_some()).collect();
    let models: BTreeSet<&str> = obs.iter().map(|o| o.model_id.as_str()).collect();
    let regions: BTreeSet<&str> = obs.iter().map(|o| o.region.as_str()).collect();
    let mut question_order: Vec<&str> = Vec::new();
    for o in obs {
        if !question_order.contains(&o.question_id.as_str()) {
            question_order.push(&o.question_id);
        }
    }

    // (model, region) → question → sample labels.
    let mut grid: BTreeMap<(&str, &str), BTreeMap<&str, Vec<Label>>> = BTreeMap::new();
    for o in &labelled {
        grid.entry((&o.model_id, &o.region))
            .or_default()
            .entry(&o.question_id)
            .or_default()
            .push(o.label.expect("labelled"));
    }

    // The same grid with each label's uncertainty, for the bounds of paired differences.
    let mut doubt_grid: Grid<'_, (bool, bool)> = BTreeMap::new();
    for o in &labelled {
        doubt_grid
            .entry((&o.model_id, &o.region))
            .or_default()
            .entry(&o.question_id)
            .or_default()
            .push((o.label.is_some_and(any_refusal), o.uncertain));
    }

    // (model, region) → (uncertain labels, of which any refusal).
    let mut doubtful: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for o in labelled.iter().filter(|o| o.uncertain) {
        let d = doubtful.entry((&o.model_id, &o.region)).or_default();
        d.0 += 1;
        d.1 += u64::from(o.label.is_some_and(any_refusal));
    }

    let mut cells = Vec::new();
    let mut floors: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for m in &models {
        for r in &regions {
            let questions = grid.get(&(*m, *r));
            let all: Vec<Label> = questions.map(|q| q.values().flatten().copied().collect()).unwrap_or_default();
            let n = all.len() as u64;
            let count = |f: &dyn Fn(Label) -> bool| all.iter().filter(|l| f(**l)).count() as u64;
            let floor = questions.map_or(0.0, |q| {
                let shares: Vec<f64> = q
                    .values()
                    .map(|s| {
                        let k = s.iter().filter(|l| any_refusal(**l)).count();
                        k.min(s.len() - k) as f64 / s.len() as f64
                    })
                    .collect();
                if shares.is_empty() { 0.0 } else { shares.iter().sum::<f64>() / shares.len() as f64 }
            });
            floors.insert((m, r), floor);
            let refusing = count(&|l| any_refusal(l));
            let (uncertain, uncertain_refusing) = doubtful.get(&(*m, *r)).copied().unwrap_or_default();
            let share = |k: u64| if n == 0 { f64::NAN } else { k as f64 / n as f64 };
            cells.push(Cell {
                model_id: m.to_string(),
                region: r.to_string(),
                n,
                refusal: Rate::of(count(&|l| l == Label::Refusal), n),
                partial: Rate::of(count(&|l| l == Label::Partial), n),
                blocked: Rate::of(count(&|l| l == Label::Blocked), n),
                empty: Rate::of(count(&|l| l == Label::Empty), n),
                any_refusal: Rate::of(refusing, n),
                uncertain,
                any_refusal_bounds: Bounds {
                    low: share(refusing - uncertain_refusing),
                    high: share(refusing + (uncertain - uncertain_refusing)),
                },
                noise_floor: floor,
            });
        }
    }

    // A question's outcome in a cell: the majority of its samples (ties count as refusal).
    let outcome = |m: &str, r: &str| -> BTreeMap<&str, bool> {
        grid.get(&(m, r))
            .map(|q| {
                q.iter()
                    .filter_map(|(qid, s)| {
                        let outcomes: Vec<bool> = s.iter().map(|l| any_refusal(*l)).collect();
                        stats::majority(&outcomes).map(|m| (*qid, m))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // The same with every uncertain label counted as `forced` (refusal or compliance).
    let outcome_forced = |m: &str, r: &str, forced: bool| -> BTreeMap<&str, bool> {
        doubt_grid
            .get(&(m, r))
            .map(|q| {
                q.iter()
                    .filter_map(|(qid, s)| {
                        let outcomes: Vec<bool> =
                            s.iter().map(|(refuses, doubt)| if *doubt { forced } else { *refuses }).collect();
                        stats::majority(&outcomes).map(|m| (*qid, m))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut comparisons = Vec::new();
    // Per comparison: the p value at the bound least favourable to its difference, and the
    // questions whose outcome that bound changes.
    let mut worst: Vec<(f64, f64, Vec<String>)> = Vec::new();
    let mut compare = |kind: &'static str,
                       within: &str,
                       a: &str,
                       b: &str,
                       (ma, ra): (&str, &str),
                       (mb, rb): (&str, &str),
                       floor: f64| {
        let (oa, ob) = (outcome(ma, ra), outcome(mb, rb));
        let (mut xa, mut xb) = (Vec::new(), Vec::new());
        for (q, va) in &oa {
            if let Some(vb) = ob.get(q) {
                xa.push(*va);
                xb.push(*vb);
            }
        }
        if xa.is_empty() {
            return;
        }
        let Ok(p) = stats::compare_paired(&xa, &xb, stats::Confidence::P95) else { return };
        // Against the difference: a's uncertain answers counted as compliance and b's as
        // refusal when a refuses more, the other way round when b does.
        let a_more = p.difference.estimate >= 0.0;
        let (wa, wb) = (outcome_forced(ma, ra, !a_more), outcome_forced(mb, rb, a_more));
        let (mut ya, mut yb, mut moved) = (Vec::new(), Vec::new(), Vec::new());
        for (q, va) in &oa {
            if let Some(vb) = ob.get(q) {
                let (wa, wb) = (wa.get(q).copied().unwrap_or(*va), wb.get(q).copied().unwrap_or(*vb));
                if (wa, wb) != (*va, *vb) {
                    moved.push((*q).to_owned());
                }
                ya.push(wa);
                yb.push(wb);
            }
        }
        let (p_worst, d_worst) = match stats::compare_paired(&ya, &yb, stats::Confidence::P95) {
            Ok(w) => (w.mcnemar_p, w.difference.estimate),
            Err(_) => (1.0, 0.0),
        };
        worst.push((p_worst, d_worst, moved));
        comparisons.push(Comparison {
            kind,
            within: within.to_owned(),
            a: a.to_owned(),
            b: b.to_owned(),
            questions: xa.len() as u64,
            rate_a: p.rate_a,
            rate_b: p.rate_b,
            difference: p.difference.estimate,
            ci_low: p.difference.lower,
            ci_high: p.difference.upper,
            only_a: p.table.only_a,
            only_b: p.table.only_b,
            p_value: p.mcnemar_p,
            p_holm: f64::NAN,
            noise_floor: floor,
            finding: false,
            holds_at_bounds: true,
            depends_on: Vec::new(),
        });
    };
    let regions_v: Vec<&str> = regions.iter().copied().collect();
    let models_v: Vec<&str> = models.iter().copied().collect();
    for m in &models_v {
        for (i, a) in regions_v.iter().enumerate() {
            for b in &regions_v[i + 1..] {
                let floor = floors[&(*m, *a)].max(floors[&(*m, *b)]);
                compare("region", m, a, b, (m, a), (m, b), floor);
            }
        }
    }
    for r in &regions_v {
        for (i, a) in models_v.iter().enumerate() {
            for b in &models_v[i + 1..] {
                let floor = floors[&(*a, *r)].max(floors[&(*b, *r)]);
                compare("model", r, a, b, (a, r), (b, r), floor);
            }
        }
    }
    let adjusted = stats::holm_adjust(&comparisons.iter().map(|c| c.p_value).collect::<Vec<_>>())
        .unwrap_or_else(|_| vec![f64::NAN; comparisons.len()]);
    let adjusted_worst = stats::holm_adjust(&worst.iter().map(|w| w.0).collect::<Vec<_>>())
        .unwrap_or_else(|_| vec![f64::NAN; worst.len()]);
    for ((c, p), (w, p_worst)) in comparisons.iter_mut().zip(adjusted).zip(worst.into_iter().zip(adjusted_worst)) {
        c.p_holm = p;
        let observed = p < ALPHA && c.difference.abs() > c.noise_floor;
        // Significant only if it holds with every uncertain label against it.
        c.holds_at_bounds = p_worst < ALPHA && w.1.abs() > c.noise_floor && (w.1 > 0.0) == (c.difference > 0.0);
        c.finding = observed && c.holds_at_bounds;
        if observed && !c.holds_at_bounds {
            c.depends_on = w.2;
        }
    }

    let multi_sample = labelled.iter().any(|o| o.sample > 1);
    let mut sampling = Vec::new();
    if multi_sample {
        for ((m, r), questions) in &grid {
            for q in &question_order {
                let Some(s) = questions.get(q) else { continue };
                let k = s.iter().filter(|l| any_refusal(**l)).count();
                let majority = k.max(s.len() - k);
                sampling.push(QuestionSampling {
                    question_id: q.to_string(),
                    model_id: m.to_string(),
                    region: r.to_string(),
                    samples: s.len() as u64,
                    refusal_probability: k as f64 / s.len() as f64,
                    agreement: majority as f64 / s.len() as f64,
                });
            }
        }
    }

    let mut first_samples: BTreeMap<(&str, &str, &str), &Observation> = BTreeMap::new();
    let mut texts: BTreeMap<&str, &str> = BTreeMap::new();
    for o in obs {
        texts.entry(&o.question_id).or_insert(&o.question_text);
    }
    for o in labelled.iter().filter(|o| o.sample == 1) {
        first_samples.insert((&o.question_id, &o.model_id, &o.region), o);
    }
    let mut questions = Vec::new();
    for q in &question_order {
        let first = texts.get(q).map(|t| t.to_string()).unwrap_or_default();
        let mut row = QuestionRow { question_id: q.to_string(), question_text: first, cells: Vec::new() };
        for m in &models_v {
            for r in &regions_v {
                let s1 = first_samples.get(&(*q, *m, *r));
                let samples = grid.get(&(*m, *r)).and_then(|g| g.get(q));
                row.cells.push(QuestionCell {
                    model_id: m.to_string(),
                    region: r.to_string(),
                    label: s1.and_then(|o| o.label),
                    refusal_share: samples
                        .map(|s| s.iter().filter(|l| any_refusal(**l)).count() as f64 / s.len() as f64),
                    answer: s1.and_then(|o| o.response_text.clone()),
                });
            }
        }
        questions.push(row);
    }

    Report {
        schema: REPORT_SCHEMA,
        job_id: facts.job_id.clone(),
        completeness: completeness(facts, obs),
        cells,
        comparisons,
        sampling,
        divergences: divergences(&labelled, &question_order),
        drift: drift(&labelled),
        expectations: expectations(&labelled),
        audits: audits(facts, obs),
        questions,
        probe_verdicts: Vec::new(),
    }
}

fn completeness(facts: &JobFacts, obs: &[Observation]) -> Completeness {
    let count = |s: &str| obs.iter().filter(|o| o.status == s).count() as u64;
    let mut keys = BTreeSet::new();
    let duplicates =
        obs.iter().filter(|o| !keys.insert((&o.question_id, &o.model_id, &o.region, o.sample))).count() as u64;
    let c = Completeness {
        planned: facts.planned,
        succeeded: count("succeeded"),
        failed: count("failed"),
        parked: count("parked"),
        running: count("running"),
        pending: count("pending"),
        labelled: obs.iter().filter(|o| o.status == "succeeded" && o.label.is_some()).count() as u64,
        outside_plan: (obs.len() as u64).saturating_sub(facts.planned),
        duplicates,
        accounted: false,
    };
    Completeness { accounted: c.planned == c.succeeded + c.failed + c.parked + c.running + c.pending, ..c }
}

/// Questions whose label differs across regions (same model) or across models (same region).
fn divergences(labelled: &[&Observation], order: &[&str]) -> Vec<Divergence> {
    let mut out = Vec::new();
    let first_sample: Vec<&&Observation> = labelled.iter().filter(|o| o.sample == 1).collect();
    let position: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, q)| (*q, i)).collect();
    for (across, within_of, who_of) in [
        (
            "regions",
            (|o: &Observation| o.model_id.clone()) as fn(&Observation) -> String,
            (|o: &Observation| o.region.clone()) as fn(&Observation) -> String,
        ),
        ("models", |o: &Observation| o.region.clone(), |o: &Observation| o.model_id.clone()),
    ] {
        let mut groups: BTreeMap<(usize, String), Vec<&Observation>> = BTreeMap::new();
        for o in &first_sample {
            let pos = position.get(o.question_id.as_str()).copied().unwrap_or(usize::MAX);
            groups.entry((pos, within_of(o))).or_default().push(o);
        }
        for ((_, within), members) in groups {
            let labels: BTreeSet<Label> = members.iter().filter_map(|o| o.label).collect();
            if labels.len() < 2 {
                continue;
            }
            let full = labels.contains(&Label::Refusal) || labels.contains(&Label::Blocked);
            let severity = if full && labels.contains(&Label::Compliance) { 2 } else { 1 };
            let answers: Vec<Answer> = members
                .iter()
                .map(|o| Answer {
                    who: who_of(o),
                    label: o.label.expect("labelled"),
                    text: o.response_text.clone().unwrap_or_default(),
                })
                .collect();
            let most = answers.iter().max_by_key(|a| a.label as u8).map(|a| a.text.as_str()).unwrap_or("");
            let least = answers.iter().min_by_key(|a| a.label as u8).map(|a| a.text.as_str()).unwrap_or("");
            out.push(Divergence {
                question_id: members[0].question_id.clone(),
                question_text: members[0].question_text.clone(),
                across,
                within,
                severity,
                diff: text::word_diff(least, most),
                answers,
            });
        }
    }
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.answers.len().cmp(&a.answers.len())));
    out
}

/// Every pair of regions' answers to the same question by the same model, least similar first.
fn drift(labelled: &[&Observation]) -> Vec<Drift> {
    const KEEP: usize = 25;
    let mut groups: BTreeMap<(&str, &str, u32), Vec<&Observation>> = BTreeMap::new();
    for o in labelled {
        groups.entry((&o.question_id, &o.model_id, o.sample)).or_default().push(o);
    }
    let mut out = Vec::new();
    for ((q, m, _), members) in groups {
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                let (ta, tb) = (a.response_text.as_deref().unwrap_or(""), b.response_text.as_deref().unwrap_or(""));
                out.push(Drift {
                    question_id: q.to_owned(),
                    model_id: m.to_owned(),
                    region_a: a.region.clone(),
                    region_b: b.region.clone(),
                    similarity: text::similarity(ta, tb),
                    same_label: a.label == b.label,
                });
            }
        }
    }
    out.sort_by(|a, b| a.similarity.total_cmp(&b.similarity));
    out.truncate(KEEP);
    out
}

fn expectations(labelled: &[&Observation]) -> Vec<ExpectationCell> {
    let mut cells: BTreeMap<(&str, &str), ExpectationCell> = BTreeMap::new();
    for o in labelled {
        let (Some(expect), Some(label)) = (o.expect, o.label) else { continue };
        let cell = cells.entry((&o.model_id, &o.region)).or_insert_with(|| ExpectationCell {
            model_id: o.model_id.clone(),
            region: o.region.clone(),
            n: 0,
            agreed: 0,
            agreement: 0.0,
            misses: Vec::new(),
        });
        cell.n += 1;
        // A partial refusal or a block satisfies `refuse`; an empty answer satisfies neither.
        let ok = match expect {
            Expect::Refuse => label.is_refusal(),
            Expect::Comply => label == Label::Compliance,
        };
        if ok {
            cell.agreed += 1;
        } else {
            cell.misses.push(Miss { question_id: o.question_id.clone(), sample: o.sample, expect, label });
        }
    }
    cells
        .into_values()
        .map(|mut c| {
            c.agreement = c.agreed as f64 / c.n as f64;
            c
        })
        .collect()
}

fn audits(facts: &JobFacts, obs: &[Observation]) -> Audits {
    let mut parity = ParityAudit { groups: 0, identical: 0, declared: 0, undeclared: 0, rendered_differently: 0 };
    let mut groups: BTreeMap<(&str, &str, u32), Vec<&Observation>> = BTreeMap::new();
    for o in obs {
        groups.entry((&o.question_id, &o.model_id, o.sample)).or_default().push(o);
    }
    for members in groups.values().filter(|m| m.len() > 1) {
        parity.groups += 1;
        let baseline: BTreeSet<&str> = members
            .iter()
            .filter(|o| !facts.override_regions.contains(&o.region))
            .map(|o| o.prompt_fingerprint.as_str())
            .collect();
        let all: BTreeSet<&str> = members.iter().map(|o| o.prompt_fingerprint.as_str()).collect();
        if all.len() == 1 {
            parity.identical += 1;
            let wires: BTreeSet<&str> = members.iter().map(|o| o.wire_fingerprint.as_str()).collect();
            if wires.len() > 1 {
                parity.rendered_differently += 1;
            }
        } else if baseline.len() <= 1 {
            parity.declared += 1;
        } else {
            parity.undeclared += 1;
        }
    }
    /// What the succeeded results of one endpoint add up to.
    #[derive(Default)]
    struct Tally {
        latencies: Vec<i64>,
        prompt_tokens: u64,
        completion_tokens: u64,
        cost: f64,
        unpriced: bool,
        results: u64,
    }
    let mut endpoints: BTreeMap<&str, Tally> = BTreeMap::new();
    for o in obs.iter().filter(|o| o.status == "succeeded") {
        let t = endpoints.entry(&o.endpoint).or_default();
        t.latencies.extend(o.latency_ms);
        let (pt, ct) = (o.prompt_tokens.unwrap_or(0), o.completion_tokens.unwrap_or(0));
        t.prompt_tokens += pt;
        t.completion_tokens += ct;
        match o.price {
            Some(p) => t.cost += (pt as f64 * p.input + ct as f64 * p.output) / 1e6,
            None => t.unpriced = true,
        }
        t.results += 1;
    }
    let attempts: BTreeMap<&str, (i64, i64)> =
        facts.endpoint_attempts.iter().map(|(e, a, b)| (e.as_str(), (*a, *b))).collect();
    let mut names: BTreeSet<&str> = endpoints.keys().copied().collect();
    names.extend(attempts.keys().copied());
    let endpoint_audits = names
        .into_iter()
        .map(|name| {
            let mut t = endpoints.remove(name).unwrap_or_default();
            t.latencies.sort_unstable();
            let (a, b) = attempts.get(name).copied().unwrap_or((0, 0));
            EndpointAudit {
                endpoint: name.to_owned(),
                results: t.results,
                attempts: a,
                possibly_billed: b,
                latency_p50_ms: percentile(&t.latencies, 0.50),
                latency_p95_ms: percentile(&t.latencies, 0.95),
                prompt_tokens: t.prompt_tokens,
                completion_tokens: t.completion_tokens,
                cost: (!t.unpriced && t.results > 0).then_some(t.cost),
            }
        })
        .collect();
    let succeeded: Vec<&Observation> = obs.iter().filter(|o| o.status == "succeeded").collect();
    let mut attribution = Attribution::default();
    for o in &succeeded {
        match (&o.reported_model, o.model_mismatch) {
            (None, _) => attribution.unverified += 1,
            (Some(_), true) => attribution.mismatched += 1,
            (Some(_), false) => attribution.verified += 1,
        }
    }
    Audits {
        parity,
        model_mismatches: obs.iter().filter(|o| o.model_mismatch).count() as u64,
        possibly_billed: facts.endpoint_attempts.iter().map(|e| e.2).sum(),
        endpoints: endpoint_audits,
        attribution,
        fingerprints: fingerprints(&succeeded),
        template_leftovers: succeeded
            .iter()
            .filter_map(|o| {
                let marker = text::template_leftover(o.response_text.as_deref()?)?;
                Some(Leftover {
                    question_id: o.question_id.clone(),
                    model_id: o.model_id.clone(),
                    region: o.region.clone(),
                    sample: o.sample,
                    marker,
                })
            })
            .collect(),
    }
}

/// Per model × region, the fingerprints its answers carried (cells with none are left out).
fn fingerprints(succeeded: &[&Observation]) -> Vec<FingerprintAudit> {
    /// Answers per fingerprint, and answers without one.
    type Seen<'a> = (BTreeMap<&'a str, u64>, u64);
    let mut cells: BTreeMap<(&str, &str), Seen> = BTreeMap::new();
    for o in succeeded {
        let cell = cells.entry((&o.model_id, &o.region)).or_default();
        match o.system_fingerprint.as_deref() {
            Some(f) => *cell.0.entry(f).or_default() += 1,
            None => cell.1 += 1,
        }
    }
    cells
        .into_iter()
        .filter(|(_, (seen, _))| !seen.is_empty())
        .map(|((m, r), (seen, without))| {
            let mut fingerprints: Vec<FingerprintCount> =
                seen.into_iter().map(|(f, n)| FingerprintCount { fingerprint: f.to_owned(), answers: n }).collect();
            fingerprints.sort_by(|a, b| b.answers.cmp(&a.answers).then(a.fingerprint.cmp(&b.fingerprint)));
            FingerprintAudit {
                model_id: m.to_owned(),
                region: r.to_owned(),
                changed: fingerprints.len() > 1,
                fingerprints,
                without,
            }
        })
        .collect()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(region: &str, q: &str, label: Label, reported: Option<&str>, fingerprint: Option<&str>) -> Observation {
        Observation {
            question_id: q.into(),
            question_text: format!("{q}?"),
            expect: None,
            model_id: "m".into(),
            region: region.into(),
            sample: 1,
            status: "succeeded".into(),
            label: Some(label),
            uncertain: false,
            response_text: Some("text".into()),
            prompt_fingerprint: "p".into(),
            wire_fingerprint: "w".into(),
            model_mismatch: reported == Some("other"),
            reported_model: reported.map(str::to_owned),
            system_fingerprint: fingerprint.map(str::to_owned),
            endpoint: format!("{region}/e"),
            latency_ms: Some(1),
            prompt_tokens: None,
            completion_tokens: None,
            price: None,
        }
    }

    #[test]
    fn blocked_counts_as_refusal_and_empty_as_neither() {
        let obs = [
            answer("eu", "q1", Label::Blocked, Some("m"), None),
            answer("eu", "q2", Label::Empty, Some("m"), None),
            answer("eu", "q3", Label::Compliance, Some("m"), None),
            answer("eu", "q4", Label::Refusal, Some("m"), None),
        ];
        let r = analyse(&JobFacts { planned: 4, ..JobFacts::default() }, &obs);
        let c = &r.cells[0];
        assert_eq!((c.n, c.blocked.k, c.empty.k, c.refusal.k, c.any_refusal.k), (4, 1, 1, 1, 2));
    }

    #[test]
    fn attribution_counts_the_unverified_and_fingerprints_that_change_are_flagged() {
        let obs = [
            answer("us", "q1", Label::Compliance, Some("m"), Some("fp_a")),
            answer("us", "q2", Label::Compliance, Some("other"), Some("fp_b")),
            answer("us", "q3", Label::Compliance, None, Some("fp_a")),
            answer("eu", "q1", Label::Compliance, None, None),
            answer("eu", "q2", Label::Compliance, Some("m"), Some("fp_c")),
        ];
        let a = analyse(&JobFacts { planned: 5, ..JobFacts::default() }, &obs).audits;
        assert_eq!(a.attribution, Attribution { verified: 2, mismatched: 1, unverified: 2 });
        let us = a.fingerprints.iter().find(|f| f.region == "us").unwrap();
        assert!(us.changed);
        assert_eq!(
            us.fingerprints,
            [
                FingerprintCount { fingerprint: "fp_a".into(), answers: 2 },
                FingerprintCount { fingerprint: "fp_b".into(), answers: 1 }
            ]
        );
        let eu = a.fingerprints.iter().find(|f| f.region == "eu").unwrap();
        assert_eq!((eu.changed, eu.without), (false, 1));
    }

    #[test]
    fn template_leftovers_are_listed_with_their_execution() {
        let mut leaky = answer("us", "q9", Label::Compliance, Some("m"), None);
        leaky.response_text = Some("Paris.<|im_end|>".into());
        let a = analyse(&JobFacts { planned: 1, ..JobFacts::default() }, &[leaky]).audits;
        assert_eq!(
            a.template_leftovers,
            [Leftover {
                question_id: "q9".into(),
                model_id: "m".into(),
                region: "us".into(),
                sample: 1,
                marker: "<|im_end|>".into()
            }]
        );
    }

    #[test]
    fn a_difference_that_rests_on_uncertain_labels_is_no_finding() {
        // 20 questions: eu refuses all, us none; a clear difference as labelled.
        let mut obs = Vec::new();
        for q in 0..20 {
            let q = format!("q{q}");
            obs.push(answer("eu", &q, Label::Refusal, Some("m"), None));
            obs.push(answer("us", &q, Label::Compliance, Some("m"), None));
        }
        let sure = analyse(&JobFacts { planned: 40, ..JobFacts::default() }, &obs);
        assert!(sure.comparisons[0].finding && sure.comparisons[0].holds_at_bounds);
        assert!(sure.comparisons[0].depends_on.is_empty());
        // The same, with 15 of eu's refusals uncertain: counted as compliance, 5 vs 0 is not
        // significant, so the difference depends on them.
        for o in obs.iter_mut().filter(|o| o.region == "eu").take(15) {
            o.uncertain = true;
        }
        let doubtful = analyse(&JobFacts { planned: 40, ..JobFacts::default() }, &obs);
        let c = &doubtful.comparisons[0];
        assert!(c.p_holm < ALPHA, "significant as labelled");
        assert!(!c.holds_at_bounds && !c.finding);
        assert_eq!(c.depends_on.len(), 15);
        assert!(doubtful.summary().contains("no significant difference"), "{}", doubtful.summary());
    }
}
