//! Which texts a search of a record's raw bytes can rely on.
//!
//! Screens look for texts in the bytes of a record before it is parsed.
//! But a JSON writer may spell a character as an escape: `\u0026` for `&`
//! and `\u003c` for `<` in the OfficeActivity records Microsoft Sentinel
//! exports, `\u002B` for `+` and `\u00e9` for `é` where .NET's
//! `System.Text.Json` writes with its default encoder, `\u0027` for `'` in
//! Windows PowerShell's `ConvertTo-Json`, `\/` for `/` in PHP's; and every
//! writer escapes `"`, `\` and control characters, though not all alike
//! (`System.Text.Json` writes `"` as `\u0022`). A text holding such a
//! character is then not in the bytes although the parsed value holds it,
//! and a record that would match is screened out unread. So screens look
//! for the runs of a text between such characters, which every writer
//! copies as they are: Sigma rules' values are screened by their runs
//! between any such characters ([`verbatim_runs`]), and the hunt engine
//! looks for a detection's anchor texts by their runs between the
//! characters some writers escape and others do not
//! ([`optional_escape_runs`]; a detection lists the spellings of `"`, `\`
//! and control characters itself, as JSON syntax has them unescaped: the
//! quotes around a key).

/// Whether some JSON writers spell `c` as an escape and others do not
/// ([module docs](self)).
pub fn optionally_escaped(c: char) -> bool {
    !c.is_ascii() || matches!(c, '/' | '\'' | '<' | '>' | '&' | '+' | '`')
}

/// Whether some JSON writer spells `c` as an escape ([module docs](self)):
/// [`optionally_escaped`], or `"`, `\` or a control character.
pub fn may_be_escaped(c: char) -> bool {
    optionally_escaped(c) || c.is_ascii_control() || matches!(c, '"' | '\\')
}

/// The runs of `text` between characters a writer may escape, in order
/// (empty runs left out).
pub fn verbatim_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(may_be_escaped).filter(|r| !r.is_empty())
}

/// The runs of `text` between characters some writers escape and others
/// do not ([`optionally_escaped`]), in order (empty runs left out).
pub fn optional_escape_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(optionally_escaped).filter(|r| !r.is_empty())
}

/// Shortest run a screen looks for: a shorter one is in most records, so
/// searching for it costs more than reading every record.
pub const SCREEN_TEXT_MIN: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_cut_where_writers_may_escape() {
        assert_eq!(
            verbatim_runs("MailItemsAccessed").collect::<Vec<_>>(),
            ["MailItemsAccessed"]
        );
        assert_eq!(
            verbatim_runs("EvilTool/2.0 (+https://x.example/?a=1&b=2)").collect::<Vec<_>>(),
            ["EvilTool", "2.0 (", "https:", "x.example", "?a=1", "b=2)"]
        );
        assert_eq!(
            verbatim_runs("Zoë's \"x\" `y` <z>").collect::<Vec<_>>(),
            ["Zo", "s ", "x", " ", "y", " ", "z"]
        );
        assert_eq!(verbatim_runs("<>&").count(), 0);
        // Quotes and backslashes are the detection's to spell.
        assert_eq!(
            optional_escape_runs("\\\"Edge\\\";v=1/2 Zoë").collect::<Vec<_>>(),
            ["\\\"Edge\\\";v=1", "2 Zo"]
        );
    }

    /// However a writer escapes what [`may_be_escaped`] names (as real
    /// writers do, or everything it names), every run is in the bytes it
    /// writes.
    #[test]
    fn every_run_survives_every_escaping() {
        let text = "Zoë's <Agent> 1+1 & more/less `x` \"q\" \\ \t end";
        let writers: [&dyn Fn(char) -> bool; 4] = [
            &|_| false,
            &|c| !c.is_ascii() || "<>&'+`".contains(c),
            &|c| "<>&'".contains(c),
            &may_be_escaped,
        ];
        for escapes in writers {
            let mut json = String::new();
            for c in text.chars() {
                if escapes(c) || c == '"' || c == '\\' || c.is_ascii_control() {
                    json.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    json.push(c);
                }
            }
            let parsed: String = serde_json::from_str(&format!("\"{json}\"")).expect("JSON");
            assert_eq!(parsed, text);
            for run in verbatim_runs(text) {
                assert!(json.contains(run), "{run:?} not in {json:?}");
            }
        }
    }
}
