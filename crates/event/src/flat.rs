//! Every path of a record with the values hunt's lookups find there, for
//! engines that cannot run [`crate::lookup_all`] themselves (SQL over the
//! exported events, docs/scale.md).
//!
//! A path is the record's keys joined with `.`, ASCII lower-cased (hunt
//! compares keys ASCII case-insensitively), with arrays transparent: the
//! values at a path are what `lookup_all` yields for it from the root.
//! Scalars go to [`PathValues::scalars`] (JSON null as `None`); objects and
//! arrays met as values go to [`PathValues::objects`] as compact JSON, the
//! text hunt's Sigma engine compares them as. Name/value bags get selector
//! paths as well: an object with a string member whose key is one of
//! [`SELECTOR_KEYS`] is also reached as `path[key=value]`, value ASCII
//! lower-cased, which is how a log-source mapping names one entry of
//! `ModifiedProperties` or `additionalDetails`.

use std::collections::BTreeMap;

use serde_json::Value;

/// Member names that select one object of a name/value bag in mapping
/// paths (`modifiedProperties[displayName=X].newValue`): the export writes
/// selector paths for these keys only, so a mapping that selects on another
/// key cannot be compiled to SQL.
pub const SELECTOR_KEYS: &[&str] = &["name", "displayname", "key", "type"];

/// Longest selector value written: longer values are data, not names.
pub const SELECTOR_VALUE_MAX: usize = 128;

/// Values by path.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PathValues {
    /// Scalar values as text (`None` for JSON null).
    pub scalars: BTreeMap<String, Vec<Option<String>>>,
    /// Objects and arrays met as values, as compact JSON.
    pub objects: BTreeMap<String, Vec<String>>,
}

impl PathValues {
    /// Every path of `record` (an object; anything else has no paths).
    pub fn of(record: &Value) -> PathValues {
        let mut out = PathValues::default();
        if let Value::Object(m) = record {
            for (k, v) in m {
                out.walk(v, &k.to_ascii_lowercase());
            }
        }
        out
    }

    /// The node `v` reached at `path`: its values, then what lies below.
    fn walk(&mut self, v: &Value, path: &str) {
        match v {
            // At the end of a path an array gives its elements.
            Value::Array(a) => a.iter().for_each(|x| self.value(x, path)),
            other => self.value(other, path),
        }
        self.descend(v, path);
    }

    fn value(&mut self, v: &Value, path: &str) {
        let text = match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            composite => {
                self.objects
                    .entry(path.to_string())
                    .or_default()
                    .push(composite.to_string());
                return;
            }
        };
        self.scalars.entry(path.to_string()).or_default().push(text);
    }

    fn descend(&mut self, v: &Value, path: &str) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    self.walk(c, &format!("{path}.{}", k.to_ascii_lowercase()));
                }
                for (k, s) in m {
                    let Value::String(s) = s else { continue };
                    let k = k.to_ascii_lowercase();
                    if s.len() > SELECTOR_VALUE_MAX || !SELECTOR_KEYS.contains(&k.as_str()) {
                        continue;
                    }
                    let base = format!("{path}[{k}={}]", s.to_ascii_lowercase());
                    self.value(v, &base);
                    for (k2, c) in m {
                        self.walk(c, &format!("{base}.{}", k2.to_ascii_lowercase()));
                    }
                }
            }
            // Below an array, paths go through every element.
            Value::Array(a) => a.iter().for_each(|x| self.descend(x, path)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup_all;
    use serde_json::json;

    /// The values at every written path are exactly what `lookup_all`
    /// finds there (keys here are unique ignoring case and hold no dots,
    /// the two cases where hunt's first-hit lookup and a flat map differ).
    #[test]
    fn every_path_holds_what_lookup_all_finds() {
        let rec = json!({
            "Operation": "Set-Mailbox",
            "Count": 3, "Ok": true, "Gone": null,
            "Status": {"ErrorCode": 50126, "Detail": {"Reason": "bad"}},
            "Folders": [
                {"Path": "\\Inbox", "Items": [{"Id": "a"}, {"Id": "b"}]},
                {"Path": "\\Sent", "Items": []}
            ],
            "Nested": [[1, 2], [3]],
            "Parameters": [{"Name": "Identity", "Value": "bob"}, {"Name": "Force", "Value": true}]
        });
        let pv = PathValues::of(&rec);
        for (path, vals) in &pv.scalars {
            if path.contains('[') {
                continue;
            }
            let mut found = Vec::new();
            lookup_all(&rec, path, &mut found);
            let mut want: Vec<Option<String>> = found
                .iter()
                .filter(|v| !v.is_object() && !v.is_array())
                .map(|v| match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    o => Some(o.to_string()),
                })
                .collect();
            want.sort();
            let mut got = vals.clone();
            got.sort();
            assert_eq!(got, want, "{path}");
        }
        assert_eq!(
            pv.scalars["folders.items.id"],
            [Some("a".into()), Some("b".into())]
        );
        assert_eq!(pv.scalars["status.errorcode"], [Some("50126".into())]);
        assert_eq!(pv.scalars["gone"], [None]);
        // Objects are written as the record holds them (key order as the
        // build's serde_json keeps it).
        assert_eq!(pv.objects["status"], [rec["Status"].to_string()]);
        // A terminal array gives its elements; a nested array is a value,
        // not its elements.
        assert_eq!(pv.objects["nested"], ["[1,2]", "[3]"]);
        assert!(!pv.scalars.contains_key("nested"));
        // Selector paths for name/value bags, value lower-cased.
        assert_eq!(
            pv.scalars["parameters[name=identity].value"],
            [Some("bob".into())]
        );
        assert_eq!(
            pv.scalars["parameters[name=force].value"],
            [Some("true".into())]
        );
        assert!(!pv.scalars.keys().any(|k| k.contains("[value=")));
    }

    #[test]
    fn long_selector_values_are_not_names() {
        let long = "x".repeat(SELECTOR_VALUE_MAX + 1);
        let pv = PathValues::of(&json!({"L": [{"Name": long, "Value": 1}]}));
        assert!(!pv.scalars.keys().any(|k| k.contains('[')));
    }
}
