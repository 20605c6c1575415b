//! The detections as SQL, for engines that run them where the data lives
//! (ClickHouse, Spark; docs/scale.md).
//!
//! The script reads the events table `tokenward events` fills and whose
//! schema `tokenward sql --schema` prints. Its last statement is a `SELECT`
//! whose rows are findings, with the columns of hunt's JSONL findings. A
//! rule or detection the compiler cannot express with the embedded
//! engine's exact semantics is refused with its reason, never converted
//! approximately.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod buckets;
mod builtin;
mod corr;
pub mod dialect;
mod sigma;
mod signin;

pub use dialect::Dialect;

use tokenward_event::EventKind;
use tokenward_sigma::RuleSet;

/// The finding columns, in order, as hunt's JSONL findings name them
/// (every column of a finding but its evidence).
pub const FINDING_COLUMNS: [&str; 11] = tokenward_event::finding::COLUMNS;

/// A rule or detection left out of the script, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Rule or detection id.
    pub id: String,
    /// Where it came from: `file:line`, or `built-in`.
    pub origin: String,
    /// Why it cannot be expressed.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.id, self.reason)
    }
}

/// What to compile.
#[derive(Clone, Debug)]
pub struct Options {
    /// The engine.
    pub dialect: Dialect,
    /// The events table.
    pub table: String,
    /// Whether to include the built-in detections.
    pub builtin: bool,
}

/// A compiled script.
#[derive(Debug)]
pub struct Script {
    /// The SQL: statements end with `;` at the end of a line; the last is
    /// the findings `SELECT`.
    pub sql: String,
    /// Ids of the rules and detections the script runs.
    pub compiled: Vec<String>,
    /// Those it does not, with reasons.
    pub refused: Vec<Refusal>,
}

/// One compiled finding source: its id, title, severity and predicates
/// (per log source, with the event kinds of its records).
struct Source {
    id: String,
    title: String,
    /// An SQL expression (a built-in may grade its findings).
    severity: String,
    alts: Vec<(Vec<EventKind>, String)>,
}

impl Source {
    /// The predicate for events of kind `k`, if the rule reads them.
    fn predicate(&self, k: EventKind) -> Option<String> {
        let ps: Vec<&str> = self
            .alts
            .iter()
            .filter(|(kinds, _)| kinds.contains(&k))
            .map(|(_, p)| p.as_str())
            .collect();
        (!ps.is_empty()).then(|| format!("({})", ps.join(" OR ")))
    }
}

/// Compiles a Sigma rule set (its detection rules that report findings,
/// and its correlations) into one findings query.
pub fn compile(rules: &RuleSet, opts: &Options) -> Script {
    let d = opts.dialect;
    let mut sc = sigma::SigmaCompiler::new(d, rules);
    let no_rules = RuleSet::from_texts([], Vec::new(), &Default::default());
    let mut gc = sigma::SigmaCompiler::new(d, &no_rules);
    let mut grouped_scan = false;
    let mut sources = Vec::new();
    let mut refused = Vec::new();
    let mut compiled_by_steps = Vec::new();
    for r in &rules.rules {
        if !r.output {
            continue;
        }
        match sc.rule(&r.compiled) {
            Ok(p) => sources.push(Source {
                id: r.meta.id.clone(),
                title: r.meta.title.clone(),
                severity: d.lit(r.meta.severity().as_str()),
                alts: p,
            }),
            Err(reason) => refused.push(Refusal {
                id: r.meta.id.clone(),
                origin: format!("{}:{}", r.meta.file, r.meta.line),
                reason,
            }),
        }
    }
    let mut corrs = Vec::new();
    for (ci, c) in rules.correlations.iter().enumerate() {
        match corr::compile(&mut sc, ci, SCAN) {
            Ok(x) => {
                corrs.push(x);
                compiled_by_steps.push(c.meta.id.clone());
            }
            Err(reason) => refused.push(Refusal {
                id: c.meta.id.clone(),
                origin: format!("{}:{}", c.meta.file, c.meta.line),
                reason,
            }),
        }
    }
    if opts.builtin {
        let setup = tokenward_detect::Setup {
            iocs: std::sync::Arc::new(tokenward_detect::ioc::IocSet::builtin()),
            options: Default::default(),
            // Compiling reads no records: no state is held.
            state: tokenward_spill::spilling::StateDisk::new(0),
        };
        for b in tokenward_detect::BUILTINS {
            match builtin::compile(&mut sc, &mut gc, b.info.id, &setup, GROUPED_SCAN) {
                Ok(builtin::Compiled::PerRecord { alts, severity }) => sources.push(Source {
                    id: b.info.id.to_string(),
                    title: b.info.title.to_string(),
                    severity,
                    alts,
                }),
                Ok(builtin::Compiled::Grouped { steps, select }) => {
                    grouped_scan = true;
                    corrs.push(corr::Compiled { steps, select });
                    compiled_by_steps.push(b.info.id.to_string());
                }
                Err(reason) => refused.push(Refusal {
                    id: b.info.id.to_string(),
                    origin: "built-in".into(),
                    reason,
                }),
            }
        }
    }
    let mut scans = vec![("e", sc.levels())];
    if grouped_scan {
        scans.push(("g", gc.levels()));
    }
    let sql = script(d, &opts.table, &scans, &sources, &corrs);
    let mut compiled: Vec<String> = sources.into_iter().map(|s| s.id).collect();
    compiled.extend(compiled_by_steps);
    Script {
        sql,
        compiled,
        refused,
    }
}

/// The scan step the detections read: the last of the levels
/// [`sigma::SigmaCompiler::levels`] gives (maps narrowed to the keys read,
/// lookups, chosen paths, fields, their non-null and lower-cased values).
const SCAN: &str = "e4";

/// Steps of derived columns, each a list of (name, expression).
type Levels = Vec<Vec<(String, String)>>;

/// The scan the grouped built-ins read: the same levels, over only the
/// values they read, so that the many uses of it stay small.
const GROUPED_SCAN: &str = "g4";

fn script(
    d: Dialect,
    table: &str,
    scans: &[(&str, Levels)],
    sources: &[Source],
    corrs: &[corr::Compiled],
) -> String {
    let event_cols: Vec<String> = FINDING_COLUMNS[3..].iter().map(|c| d.ident(c)).collect();
    // One query step per level of derived columns: each reads the
    // columns of the step before.
    let mut steps: Vec<(String, String)> = Vec::new();
    let mut last = Vec::new();
    for (prefix, levels) in scans {
        let mut from = table.to_string();
        for (i, level) in levels.iter().enumerate() {
            let mut cols = vec!["*".to_string()];
            cols.extend(level.iter().map(|(n, e)| format!("{e} AS {n}")));
            steps.push((
                format!("{prefix}{i}"),
                format!("  SELECT {}\n  FROM {from}", cols.join(",\n    ")),
            ));
            from = format!("{prefix}{i}");
        }
        last.push(from);
    }
    debug_assert_eq!(last[0], SCAN);
    debug_assert!(last.len() < 2 || last[1] == GROUPED_SCAN);
    let from = SCAN.to_string();
    let select_cols = |r: &str| -> String {
        let mut v = vec![
            format!("{r}rule_id AS rule_id"),
            format!("{r}rule_title AS rule_title"),
            format!("{r}severity AS severity"),
        ];
        v.extend(event_cols.iter().cloned());
        v.join(", ")
    };
    // Rules are grouped by the kind of event they read, so each event is
    // tested only against the rules of its kind (CASE and multiIf evaluate
    // only the branch taken).
    let per_kind = |hit: &dyn Fn(&Source, String) -> String| -> Vec<(EventKind, Vec<String>)> {
        EventKind::ALL
            .iter()
            .map(|&k| {
                let hits = sources
                    .iter()
                    .filter_map(|s| s.predicate(k).map(|p| hit(s, p)))
                    .collect::<Vec<_>>();
                (k, hits)
            })
            .filter(|(_, h)| !h.is_empty())
            .collect()
    };
    let kind = d.ident("log_kind");
    let single = match d {
        Dialect::ClickHouse => {
            let groups = per_kind(&|s: &Source, p: String| {
                format!(
                    "    if({p}, tuple({}, {}, {}), tuple('', '', ''))",
                    d.lit(&s.id),
                    d.lit(&s.title),
                    s.severity
                )
            });
            let cols = select_cols("hit.")
                .replace("hit.rule_id", "hit.1")
                .replace("hit.rule_title", "hit.2")
                .replace("hit.severity", "hit.3");
            // One branch per event kind, filtered before the rules run:
            // ClickHouse evaluates every argument of a multiIf.
            let branches: Vec<String> = groups
                .iter()
                .map(|(k, hits)| {
                    format!(
                        "SELECT {cols}\nFROM (\n  SELECT *, arrayJoin(arrayFilter(r -> r.1 != '', [\n{}\n  ])) AS hit\n  FROM {from}\n  WHERE {kind} = {}\n)",
                        hits.join(",\n"),
                        d.lit(k.as_str())
                    )
                })
                .collect();
            if branches.is_empty() {
                format!(
                    "SELECT {cols}\nFROM (SELECT *, arrayJoin(CAST([], 'Array(Tuple(String, String, String))')) AS hit FROM {from})"
                )
            } else {
                branches.join("\nUNION ALL\n")
            }
        }
        Dialect::Spark => {
            let empty =
                "CAST(array() AS ARRAY<STRUCT<rule_id: STRING, rule_title: STRING, severity: STRING>>)";
            let groups = per_kind(&|s: &Source, p: String| {
                format!(
                    "    IF({p}, named_struct('rule_id', {}, 'rule_title', {}, 'severity', {}), NULL)",
                    d.lit(&s.id),
                    d.lit(&s.title),
                    s.severity
                )
            });
            let branches: Vec<String> = groups
                .iter()
                .map(|(k, hits)| {
                    format!(
                        "  WHEN {kind} = {} THEN array(\n{}\n  )",
                        d.lit(k.as_str()),
                        hits.join(",\n")
                    )
                })
                .collect();
            let list = if groups.is_empty() {
                empty.to_string()
            } else {
                format!(
                    "filter(CASE\n{}\n  ELSE {empty} END, r -> r IS NOT NULL)",
                    branches.join("\n")
                )
            };
            steps.push((
                "m".into(),
                format!("  SELECT {from}.*, explode({list}) AS hit\n  FROM {from}"),
            ));
            format!("SELECT {}\nFROM m", select_cols("hit."))
        }
    };
    let mut selects = vec![single];
    for c in corrs {
        for (name, body) in &c.steps {
            // Shared steps (the sign-in index) are emitted by every
            // detection that reads them, alike; one copy is kept.
            match steps.iter().find(|(n, _)| n == name) {
                Some((_, kept)) => debug_assert_eq!(kept, body, "step {name} differs"),
                None => steps.push((name.clone(), body.clone())),
            }
        }
        selects.push(c.select.clone());
    }
    let with: Vec<String> = steps
        .iter()
        .map(|(n, b)| format!("{n} AS (\n{b}\n)"))
        .collect();
    // A rule set compiles to one large query; ClickHouse's default limits
    // on query size and syntax-tree size are for hand-written queries.
    let settings = match d {
        Dialect::ClickHouse => "SET max_query_size = 268435456, max_ast_elements = 50000000, max_expanded_ast_elements = 50000000;\n",
        Dialect::Spark => "",
    };
    format!(
        "-- tokenward sql --dialect {}: {} detections over {table}\n{settings}WITH {}\n{};\n",
        d.name(),
        sources.len() + corrs.len(),
        with.join(",\n"),
        selects.join("\nUNION ALL\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_text(text: &str) -> Script {
        let set = RuleSet::from_texts(
            [("t.yml", false, text)],
            tokenward_sigma::mapping::builtin(),
            &Default::default(),
        );
        assert_eq!(set.errors().count(), 0, "{:?}", set.issues);
        compile(
            &set,
            &Options {
                dialect: Dialect::ClickHouse,
                table: "t".into(),
                builtin: false,
            },
        )
    }

    fn rule(id: &str, item: &str) -> String {
        format!(
            "title: {id}\nid: {id}\nlogsource: {{product: m365, service: audit}}\ndetection:\n    sel:\n        {item}\n    condition: sel\nlevel: low\n---\n"
        )
    }

    /// What would run with other semantics is refused, with the reason;
    /// the rest of the file still compiles.
    #[test]
    fn refuses_what_the_engines_would_read_differently() {
        let text = [
            rule("re", "Operation|re: '^Set-.*'"),
            rule("v6", "ClientIP|cidr: '2001:db8::/32'"),
            rule("hour", "CreationTime|hour: 3"),
            rule("ok", "Operation: 'Set-Mailbox'"),
        ]
        .concat();
        let s = compile_text(&text);
        assert_eq!(s.compiled, ["ok"]);
        let why = |id: &str| {
            s.refused
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.reason.clone())
                .unwrap_or_default()
        };
        assert!(why("re").contains("regular expression"), "{:?}", s.refused);
        assert!(why("v6").contains("IPv6"), "{:?}", s.refused);
        assert!(why("hour").contains("time-part"), "{:?}", s.refused);
        assert!(s
            .refused
            .iter()
            .all(|r| r.origin == "t.yml:1" || r.origin.starts_with("t.yml:")));
        // The compiled rule's value reaches the script only as a literal.
        assert!(s.sql.contains("'set-mailbox'"), "{}", s.sql);
    }

    /// A mapping path that selects on a key the export does not write
    /// selector paths for cannot be reached, so the rule is refused.
    #[test]
    fn selector_keys_outside_the_export_are_refused() {
        let p = tokenward_sigma::section::PathSpec::parse("a.list[Name=X].Value");
        assert_eq!(sigma::path_key(&p).unwrap(), "a.list[name=x].value");
        let p = tokenward_sigma::section::PathSpec::parse("a.list[id=X].Value");
        assert!(sigma::path_key(&p).unwrap_err().contains("selector"));
        let p = tokenward_sigma::section::PathSpec::parse("a[name=x][type=y].v");
        assert!(sigma::path_key(&p).is_err());
    }
}
