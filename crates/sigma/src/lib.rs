//! A Sigma engine (Sigma specification v2.1), usable as a library: parse,
//! compile, match and correlate SigmaHQ rules over tokenward events.
//!
//! [`RuleSet::load`] reads rule files and directories (single and
//! multi-document YAML), resolves each rule's `logsource` to the log-source
//! mappings ([`mapping`]) and compiles its detection once per mapping
//! ([`section`]). A rule that cannot load is reported with its file, id and
//! reason ([`LoadIssue`]) and the rest still run. Correlation rules
//! ([`correlate`]) are resolved across every loaded file.
//!
//! During a hunt, [`RuleSet::wants`] tells the reader whether a raw record
//! can match any rule (an ASCII case-insensitive Aho-Corasick scan for the
//! literals each rule needs), [`RuleSet::eval`] matches a parsed event in the
//! worker threads, and [`Sigma`] turns matches into findings and runs the
//! correlations under the engine's lock.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cond;
pub mod correlate;
pub mod cover;
mod gate;
pub mod mapping;
pub mod matcher;
pub mod section;
pub mod yaml;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use serde::Serialize;
use serde_json::{Map, Value};

use tokenward_event::{Event, EventKind};
use tokenward_event::{Evidence, Finding, Rep, Severity};

pub use correlate::Sigma;
use mapping::Mapping;
use section::{EvalCtx, Fields, Placeholders, Section};
use yaml::Y;

/// The note the Detection Rule License asks findings to carry.
pub const DRL_NOTE: &str =
    "Detection Rule License (DRL) 1.1, https://github.com/SigmaHQ/Detection-Rule-License";

/// Rule metadata carried into findings. Read-only once the rule is loaded:
/// [`RuleMeta::shared_evidence`] is built from it on first use and kept.
#[derive(Clone, Debug, Serialize)]
pub struct RuleMeta {
    /// `id` (or the title when the rule has none).
    pub id: String,
    /// `name` (used by correlations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `title`.
    pub title: String,
    /// `level` as written (`informational` .. `critical`).
    pub level: String,
    /// `author`.
    pub author: String,
    /// `license`, or the DRL note for rules found next to a DRL licence.
    pub license: Option<String>,
    /// File the rule came from.
    pub file: String,
    /// 1-based line where the rule's document starts.
    pub line: usize,
    /// MITRE ATT&CK technique ids from the rule's `attack.tNNNN[.NNN]` tags,
    /// upper-cased (`T1114.002`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attack: Vec<String>,
    /// [`RuleMeta::evidence`], built once for every finding to share.
    #[serde(skip)]
    shared_evidence: OnceLock<Arc<Map<String, Value>>>,
}

/// The ATT&CK technique of a Sigma tag (`attack.t1114.002` → `T1114.002`);
/// tactics (`attack.collection`) and other tags are not techniques.
fn attack_technique(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("attack.t")?;
    let (main, sub) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(main, 4) || !(sub.is_empty() || digits(sub, 3)) {
        return None;
    }
    Some(format!("T{rest}"))
}

impl RuleMeta {
    /// The finding severity for the rule's level.
    pub fn severity(&self) -> Severity {
        match self.level.as_str() {
            "high" | "critical" => Severity::High,
            "medium" => Severity::Medium,
            _ => Severity::Low,
        }
    }

    /// The metadata as finding evidence: rule id, title, level, author and
    /// licence note, so every finding shows who wrote the rule.
    pub fn evidence(&self) -> Map<String, Value> {
        let mut e = Map::new();
        e.insert("sigma_id".into(), self.id.clone().into());
        e.insert("sigma_title".into(), self.title.clone().into());
        e.insert("sigma_level".into(), self.level.clone().into());
        e.insert("sigma_author".into(), self.author.clone().into());
        if let Some(l) = &self.license {
            e.insert("sigma_license".into(), l.clone().into());
        }
        e.insert(
            "sigma_rule_file".into(),
            format!("{}:{}", self.file, self.line).into(),
        );
        if !self.attack.is_empty() {
            e.insert("attack".into(), self.attack.clone().into());
        }
        e
    }

    /// [`RuleMeta::evidence`], built on first use and shared by every
    /// finding of the rule (a noisy rule can make one per record).
    pub fn shared_evidence(&self) -> Arc<Map<String, Value>> {
        self.shared_evidence
            .get_or_init(|| Arc::new(self.evidence()))
            .clone()
    }
}

/// A loading problem. `error` ones are rules that are wrong; the others are
/// valid rules that cannot run here (no mapping for their log source,
/// placeholders without values).
#[derive(Clone, Debug, Serialize)]
pub struct LoadIssue {
    /// File.
    pub file: String,
    /// Line where the document starts.
    pub line: usize,
    /// Rule id (or name/title) when known.
    pub rule: Option<String>,
    /// `error`, `inapplicable` or `needs-placeholders`.
    pub kind: &'static str,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for LoadIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(r) = &self.rule {
            write!(f, "rule {r}: ")?;
        }
        write!(f, "{}: {}", self.kind, self.reason)
    }
}

/// A detection rule compiled for its log sources.
#[derive(Debug)]
pub struct Rule {
    /// Metadata.
    pub meta: RuleMeta,
    /// (mapping index, compiled detection) per covered log source.
    pub compiled: Vec<(usize, Section)>,
    /// Whether its matches become findings (false when a correlation that
    /// refers to it does not `generate`).
    pub output: bool,
    /// Correlations fed by this rule.
    pub feeds: Vec<usize>,
    /// What a raw record must contain to possibly match (None: any record).
    pub literals: Option<Vec<section::Alt>>,
}

impl Rule {
    /// About how many bytes the compiled rule holds on the heap
    /// ([`Section::heap_bytes`] for each log source, plus its screen
    /// literals): what the per-rule budget ([`LoadOptions::rule_memory_max`])
    /// is checked against.
    pub fn heap_bytes(&self) -> usize {
        let literals = self.literals.as_ref().map_or(0, |alts| {
            alts.iter()
                .flatten()
                .flatten()
                .map(|l| std::mem::size_of::<String>() + l.len())
                .sum::<usize>()
                + alts.iter().map(|a| a.len() * 24 + 24).sum::<usize>()
        });
        // Metadata, names and small vectors, about the same for any rule.
        const FIXED: usize = 2048;
        FIXED
            + self
                .compiled
                .iter()
                .map(|(_, s)| s.heap_bytes())
                .sum::<usize>()
            + literals
    }
}

/// Options for loading rules.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Extra mapping files or directories.
    pub mappings: Vec<PathBuf>,
    /// A YAML file of placeholder values for `expand` (`name: [values]`).
    pub placeholders: Option<PathBuf>,
    /// Most heap one compiled rule may hold ([`Rule::heap_bytes`]), in
    /// bytes; [`RULE_MEMORY_MAX`] when `None`. A rule past it is refused.
    pub rule_memory_max: Option<usize>,
}

/// Default per-rule memory budget: 256 MiB, about 2.5 million plain
/// values or 12,000 wildcard patterns in one rule.
pub const RULE_MEMORY_MAX: usize = 256 << 20;

/// Largest rule file read; a longer one is refused unread (pipes are read
/// only up to it).
pub const RULE_FILE_MAX: u64 = 256 << 20;

/// Reads a rule file, refusing one longer than [`RULE_FILE_MAX`].
fn read_rule_file(f: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(f).map_err(|e| format!("cannot read: {e}"))?;
    let too_long = || format!("larger than {} MiB, not read", RULE_FILE_MAX >> 20);
    if file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.len() > RULE_FILE_MAX)
    {
        return Err(too_long());
    }
    let mut text = String::new();
    file.take(RULE_FILE_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() as u64 > RULE_FILE_MAX {
        return Err(too_long());
    }
    Ok(text)
}

/// A compiled rule set.
#[derive(Debug)]
pub struct RuleSet {
    /// Log-source mappings in use.
    pub mappings: Vec<Mapping>,
    /// Resolved fields.
    pub fields: Fields,
    /// Detection rules that run.
    pub rules: Vec<Rule>,
    /// Correlation rules that run.
    pub correlations: Vec<correlate::Correlation>,
    /// Problems found while loading.
    pub issues: Vec<LoadIssue>,
    /// Rule files read.
    pub files: usize,
    /// Per mapping: rule indexes that apply.
    buckets: Vec<Vec<usize>>,
    /// Per mapping, the gates of its bucket's rules (`None`: try them all).
    gates: Vec<Option<gate::SourceGates>>,
    /// The screen over raw records of any kind.
    screen: RulesScreen,
    /// Per kind (in [`EventKind::ALL`] order), the screen of the rules
    /// written for that kind: a record known to be a UAL record need not
    /// be searched for the texts of sign-in or Azure Activity rules, which
    /// were most of the screen's texts.
    kind_screens: Vec<KindScreen>,
    /// Which records some rule reads beyond [`RuleSet::paths`].
    whole: RulesScreen,
    /// Per rule: it searches keywords (reads every string of a record).
    keyword_rules: Vec<bool>,
    /// Every record read beyond [`RuleSet::paths`] is read for keywords
    /// that its words answer alone ([`RuleSet::reads_words_alone`]).
    words_alone: bool,
    /// Per mapping: events evaluated (to tell blind rules).
    seen: Vec<AtomicU64>,
}

/// `*.yml` / `*.yaml` files under a path (the path itself when a file).
pub fn yaml_files(p: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                out.extend(yaml_files(&e)?);
            } else if e
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| x.eq_ignore_ascii_case("yml") || x.eq_ignore_ascii_case("yaml"))
            {
                out.push(e);
            }
        }
    } else {
        std::fs::metadata(p)?;
        out.push(p.to_path_buf());
    }
    Ok(out)
}

/// Whether a DRL licence file sits in the rule's directory or above it.
/// Every directory walked keeps the answer for the rest of the process
/// (a licence added later is not seen): a rule set of 142 files in a
/// few directories otherwise tried the same four names in each directory
/// above every file, a fifth of loading the SigmaHQ cloud rules.
fn drl_near(file: &Path) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, bool>>> = OnceLock::new();
    let cache = || {
        CACHE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    };
    let mut walked = Vec::new();
    let mut dir = file.parent();
    let mut found = false;
    while let Some(d) = dir {
        if let Some(&b) = cache().get(d) {
            found = b;
            break;
        }
        walked.push(d.to_path_buf());
        let here = [
            "LICENSE",
            "LICENSE.md",
            "LICENSE.txt",
            "LICENSE.Detection.Rules.md",
        ]
        .iter()
        .any(|n| {
            std::fs::read_to_string(d.join(n)).is_ok_and(|t| t.contains("Detection Rule License"))
        });
        if here {
            found = true;
            break;
        }
        dir = d.parent();
    }
    let mut cache = cache();
    for d in walked {
        cache.insert(d, found);
    }
    found
}

/// A parsed document before compilation.
struct Doc {
    meta: RuleMeta,
    body: Y,
}

fn meta_of(y: &Y, file: &str, line: usize, drl: bool) -> RuleMeta {
    let title = y.get("title").and_then(Y::as_text).unwrap_or_default();
    let id = y
        .get("id")
        .and_then(Y::as_text)
        .or_else(|| y.get("name").and_then(Y::as_text))
        .unwrap_or_else(|| title.clone());
    let author = match y.get("author") {
        Some(Y::Seq(v)) => v
            .iter()
            .filter_map(Y::scalar_text)
            .collect::<Vec<_>>()
            .join(", "),
        Some(a) => a.as_text().unwrap_or_default(),
        None => String::new(),
    };
    RuleMeta {
        id,
        name: y.get("name").and_then(Y::as_text),
        title,
        level: y
            .get("level")
            .and_then(Y::as_text)
            .map(|s| s.to_lowercase())
            .unwrap_or_else(|| "medium".into()),
        author,
        license: y
            .get("license")
            .and_then(Y::as_text)
            .or_else(|| drl.then(|| DRL_NOTE.to_string())),
        file: file.to_string(),
        line,
        attack: match y.get("tags") {
            Some(Y::Seq(tags)) => tags
                .iter()
                .filter_map(Y::scalar_text)
                .filter_map(|t| attack_technique(&t.to_ascii_lowercase()))
                .collect(),
            _ => Vec::new(),
        },
        shared_evidence: OnceLock::new(),
    }
}

impl RuleSet {
    /// Loads rules from files and directories.
    pub fn load(paths: &[impl AsRef<Path>], opts: &LoadOptions) -> Result<RuleSet, String> {
        let mappings = mapping::load(&opts.mappings)?;
        let placeholders = match &opts.placeholders {
            Some(p) => load_placeholders(p)?,
            None => Placeholders::new(),
        };
        let mut texts = Vec::new();
        let mut issues = Vec::new();
        for p in paths {
            let p = p.as_ref();
            match yaml_files(p) {
                Ok(fs) => {
                    for f in fs {
                        match read_rule_file(&f) {
                            Ok(t) => texts.push((f.display().to_string(), drl_near(&f), t)),
                            Err(reason) => issues.push(LoadIssue {
                                file: f.display().to_string(),
                                line: 0,
                                rule: None,
                                kind: "error",
                                reason,
                            }),
                        }
                    }
                }
                Err(e) => issues.push(LoadIssue {
                    file: p.display().to_string(),
                    line: 0,
                    rule: None,
                    kind: "error",
                    reason: format!("cannot read: {e}"),
                }),
            }
        }
        let mut set = Self::from_texts_within(
            texts.iter().map(|(f, d, t)| (f.as_str(), *d, t.as_str())),
            mappings,
            &placeholders,
            opts.rule_memory_max.unwrap_or(RULE_MEMORY_MAX),
        );
        issues.append(&mut set.issues);
        set.issues = issues;
        Ok(set)
    }

    /// Compiles rules given as texts: `(file name, DRL-licensed, YAML)`,
    /// within the default per-rule budget ([`RULE_MEMORY_MAX`]).
    pub fn from_texts<'a>(
        texts: impl IntoIterator<Item = (&'a str, bool, &'a str)>,
        mappings: Vec<Mapping>,
        placeholders: &Placeholders,
    ) -> RuleSet {
        Self::from_texts_within(texts, mappings, placeholders, RULE_MEMORY_MAX)
    }

    /// [`RuleSet::from_texts`] with a per-rule memory budget in bytes: a
    /// rule whose compiled form would hold more ([`Rule::heap_bytes`]) is
    /// refused with a load error naming its size, and the others run.
    pub fn from_texts_within<'a>(
        texts: impl IntoIterator<Item = (&'a str, bool, &'a str)>,
        mappings: Vec<Mapping>,
        placeholders: &Placeholders,
        rule_memory_max: usize,
    ) -> RuleSet {
        let mut issues = Vec::new();
        let mut dets = Vec::new();
        let mut corrs = Vec::new();
        let mut files = 0;
        for (file, drl, text) in texts {
            files += 1;
            // A document without a title or detection that only sets keys
            // (a Sigma v1 "action: global" header) is not supported.
            for d in yaml::documents(text) {
                let y = match d.parsed {
                    Ok(y) => y,
                    Err(e) => {
                        issues.push(LoadIssue {
                            file: file.into(),
                            line: d.line,
                            rule: d.raw_id,
                            kind: "error",
                            reason: e,
                        });
                        continue;
                    }
                };
                let meta = meta_of(&y, file, d.line, drl);
                let err = |reason: String| LoadIssue {
                    file: file.into(),
                    line: d.line,
                    rule: Some(meta.id.to_string()),
                    kind: "error",
                    reason,
                };
                if !matches!(y, Y::Map(_)) {
                    issues.push(err("a rule must be a YAML map".into()));
                    continue;
                }
                if y.get("action").is_some() {
                    issues.push(err(
                        "`action` documents (Sigma v1 rule collections) are not Sigma v2".into(),
                    ));
                    continue;
                }
                if meta.title.is_empty() {
                    issues.push(err("missing title".into()));
                    continue;
                }
                if y.get("filter").is_some() && y.get("detection").is_none() {
                    issues.push(LoadIssue {
                        kind: "inapplicable",
                        ..err("Sigma filters (meta-filters) are not run by hunt".into())
                    });
                    continue;
                }
                if y.get("correlation").is_some() {
                    corrs.push(Doc { meta, body: y });
                } else if y.get("detection").is_some() {
                    dets.push(Doc { meta, body: y });
                } else {
                    issues.push(err("neither detection nor correlation".into()));
                }
            }
        }
        let mut fields = Fields::default();
        let mut rules = Vec::new();
        for d in dets {
            let issue = |kind: &'static str, reason: String| LoadIssue {
                file: d.meta.file.clone(),
                line: d.meta.line,
                rule: Some(d.meta.id.to_string()),
                kind,
                reason,
            };
            let ls = d.body.get("logsource");
            let key = |k: &str| {
                ls.and_then(|l| l.get(k))
                    .and_then(Y::as_text)
                    .map(|s| s.to_lowercase())
            };
            let (p, s, c) = (key("product"), key("service"), key("category"));
            if ls.is_none() {
                issues.push(issue("error", "missing logsource".into()));
                continue;
            }
            let covered: Vec<usize> = (0..mappings.len())
                .filter(|&i| mappings[i].covers(p.as_deref(), s.as_deref(), c.as_deref()))
                .collect();
            let det = d.body.get("detection").expect("checked above");
            if covered.is_empty() {
                // Still check that the rule itself is valid, against an
                // identity mapping, so a broken rule is an error either way.
                let probe = Mapping {
                    source: String::new(),
                    title: String::new(),
                    product: None,
                    service: None,
                    category: None,
                    kinds: vec![EventKind::Other],
                    require_any: Vec::new(),
                    raw_any: Vec::new(),
                    fields: HashMap::new(),
                };
                let mut scratch = Fields::default();
                match section::compile(det, &mut scratch, 0, &probe, &placeholders.clone()) {
                    Err(section::CompileError::Invalid(e)) => {
                        issues.push(issue("error", e));
                    }
                    _ => issues.push(issue(
                        "inapplicable",
                        format!(
                            "no log-source mapping for {}; hunt reads Microsoft 365, Entra ID and Azure logs",
                            [("product", &p), ("service", &s), ("category", &c)]
                                .iter()
                                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                }
                continue;
            }
            let mut compiled = Vec::new();
            let mut failed = None;
            for &mi in &covered {
                match section::compile(det, &mut fields, mi, &mappings[mi], placeholders) {
                    Ok(dt) => compiled.push((mi, dt)),
                    Err(section::CompileError::Invalid(e)) => {
                        failed = Some(issue("error", e));
                        break;
                    }
                    Err(section::CompileError::Placeholder(e)) => {
                        failed = Some(issue(
                            "needs-placeholders",
                            format!("{e}; give values with --sigma-placeholders FILE"),
                        ));
                        break;
                    }
                }
            }
            if let Some(f) = failed {
                issues.push(f);
                continue;
            }
            // Literals must hold for every mapping's compilation (they are
            // the same rule text, so the first is representative); without
            // any, fall back to the log sources' own raw markers.
            let literals = section::required_literals(&compiled[0].1, &fields).or_else(|| {
                let mut v = Vec::new();
                for (mi, _) in &compiled {
                    if mappings[*mi].raw_any.is_empty() {
                        return None;
                    }
                    v.extend(mappings[*mi].raw_any.iter().map(|l| vec![vec![l.clone()]]));
                }
                Some(v)
            });
            let rule = Rule {
                meta: d.meta,
                compiled,
                output: true,
                feeds: Vec::new(),
                literals,
            };
            let bytes = rule.heap_bytes();
            if bytes > rule_memory_max {
                issues.push(LoadIssue {
                    file: rule.meta.file.clone(),
                    line: rule.meta.line,
                    rule: Some(rule.meta.id.to_string()),
                    kind: "error",
                    reason: format!(
                        "compiled, it would hold about {} MiB, over the per-rule memory budget of {} MiB (--sigma-rule-memory)",
                        bytes.div_ceil(1 << 20),
                        rule_memory_max >> 20
                    ),
                });
                continue;
            }
            rules.push(rule);
        }
        let correlations = correlate::resolve(
            corrs.into_iter().map(|d| (d.meta, d.body)).collect(),
            &mut rules,
            &mut fields,
            &mappings,
            &mut issues,
        );
        let mut buckets = vec![Vec::new(); mappings.len()];
        for (ri, r) in rules.iter().enumerate() {
            for (mi, _) in &r.compiled {
                buckets[*mi].push(ri);
            }
        }
        let screen = RulesScreen::new(rules.iter());
        let kind_screens = EventKind::ALL
            .iter()
            .map(|&k| {
                let ids: Vec<usize> = (0..rules.len())
                    .filter(|&i| {
                        rules[i]
                            .compiled
                            .iter()
                            .any(|(mi, _)| mappings[*mi].kinds.contains(&k))
                    })
                    .collect();
                KindScreen {
                    rules: (ids.len() < rules.len()).then_some(ids),
                    screen: OnceLock::new(),
                }
            })
            .collect();
        let keyword_rules: Vec<bool> = rules
            .iter()
            .map(|r| r.compiled.iter().any(|(_, s)| s.has_keywords()))
            .collect();
        // Keyword rules are screened on their own (`wants_whole`): never
        // gated.
        let gates = buckets
            .iter()
            .enumerate()
            .map(|(mi, bucket)| {
                let each: Vec<_> = bucket
                    .iter()
                    .map(|&ri| {
                        if keyword_rules[ri] {
                            return None;
                        }
                        rules[ri]
                            .compiled
                            .iter()
                            .find(|(i, _)| *i == mi)
                            .and_then(|(_, d)| gate::of_section(d))
                    })
                    .collect();
                gate::SourceGates::new(&each)
            })
            .collect();
        let keyword_set = || rules.iter().zip(&keyword_rules).filter(|(_, k)| **k);
        let whole = if fields.some_path_starts_at_the_record()
            || keyword_set().any(|(r, _)| r.literals.is_none())
        {
            RulesScreen::Everything
        } else {
            match Prefilter::new(keyword_set().map(|(r, _)| r)) {
                Some(p) => RulesScreen::Anchored(Box::new(p)),
                // Keyword rules without anchor texts would have no literals.
                None if keyword_set().next().is_some() => RulesScreen::Everything,
                None => RulesScreen::Nothing,
            }
        };
        let words_alone = !fields.some_path_starts_at_the_record()
            && keyword_set()
                .all(|(r, _)| r.compiled.iter().all(|(_, s)| s.keywords_in_words_alone()));
        let mappings_len = mappings.len();
        RuleSet {
            mappings,
            fields,
            rules,
            correlations,
            issues,
            files,
            buckets,
            gates,
            screen,
            kind_screens,
            whole,
            keyword_rules,
            words_alone,
            seen: (0..mappings_len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Events of a mapping's log source evaluated so far.
    pub fn seen(&self, mapping: usize) -> u64 {
        self.seen[mapping].load(Ordering::Relaxed)
    }

    /// Whether some rule could match a raw record with these bytes.
    pub fn wants(&self, raw: &[u8]) -> bool {
        self.screen.wants(raw)
    }

    /// Whether some rule could match a raw record of kind `kind` with these
    /// bytes: [`RuleSet::wants`] with the texts of that kind's rules only.
    pub fn wants_kind(&self, kind: EventKind, raw: &[u8]) -> bool {
        let at = EventKind::ALL.iter().position(|&k| k == kind);
        let Some(KindScreen {
            rules: Some(ids),
            screen,
        }) = at.map(|i| &self.kind_screens[i])
        else {
            return self.screen.wants(raw);
        };
        // Built when first asked for, by a worker: most inputs hold one or
        // two kinds, and building every kind's screen when loading held up
        // the start of a hunt (20 ms for the SigmaHQ cloud rules).
        screen
            .get_or_init(|| RulesScreen::new(ids.iter().map(|&i| &self.rules[i])))
            .wants(raw)
    }

    /// The record paths matching reads: every candidate path of every
    /// field a rule or correlation names (kept whole: selectors and array
    /// fan-out work below them) and the mappings' `require_any` fields.
    pub fn paths(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .fields
            .paths
            .iter()
            .flatten()
            .map(|p| p.head().to_owned())
            .chain(
                self.mappings
                    .iter()
                    .flat_map(|m| m.require_any.iter().cloned()),
            )
            .filter(|p| !p.is_empty())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether matching may read anything in a record: some rule searches
    /// keywords, or a field's path starts at the record itself.
    pub fn reads_whole_records(&self) -> bool {
        !matches!(self.whole, RulesScreen::Nothing)
    }

    /// Whether the records [`RuleSet::wants_whole`] wants are read for
    /// nothing but their values as text: an event projected to
    /// [`RuleSet::paths`] that carries its words
    /// ([`tokenward_event::Event::words`]) is matched as the record built
    /// whole would be. So it is when every keyword rule searches for texts
    /// a value contains (SigmaHQ's are such), and no field's path starts at
    /// the record itself.
    pub fn reads_words_alone(&self) -> bool {
        self.words_alone
    }

    /// The kinds of event [`RuleSet::wants_whole`] speaks for: those of
    /// the log sources its keyword rules are written for (none when no
    /// rule reads records whole), or `None` for every kind (a field's path
    /// starts at the record itself). A record of another kind is never
    /// read past [`RuleSet::paths`].
    pub fn whole_kinds(&self) -> Option<Vec<EventKind>> {
        if self.fields.some_path_starts_at_the_record() {
            return None;
        }
        let mut kinds: Vec<EventKind> = self
            .rules
            .iter()
            .zip(&self.keyword_rules)
            .filter(|(_, k)| **k)
            .flat_map(|(r, _)| r.compiled.iter())
            .flat_map(|(mi, _)| self.mappings[*mi].kinds.iter().copied())
            .collect();
        kinds.sort();
        kinds.dedup();
        Some(kinds)
    }

    /// Whether matching may read more of this raw record than
    /// [`RuleSet::paths`]: a rule that searches keywords could match it, or
    /// a field's path starts at the record itself. Hand [`RuleSet::eval`]
    /// an event projected to those paths ([`Event::projection`] set) only
    /// for records this refuses: it skips keyword rules on such events, as
    /// they cannot match the record. (Or, where
    /// [`RuleSet::reads_words_alone`], one that carries its words.)
    pub fn wants_whole(&self, raw: &[u8]) -> bool {
        self.whole.wants(raw)
    }

    /// Metadata of every rule and correlation that runs.
    pub fn metas(&self) -> impl Iterator<Item = &RuleMeta> {
        self.rules
            .iter()
            .map(|r| &r.meta)
            .chain(self.correlations.iter().map(|c| &c.meta))
    }

    /// Whether any rule runs.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Load problems that are errors (wrong rules).
    pub fn errors(&self) -> impl Iterator<Item = &LoadIssue> {
        self.issues.iter().filter(|i| i.kind == "error")
    }

    /// Matches one event against every rule written for its log source.
    pub fn eval(&self, ev: &Event, out: &mut Vec<Hit>) {
        let mut ctx = EvalCtx::new(ev, &self.fields);
        let mut done: Vec<usize> = Vec::new();
        for (mi, m) in self.mappings.iter().enumerate() {
            if self.buckets[mi].is_empty() || !m.kinds.contains(&ev.kind) {
                continue;
            }
            if !m.require_any.is_empty()
                && !m
                    .require_any
                    .iter()
                    .any(|f| ev.get(f).is_some_and(|v| !v.is_null()))
            {
                continue;
            }
            self.seen[mi].fetch_add(1, Ordering::Relaxed);
            let opened = self.gates[mi].as_ref().map(|g| g.opened(&mut ctx));
            for (place, &ri) in self.buckets[mi].iter().enumerate() {
                if opened.as_ref().is_some_and(|o| !gate::is_open(o, place)) {
                    continue;
                }
                if done.contains(&ri) {
                    continue;
                }
                if self.keyword_rules[ri]
                    && ev.projection.is_some()
                    && (ev.words.is_none() || !self.words_alone)
                {
                    // Screened out by `wants_whole` (none of its anchors
                    // is in the record), or handed without the words it
                    // would search.
                    continue;
                }
                let rule = &self.rules[ri];
                let Some((_, det)) = rule.compiled.iter().find(|(i, _)| *i == mi) else {
                    continue;
                };
                if ctx.matches(det) {
                    done.push(ri);
                    out.push(self.hit(ri, mi, det, &mut ctx));
                }
            }
        }
    }

    fn hit(&self, ri: usize, mi: usize, det: &Section, ctx: &mut EvalCtx<'_, '_>) -> Hit {
        let rule = &self.rules[ri];
        let mut fields = BTreeMap::new();
        for &f in det.fields.iter().take(12) {
            if let Some(v) = ctx.first_text(f) {
                let v: String = v.chars().take(300).collect();
                fields.insert(self.fields.names[f as usize].clone(), v);
            }
        }
        let mut corr = Vec::new();
        for &ci in &rule.feeds {
            corr.push(self.correlations[ci].extract(ri, mi, ctx));
        }
        let ev = ctx.event();
        Hit {
            rule: ri,
            rep: Rep::of(ev),
            fields,
            corr,
        }
    }

    /// The findings of `hits`, in order: one for each hit of a rule whose
    /// matches are output (not one a correlation keeps to itself). Each
    /// such hit gives its matched fields to its finding, and one that feeds
    /// no correlation its representative's user, address and ids too
    /// (moved, not copied: with a rule that fires on most records, copying
    /// them was a good part of each finding's cost). Correlations read
    /// only the representatives of the hits that feed them.
    pub fn findings_of<'h>(&'h self, hits: &'h mut [Hit]) -> impl Iterator<Item = Finding> + 'h {
        hits.iter_mut()
            .filter(|h| self.rules[h.rule].output)
            .map(|h| {
                let fields = std::mem::take(&mut h.fields);
                let (id, title, severity, evidence) = self.finding_parts(h.rule, fields);
                if h.corr.is_empty() {
                    h.rep.take_finding(id, title, severity, evidence)
                } else {
                    h.rep.finding(id, title, severity, evidence)
                }
            })
    }

    /// Finding for a detection-rule hit.
    pub fn finding(&self, h: &Hit) -> Finding {
        let (id, title, severity, evidence) = self.finding_parts(h.rule, h.fields.clone());
        h.rep.finding(id, title, severity, evidence)
    }

    /// What a finding of rule `ri` says besides its event: the rule's id,
    /// title and severity, and evidence of the `fields` that matched on
    /// top of the rule's shared part.
    fn finding_parts(
        &self,
        ri: usize,
        fields: BTreeMap<String, String>,
    ) -> (Cow<'static, str>, Cow<'static, str>, Severity, Evidence) {
        let r = &self.rules[ri];
        let f: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let mut evidence = Evidence::default();
        evidence.insert("fields".to_owned(), Value::Object(f));
        evidence.put_shared(r.meta.shared_evidence());
        (
            Cow::Owned(r.meta.id.clone()),
            Cow::Owned(r.meta.title.clone()),
            r.meta.severity(),
            evidence,
        )
    }

    /// A short account of what loaded, for summaries.
    pub fn summary_line(&self) -> String {
        let count = |k: &str| self.issues.iter().filter(|i| i.kind == k).count();
        format!(
            "{} rule files: {} detection rules and {} correlations run; {} errors, {} inapplicable, {} need placeholders",
            self.files,
            self.rules.len(),
            self.correlations.len(),
            count("error"),
            count("inapplicable"),
            count("needs-placeholders"),
        )
    }
}

/// Texts found in most records of some export: poor prefilter anchors.
fn is_common(l: &str) -> bool {
    const COMMON: &[&str] = &[
        "true",
        "false",
        "null",
        "none",
        "success",
        "succeeded",
        "failure",
        "failed",
        "exchange",
        "sharepoint",
        "onedrive",
        "value",
        "name",
        "microsoft",
        // Operations that make up much of a mailbox audit log.
        "mailitemsaccessed",
        "userloggedin",
        "5.0 (windows nt 10.0; win64; x64) applewebkit",
        "537.36 (khtml, like gecko) chrome",
        "537.36",
        "mozilla",
    ];
    COMMON.iter().any(|c| c.eq_ignore_ascii_case(l))
}

/// Most anchors screened with a DFA.
const DFA_ANCHORS_MAX: usize = 10_000;

/// The screen of the rules written for one kind of event.
#[derive(Debug)]
struct KindScreen {
    /// Those rules (`None`: every rule, and the whole screen serves).
    rules: Option<Vec<usize>>,
    screen: OnceLock<RulesScreen>,
}

/// The screen of some rules over raw records: which records they could
/// match ([`RuleSet::wants`] and [`RuleSet::wants_kind`]), or which their
/// keyword rules read whole ([`RuleSet::wants_whole`]).
#[derive(Debug)]
enum RulesScreen {
    /// No record (no rule; for whole records, no keyword rule).
    Nothing,
    /// Every record (a rule without anchor texts; for whole records, also a
    /// field path that starts at the record itself).
    Everything,
    /// Records holding some rule's anchor texts.
    Anchored(Box<Prefilter>),
}

impl RulesScreen {
    fn new<'r>(rules: impl Iterator<Item = &'r Rule> + Clone) -> RulesScreen {
        if rules.clone().next().is_none() {
            RulesScreen::Nothing
        } else if rules.clone().any(|r| r.literals.is_none()) {
            RulesScreen::Everything
        } else {
            // No anchor text at all is no record.
            Prefilter::new(rules)
                .map_or(RulesScreen::Nothing, |p| RulesScreen::Anchored(Box::new(p)))
        }
    }

    fn wants(&self, raw: &[u8]) -> bool {
        match self {
            RulesScreen::Nothing => false,
            RulesScreen::Everything => true,
            RulesScreen::Anchored(p) => p.wants(raw),
        }
    }
}

/// The raw-record screen. Each alternative has an anchor clause (a value
/// text before a key, then the one whose shortest text is longest, so it is
/// rare in records). The record is lower-cased and SIMD (Teddy) searchers
/// look for short cover texts, every anchor holding one; at each place one
/// is found, the anchors holding it are compared, and only a record with an
/// anchor has the alternative's other clauses checked. Common texts (keys,
/// `true`, `success`) thus never drive the scan. Without SIMD an ASCII
/// case-insensitive Aho-Corasick automaton looks for the anchors instead.
#[derive(Debug)]
struct Prefilter {
    /// The anchor texts, lower-cased.
    lits: Vec<String>,
    /// The automaton over them: built when first used (without SIMD, or
    /// when the cover texts would not do), as few screens use it.
    ac: OnceLock<AhoCorasick>,
    /// The same (lower-case) anchor texts searched for by SIMD searchers
    /// over the lower-cased record: a record in which none is found holds
    /// no anchor. `None` without SIMD, or when the automaton is faster.
    cover: Option<cover::CoverSearch>,
    /// Alternative -> its other clauses (lower-case texts, as searchers).
    rest: Vec<Vec<Vec<memchr::memmem::Finder<'static>>>>,
    /// Anchor text id -> alternatives it anchors.
    by_lit: Vec<Vec<u32>>,
}

impl Prefilter {
    fn new<'r>(rules: impl IntoIterator<Item = &'r Rule>) -> Option<Prefilter> {
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut lits: Vec<String> = Vec::new();
        let mut by_lit: Vec<Vec<u32>> = Vec::new();
        let mut rest = Vec::new();
        for r in rules {
            for alt in r.literals.iter().flatten() {
                // The anchor is the clause least likely to be in every
                // record: values before keys (a field item's key clause
                // comes last, see `section::required_literals`; keys recur
                // in every record of their schema), then texts with a
                // piece that is not in the keys and common values of
                // exports ([`cover::has_rare_piece`]), then long texts, and
                // never texts known to be everywhere (booleans, result
                // words, the common browser user-agent prefix). (By length
                // alone, a value quoting JSON, split into its runs, was
                // anchored by its longest run: the key `displayName`, in
                // every directory audit record many times, rather than
                // `Guest`.)
                let key_at = (alt.len() > 1).then(|| alt.len() - 1);
                let Some(anchor) = (0..alt.len()).max_by_key(|&i| {
                    let w = alt[i]
                        .iter()
                        .map(|l| if is_common(l) { 0 } else { l.len() })
                        .min()
                        .unwrap_or(0);
                    // Each text of the clause has a rare piece. (Ranked
                    // by the share of rare pieces, `keys` and `join`
                    // anchored Azure Activity rules over
                    // `microsoft.keyvault`, whose `microsoft` is common:
                    // more screening texts, found in more records.)
                    let rare = alt[i].iter().all(|l| cover::has_rare_piece(l));
                    // A value text that is not common ranks above every
                    // key: keys are in every record of their schema.
                    (Some(i) != key_at && w > 0, rare, w)
                }) else {
                    continue;
                };
                let ai = rest.len() as u32;
                rest.push(
                    alt.iter()
                        .enumerate()
                        .filter(|(i, _)| *i != anchor)
                        .map(|(_, c)| {
                            c.iter()
                                .map(|l| {
                                    memchr::memmem::Finder::new(l.to_ascii_lowercase().as_bytes())
                                        .into_owned()
                                })
                                .collect()
                        })
                        .collect(),
                );
                for l in &alt[anchor] {
                    let key = l.to_ascii_lowercase();
                    let id = *ids.entry(key.clone()).or_insert_with(|| {
                        lits.push(key);
                        by_lit.push(Vec::new());
                        (lits.len() - 1) as u32
                    });
                    by_lit[id as usize].push(ai);
                }
            }
        }
        if lits.is_empty() {
            return None;
        }
        // Teddy takes at most 64 patterns, so it looks for a few short
        // texts that cover every anchor (each anchor contains one), and
        // where one is found, the anchors holding it are compared there;
        // without it (no SIMD), the automaton screens alone.
        let cover = cover::CoverSearch::new(&lits, cover::SEARCHER_TEXTS, usize::MAX);
        Some(Prefilter {
            lits,
            ac: OnceLock::new(),
            cover,
            rest,
            by_lit,
        })
    }

    /// The automaton over the anchor texts.
    fn automaton(&self) -> &AhoCorasick {
        self.ac.get_or_init(|| {
            // A DFA of tens of thousands of anchors takes hundreds of MiB;
            // the contiguous NFA a fraction, at some speed.
            let kind = if self.lits.len() > DFA_ANCHORS_MAX {
                AhoCorasickKind::ContiguousNFA
            } else {
                AhoCorasickKind::DFA
            };
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(Some(kind))
                .build(&self.lits)
                .or_else(|_| {
                    AhoCorasickBuilder::new()
                        .ascii_case_insensitive(true)
                        .build(&self.lits)
                })
                .expect("literal patterns build")
        })
    }

    /// Whether some alternative anchored by anchor text `li` has its other
    /// clauses in the lower-cased record.
    fn alt_holds(&self, li: usize, lower: &[u8]) -> bool {
        self.by_lit[li].iter().any(|&a| {
            self.rest[a as usize]
                .iter()
                .all(|c| c.iter().any(|f| f.find(lower).is_some()))
        })
    }

    fn wants(&self, raw: &[u8]) -> bool {
        thread_local! {
            // The lower-cased record, and which anchors' alternatives were
            // checked in it, reused across records.
            static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u64>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        SCRATCH.with(|b| {
            let (b, checked) = &mut *b.borrow_mut();
            b.clear();
            b.extend_from_slice(raw);
            b.make_ascii_lowercase();
            let b = &b[..];
            let Some(cover) = &self.cover else {
                return self.wants_ac(b, checked);
            };
            self.fresh_checks(checked);
            // An anchor's occurrence holds its cover text, so none is
            // missed.
            cover.find(b, |_, li| self.alt_holds_once(li, b, checked))
        })
    }

    /// Marks no anchor's alternatives checked (a new record).
    fn fresh_checks(&self, checked: &mut Vec<u64>) {
        checked.clear();
        checked.resize(self.lits.len().div_ceil(64), 0);
    }

    /// [`Prefilter::alt_holds`] the first time anchor `li` is found in the
    /// record, false after: its alternatives are checked against the whole
    /// record, so once is enough however often it occurs. A key name that
    /// is an anchor (`displayName`) occurs many times in a directory audit
    /// record, and checking at each place was a third of the screen's time
    /// over such records.
    fn alt_holds_once(&self, li: usize, lower: &[u8], checked: &mut [u64]) -> bool {
        let (word, bit) = (li / 64, 1u64 << (li % 64));
        let first = checked[word] & bit == 0;
        checked[word] |= bit;
        first && self.alt_holds(li, lower)
    }

    /// [`Prefilter::wants`] with the automaton, on the lower-cased record.
    fn wants_ac(&self, lower: &[u8], checked: &mut Vec<u64>) -> bool {
        // Most records hold no anchor: the plain search exits on the first
        // hit and is cheaper than the overlapping one.
        let ac = self.automaton();
        if !ac.is_match(lower) {
            return false;
        }
        self.fresh_checks(checked);
        ac.find_overlapping_iter(lower)
            .any(|m| self.alt_holds_once(m.pattern().as_usize(), lower, checked))
    }
}

/// A detection-rule match, made in a worker thread.
#[derive(Debug)]
pub struct Hit {
    /// Rule index.
    pub rule: usize,
    /// The event's reporting fields.
    pub rep: Rep,
    /// Values of the fields the rule names.
    pub fields: BTreeMap<String, String>,
    /// What each correlation fed by the rule needs from the event.
    pub corr: Vec<correlate::Extract>,
}

/// Reads a placeholder file: a YAML map of name -> value or list of values.
pub fn load_placeholders(p: &Path) -> Result<Placeholders, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut out = Placeholders::new();
    for d in yaml::documents(&text) {
        let y = d.parsed.map_err(|e| format!("{}: {e}", p.display()))?;
        let Y::Map(m) = y else {
            return Err(format!(
                "{}: placeholders must be a map of name: [values]",
                p.display()
            ));
        };
        for (k, v) in m {
            out.insert(k.trim_matches('%').to_string(), v.text_list());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
