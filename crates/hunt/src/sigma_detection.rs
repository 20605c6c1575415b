//! A Sigma rule set as one detection: its screen is its anchors, it reads
//! the paths its rules' fields map to (and, when a rule searches keywords,
//! the words of the records that hold them, or those records whole), and
//! its matches feed correlations in the shared state.

use std::borrow::Cow;
use std::sync::Arc;

use tokenward_detect::{
    shard_of, Anchors, Context, Detection, Kinds, Needs, Outcome, ScreenFn, WholeRecord,
};
use tokenward_event::{Event, Finding};
use tokenward_sigma::{Hit, RuleSet, Sigma};
use tokenward_spill::spilling::StateDisk;

/// The detection.
pub struct SigmaDetection {
    set: Arc<RuleSet>,
    /// Correlation windows and findings: only in the detection the shards
    /// merge into (windows depend on every match, in time order).
    state: Option<Sigma>,
    /// A shard's matches, absorbed into `state` when merged.
    hits: Vec<Hit>,
    /// The findings of those matches, built in the worker (merging holds
    /// the engine's lock, and building them there made workers queue)
    /// until the engine takes them.
    findings: Vec<Finding>,
    /// Where the correlations' groups spill past the hunt's budget.
    disk: Arc<StateDisk>,
}

impl SigmaDetection {
    /// A detection running `set`, its correlations' groups held in memory
    /// as `disk` allows (the hunt's budget for keyed state).
    pub fn new(set: Arc<RuleSet>, disk: Arc<StateDisk>) -> SigmaDetection {
        SigmaDetection {
            state: Some(Sigma::new(set.clone(), disk.clone())),
            set,
            hits: Vec::new(),
            findings: Vec::new(),
            disk,
        }
    }
}

impl Detection for SigmaDetection {
    fn ids(&self) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        self.set
            .metas()
            .map(|m| (Cow::Owned(m.id.clone()), Cow::Owned(m.title.clone())))
            .collect()
    }

    fn needs(&self) -> Needs {
        let set = self.set.clone();
        Needs {
            kinds: Kinds::ALL,
            anchors: Anchors::Screen(Arc::new(move |kind, b: &[u8]| match kind {
                Some(k) => set.wants_kind(k, b),
                None => set.wants(b),
            })),
            fields: self.set.paths().into_iter().map(Cow::Owned).collect(),
            whole_record: if self.set.reads_whole_records() {
                let set = self.set.clone();
                let kinds = self.set.whole_kinds().map_or(Kinds::ALL, |k| Kinds::of(&k));
                let screen: ScreenFn = Arc::new(move |b: &[u8]| set.wants_whole(b));
                if self.set.reads_words_alone() {
                    WholeRecord::WordsWhen(kinds, screen)
                } else {
                    WholeRecord::When(kinds, screen)
                }
            } else {
                WholeRecord::Never
            },
            unparsed_time_and_workload: false,
            signin_index: false,
            blind_without_signins: false,
        }
    }

    fn fork(&self) -> Box<dyn Detection> {
        Box::new(SigmaDetection {
            set: self.set.clone(),
            state: None,
            hits: Vec::new(),
            findings: Vec::new(),
            disk: self.disk.clone(),
        })
    }

    fn observe(&mut self, ev: &Event, _: &Context<'_>) {
        let before = self.hits.len();
        self.set.eval(ev, &mut self.hits);
        self.findings
            .extend(self.set.findings_of(&mut self.hits[before..]));
    }

    fn merge(&mut self, shard: Box<dyn Detection>) {
        let shard = shard_of::<SigmaDetection>(shard);
        // A rule match's finding depends on no other record (correlations,
        // which do, are decided in `finish`): it waits here only until the
        // engine takes it.
        self.findings.extend(shard.findings);
        match self.state.as_mut() {
            Some(s) => s.absorb_found(shard.hits, Vec::new()),
            None => self.hits.extend(shard.hits),
        }
    }

    /// A shard keeps every hit until merged into the correlation state.
    fn merges_each_batch(&self) -> bool {
        true
    }

    fn take_findings(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.findings)
    }

    fn finish(self: Box<Self>, _: &Context<'_>) -> Outcome {
        let mut state = self
            .state
            .unwrap_or_else(|| Sigma::new(self.set.clone(), self.disk.clone()));
        state.absorb_found(self.hits, self.findings);
        let (findings, coverage, _) = state.finish();
        Outcome { findings, coverage }
    }
}
