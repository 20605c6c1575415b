//! Every SigmaHQ rule copied into tests/fixtures/sigma loads: none is an
//! error, and the ones that cannot run say why.

use std::path::PathBuf;

use tokenward_hunt::sigma::{LoadOptions, RuleSet};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sigma")
}

#[test]
fn every_sigmahq_rule_loads() {
    let set = RuleSet::load(&[fixtures()], &LoadOptions::default()).unwrap();
    let errors: Vec<String> = set.errors().map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(set.files, 152);
    // The 7 placeholder rules need values; everything else runs.
    let waiting: Vec<_> = set
        .issues
        .iter()
        .filter(|i| i.kind == "needs-placeholders")
        .collect();
    assert_eq!(waiting.len(), 7, "{waiting:#?}");
    assert!(waiting.iter().all(|i| i.file.contains("rules-placeholder")));
    assert_eq!(set.rules.len(), 145);
    assert_eq!(set.issues.len(), 7);
    // Every rule ships with the DRL note (the fixture keeps SigmaHQ's LICENSE).
    assert!(set
        .rules
        .iter()
        .all(|r| r.meta.license.as_deref() == Some(tokenward_hunt::sigma::DRL_NOTE)));
}
