//! Invariants of planning, checked over generated specs.

use std::path::Path;

use parallax_core::{Catalog, ItemKey, JobSpec, Plan};
use proptest::prelude::*;

fn catalog(models: usize, regions: usize) -> Catalog {
    let mut text = String::from("regions:\n");
    for r in 0..regions {
        text.push_str(&format!("  r{r}:\n    - name: e{r}\n      kind: openai-chat\n      base_url: http://127.0.0.1:{}/v1\n      models:\n", 9000 + r));
        for m in 0..models {
            text.push_str(&format!("        m{m}: provider-m{m}\n"));
        }
    }
    Catalog::parse(&text, Path::new("c.yaml")).unwrap()
}

fn spec(questions: &[String], models: usize, regions: usize, samples: u32, concurrency: usize) -> String {
    let mut s = String::from("name: prop\nquestions:\n");
    for (i, q) in questions.iter().enumerate() {
        s.push_str(&format!("  - id: q{i}\n    text: {}\n", serde_json::to_string(q).unwrap()));
    }
    let list = |p: &str, n: usize| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>().join(", ");
    s.push_str(&format!(
        "models: [{}]\nregions: [{}]\nsamples: {samples}\nrun: {{concurrency: {concurrency}}}\n",
        list("m", models),
        list("r", regions)
    ));
    s
}

fn build(text: &str, models: usize, regions: usize) -> Plan {
    let mut read = |_: &Path| Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    let spec = JobSpec::parse(text, Path::new("s.yaml"), &mut read).unwrap();
    Plan::build(&spec, &catalog(models, regions)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_plan_is_the_exact_product_with_unique_keys(
        questions in prop::collection::vec("[a-zA-Z0-9 ?\u{4e00}-\u{4e10}]{1,30}", 1..6),
        models in 1usize..4, regions in 1usize..4, samples in 1u32..4,
    ) {
        let questions: Vec<String> = questions.into_iter().map(|q| format!("Q {q}")).collect();
        let plan = build(&spec(&questions, models, regions, samples, 8), models, regions);
        let items: Vec<_> = plan.items().collect();
        prop_assert_eq!(items.len(), questions.len() * models * regions * samples as usize);
        // Exactly the product, written out independently, in the documented order (questions,
        // then models, then regions, then samples): no key missing, none extra, none twice.
        let mut product = Vec::new();
        for q in 0..questions.len() {
            for m in 0..models {
                for r in 0..regions {
                    for sample in 1..=samples {
                        product.push(ItemKey {
                            question_id: format!("q{q}"),
                            model_id: format!("m{m}"),
                            region: format!("r{r}"),
                            sample,
                        });
                    }
                }
            }
        }
        let keys: Vec<ItemKey> = items.iter().map(|i| i.key.clone()).collect();
        prop_assert_eq!(keys, product);
        prop_assert_eq!(plan.parity.undeclared, 0);
        for item in &items {
            // The stored bytes are valid JSON that carries the question verbatim.
            let q = &questions[item.key.question_id[1..].parse::<usize>().unwrap()];
            let request = item.request();
            prop_assert_eq!(request["messages"][0]["content"].as_str(), Some(q.as_str()));
        }
    }

    #[test]
    fn the_same_spec_gives_the_same_job_and_bytes(
        questions in prop::collection::vec("[a-z ]{1,20}", 1..4), c1 in 1usize..64, c2 in 1usize..64,
    ) {
        let questions: Vec<String> = questions.into_iter().map(|q| format!("Q {q}")).collect();
        let a = build(&spec(&questions, 2, 2, 1, c1), 2, 2);
        let b = build(&spec(&questions, 2, 2, 1, c2), 2, 2);
        prop_assert_eq!(&a.base_job_id, &b.base_job_id);
        let bodies = |p: &Plan| p.items().map(|i| i.request_body).collect::<Vec<_>>();
        prop_assert_eq!(bodies(&a), bodies(&b));
    }
}
