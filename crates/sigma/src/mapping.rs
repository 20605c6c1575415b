//! Log sources and field mappings: which records a rule is written for, and
//! where a Sigma field name finds its value in each export format.
//!
//! One YAML file per log source (shipped in `mappings/` and compiled in;
//! users add or override with their own files):
//!
//! ```yaml
//! title: Entra ID sign-in logs
//! logsource: {product: azure, service: signinlogs}
//! kinds: [signin]                 # EventKind names the source covers
//! require_any: [riskEventType]    # optional: record must have one of these fields
//! raw_any: [signinlogs, createdDateTime]  # optional prefilter, see below
//! fields:
//!   ResultType: [ResultType, resultType, status.errorCode]
//! ```
//!
//! A field not listed is looked up under its own name. Each candidate path
//! is tried in order (in the wrapped record first, then from the root, exact
//! key before case-insensitive, as [`crate::Event::get_all`] does); the first
//! that exists wins. `raw_any` lists texts that every raw record of the
//! source contains (ASCII case-insensitive); rules with no literal of their
//! own use them to skip records without parsing.

use std::collections::HashMap;
use std::path::Path;

use super::yaml::{documents, Y};
use tokenward_event::EventKind;

/// The mappings shipped with tokenward (the files under `mappings/`).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "m365-audit.yml",
        include_str!("../../../mappings/m365-audit.yml"),
    ),
    (
        "m365-exchange.yml",
        include_str!("../../../mappings/m365-exchange.yml"),
    ),
    (
        "m365-threat-management.yml",
        include_str!("../../../mappings/m365-threat-management.yml"),
    ),
    (
        "m365-threat-detection.yml",
        include_str!("../../../mappings/m365-threat-detection.yml"),
    ),
    (
        "azure-signinlogs.yml",
        include_str!("../../../mappings/azure-signinlogs.yml"),
    ),
    (
        "azure-auditlogs.yml",
        include_str!("../../../mappings/azure-auditlogs.yml"),
    ),
    (
        "azure-activitylogs.yml",
        include_str!("../../../mappings/azure-activitylogs.yml"),
    ),
    (
        "azure-riskdetection.yml",
        include_str!("../../../mappings/azure-riskdetection.yml"),
    ),
    (
        "azure-pim.yml",
        include_str!("../../../mappings/azure-pim.yml"),
    ),
];

/// One log source.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// File it came from.
    pub source: String,
    /// Human name.
    pub title: String,
    /// `product`, `service`, `category` (lower-case; absent keys are `None`).
    pub product: Option<String>,
    /// See `product`.
    pub service: Option<String>,
    /// See `product`.
    pub category: Option<String>,
    /// Event kinds the source covers.
    pub kinds: Vec<EventKind>,
    /// When non-empty, the record must have one of these fields.
    pub require_any: Vec<String>,
    /// Texts every raw record of the source contains.
    pub raw_any: Vec<String>,
    /// Sigma field name -> candidate paths.
    pub fields: HashMap<String, Vec<String>>,
}

fn kind_named(s: &str) -> Option<EventKind> {
    EventKind::ALL
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
}

impl Mapping {
    /// Parses one mapping document.
    pub fn parse(source: &str, y: &Y) -> Result<Mapping, String> {
        let ls = y.get("logsource").ok_or("missing logsource")?;
        let key = |k: &str| ls.get(k).and_then(Y::as_text).map(|s| s.to_lowercase());
        let kinds = y
            .get("kinds")
            .map(Y::text_list)
            .unwrap_or_default()
            .iter()
            .map(|k| kind_named(k).ok_or_else(|| format!("unknown event kind {k:?} (audit, signin, directory-audit, azure-activity, other)")))
            .collect::<Result<Vec<_>, _>>()?;
        if kinds.is_empty() {
            return Err("kinds: at least one event kind is needed".into());
        }
        let mut fields = HashMap::new();
        if let Some(Y::Map(m)) = y.get("fields") {
            for (k, v) in m {
                let c = v.text_list();
                if c.is_empty() {
                    return Err(format!("field {k:?} has no candidate paths"));
                }
                fields.insert(k.clone(), c);
            }
        }
        Ok(Mapping {
            source: source.to_string(),
            title: y.get("title").and_then(Y::as_text).unwrap_or_default(),
            product: key("product"),
            service: key("service"),
            category: key("category"),
            kinds,
            require_any: y.get("require_any").map(Y::text_list).unwrap_or_default(),
            raw_any: y.get("raw_any").map(Y::text_list).unwrap_or_default(),
            fields,
        })
    }

    /// Whether a rule's log source is covered: every key the rule gives
    /// must be given, equal, by the mapping.
    pub fn covers(
        &self,
        product: Option<&str>,
        service: Option<&str>,
        category: Option<&str>,
    ) -> bool {
        let ok = |rule: Option<&str>, mine: &Option<String>| match rule {
            None => true,
            Some(r) => mine.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(r)),
        };
        (product.is_some() || service.is_some() || category.is_some())
            && ok(product, &self.product)
            && ok(service, &self.service)
            && ok(category, &self.category)
    }

    /// Candidate paths of a Sigma field name.
    pub fn paths(&self, field: &str) -> Vec<String> {
        self.fields
            .get(field)
            .cloned()
            .unwrap_or_else(|| vec![field.to_string()])
    }

    /// A short name: `product/service/category`.
    pub fn name(&self) -> String {
        [&self.product, &self.service, &self.category]
            .iter()
            .filter_map(|s| s.as_deref())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Parses every document of a mapping text.
pub fn parse_text(source: &str, text: &str) -> Result<Vec<Mapping>, String> {
    documents(text)
        .into_iter()
        .map(|d| {
            let y = d.parsed.map_err(|e| format!("{source}: {e}"))?;
            Mapping::parse(source, &y).map_err(|e| format!("{source} (line {}): {e}", d.line))
        })
        .collect()
}

/// The built-in mappings.
pub fn builtin() -> Vec<Mapping> {
    BUILTIN
        .iter()
        .flat_map(|(n, t)| parse_text(n, t).expect("shipped mappings parse"))
        .collect()
}

/// Loads mapping files or directories (`*.yml`, `*.yaml`). A user mapping
/// for the same log source as a built-in one replaces it.
pub fn load(paths: &[impl AsRef<Path>]) -> Result<Vec<Mapping>, String> {
    let mut out = builtin();
    for p in paths {
        for f in super::yaml_files(p.as_ref()).map_err(|e| e.to_string())? {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            for m in parse_text(&f.display().to_string(), &text)? {
                out.retain(|o| {
                    (&o.product, &o.service, &o.category) != (&m.product, &m.service, &m.category)
                });
                out.push(m);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_mappings_cover_the_cloud_sources() {
        let ms = builtin();
        for (p, s) in [
            ("m365", "audit"),
            ("azure", "signinlogs"),
            ("azure", "auditlogs"),
            ("azure", "activitylogs"),
            ("azure", "riskdetection"),
        ] {
            assert_eq!(
                ms.iter()
                    .filter(|m| m.covers(Some(p), Some(s), None))
                    .count(),
                1,
                "{p}/{s}"
            );
        }
        // Product alone covers every service of it; other products none.
        assert!(
            ms.iter()
                .filter(|m| m.covers(Some("azure"), None, None))
                .count()
                >= 4
        );
        assert!(!ms
            .iter()
            .any(|m| m.covers(Some("windows"), None, Some("process_creation"))));
        assert!(!ms.iter().any(|m| m.covers(None, None, None)));
    }
}
