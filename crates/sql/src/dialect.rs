//! What differs between the engines: literals, function names, lambdas.
//! Everything the compiler writes goes through here, so a value from a rule
//! reaches SQL only as an escaped string literal.

/// SQL engines tokenward writes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// ClickHouse (and chDB).
    ClickHouse,
    /// Apache Spark SQL (and Databricks).
    Spark,
}

impl Dialect {
    /// Name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::ClickHouse => "clickhouse",
            Dialect::Spark => "spark",
        }
    }

    /// A string literal holding exactly `s`. Both engines read backslash
    /// escapes inside literals, so backslashes and quotes are escaped and
    /// control characters written as escapes; other characters, Unicode
    /// included, are written as they are (scripts are UTF-8).
    pub fn lit(self, s: &str) -> String {
        let mut o = String::with_capacity(s.len() + 2);
        o.push('\'');
        for c in s.chars() {
            match c {
                '\'' => o.push_str("\\'"),
                '\\' => o.push_str("\\\\"),
                '\n' => o.push_str("\\n"),
                '\r' => o.push_str("\\r"),
                '\t' => o.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => match self {
                    Dialect::ClickHouse => o.push_str(&format!("\\x{:02X}", c as u32)),
                    Dialect::Spark => o.push_str(&format!("\\u{:04X}", c as u32)),
                },
                c => o.push(c),
            }
        }
        o.push('\'');
        o
    }

    /// A quoted identifier (column names such as `user` are keywords in
    /// some engines).
    pub fn ident(self, name: &str) -> String {
        format!("`{}`", name.replace('`', "``"))
    }

    /// A floating-point constant, exactly.
    pub fn float(self, n: f64) -> String {
        match self {
            Dialect::ClickHouse => format!("toFloat64({})", self.lit(&format!("{n:e}"))),
            Dialect::Spark => format!("CAST({} AS DOUBLE)", self.lit(&format!("{n:e}"))),
        }
    }

    /// The empty array of nullable strings.
    pub fn empty_array(self) -> &'static str {
        match self {
            Dialect::ClickHouse => "CAST([], 'Array(Nullable(String))')",
            Dialect::Spark => "CAST(array() AS ARRAY<STRING>)",
        }
    }

    /// The values at map key `key` (an SQL string expression) of a map
    /// column, empty when the key is absent.
    pub fn map_get(self, map: &str, key: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("CAST({map}[{key}], 'Array(Nullable(String))')"),
            Dialect::Spark => format!("coalesce({map}[{key}], {})", self.empty_array()),
        }
    }

    /// Two arrays joined.
    pub fn concat(self, a: &str, b: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("arrayConcat({a}, {b})"),
            Dialect::Spark => format!("concat({a}, {b})"),
        }
    }

    /// Whether an array has elements.
    pub fn not_empty(self, a: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("notEmpty({a})"),
            Dialect::Spark => format!("(size({a}) > 0)"),
        }
    }

    /// `if c then a else b`.
    pub fn if_(self, c: &str, a: &str, b: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("if({c}, {a}, {b})"),
            Dialect::Spark => format!("(CASE WHEN {c} THEN {a} ELSE {b} END)"),
        }
    }

    /// The value of the first arm whose condition holds, else `otherwise`.
    pub fn first_of(self, arms: &[(String, String)], otherwise: &str) -> String {
        match self {
            Dialect::ClickHouse => {
                let mut parts = Vec::new();
                for (c, v) in arms {
                    parts.push(format!("{c}, {v}"));
                }
                format!("multiIf({}, {otherwise})", parts.join(", "))
            }
            Dialect::Spark => {
                let mut parts = String::new();
                for (c, v) in arms {
                    parts.push_str(&format!(" WHEN {c} THEN {v}"));
                }
                format!("(CASE{parts} ELSE {otherwise} END)")
            }
        }
    }

    /// Strings joined.
    pub fn concat_str(self, parts: &[&str]) -> String {
        format!("concat({})", parts.join(", "))
    }

    /// The non-null elements of an array of nullable strings, as an array
    /// whose elements string functions take without null checks.
    pub fn non_null(self, a: &str) -> String {
        match self {
            Dialect::ClickHouse => {
                format!("CAST(arrayFilter(x -> isNotNull(x), {a}), 'Array(String)')")
            }
            Dialect::Spark => format!("filter({a}, x -> x IS NOT NULL)"),
        }
    }

    /// Whether `pred` (over the variable `var`) holds for an element of
    /// array `a`. A null predicate counts as false.
    pub fn any(self, a: &str, var: &str, pred: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("arrayExists({var} -> ifNull({pred}, 0), {a})"),
            Dialect::Spark => format!("exists({a}, {var} -> coalesce({pred}, false))"),
        }
    }

    /// `f` (over the variable `var`) applied to every element of `a`.
    pub fn map(self, a: &str, var: &str, f: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("arrayMap({var} -> {f}, {a})"),
            Dialect::Spark => format!("transform({a}, {var} -> {f})"),
        }
    }

    /// The entries of a map column whose key is one of `keys` (escaped
    /// literals). Map lookups scan a row's keys one by one in both
    /// engines; narrowing each row's map once makes every later lookup
    /// cheap.
    pub fn map_only(self, map: &str, keys: &[String]) -> String {
        match self {
            Dialect::ClickHouse => {
                format!("mapFilter((k, v) -> has([{}], k), {map})", keys.join(", "))
            }
            Dialect::Spark => format!("map_filter({map}, (k, v) -> k IN ({}))", keys.join(", ")),
        }
    }

    /// The first value of an array of nullable strings that is not null
    /// and not blank, trimmed; null when there is none (hunt's
    /// `scalar_str` of the first such value).
    pub fn first_trimmed(self, a: &str) -> String {
        let trimmed = self.map(
            &self.non_null(a),
            "x",
            &self.replace_all("x", r"^\s+|\s+$", ""),
        );
        let kept = match self {
            Dialect::ClickHouse => format!("arrayFilter(x -> x != '', {trimmed})"),
            Dialect::Spark => format!("filter({trimmed}, x -> x <> '')"),
        };
        match self {
            Dialect::ClickHouse => format!("if(notEmpty({kept}), {kept}[1], NULL)"),
            Dialect::Spark => format!("IF(size({kept}) > 0, element_at({kept}, 1), NULL)"),
        }
    }

    /// `x` with every match of the regular expression `re` replaced by
    /// `with` (both plain text, escaped here).
    pub fn replace_all(self, x: &str, re: &str, with: &str) -> String {
        match self {
            Dialect::ClickHouse => {
                format!(
                    "replaceRegexpAll({x}, {}, {})",
                    self.lit(re),
                    self.lit(with)
                )
            }
            Dialect::Spark => format!("regexp_replace({x}, {}, {})", self.lit(re), self.lit(with)),
        }
    }

    /// Whether an array of nullable strings holds a null.
    pub fn has_null(self, a: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("arrayExists(x -> isNull(x), {a})"),
            Dialect::Spark => format!("exists({a}, x -> x IS NULL)"),
        }
    }

    /// Every scalar value of a map column's arrays, nulls included.
    pub fn all_values(self, map: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("arrayFlatten(mapValues({map}))"),
            Dialect::Spark => format!("flatten(map_values({map}))"),
        }
    }

    /// Lower case (Unicode).
    pub fn lower(self, x: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("lowerUTF8({x})"),
            Dialect::Spark => format!("lower({x})"),
        }
    }

    /// Milliseconds since the epoch of a time (null for a null time).
    pub fn millis(self, time: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("toUnixTimestamp64Milli({time})"),
            Dialect::Spark => format!("unix_millis({time})"),
        }
    }

    /// The event is of one of `kinds`.
    pub fn kind_in(self, kinds: &[tokenward_event::EventKind]) -> String {
        let kinds: Vec<String> = kinds.iter().map(|k| self.lit(k.as_str())).collect();
        format!("{} IN ({})", self.ident("log_kind"), kinds.join(", "))
    }

    /// Lower case of ASCII letters only, as Rust's `to_ascii_lowercase`
    /// (hunt keys session and tenant ids so).
    pub fn lower_ascii(self, x: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("lower({x})"),
            Dialect::Spark => format!(
                "translate({x}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
            ),
        }
    }

    /// `a` divided by `b`, rounded down; both non-negative integers.
    fn div(self, a: &str, b: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("intDiv({a}, {b})"),
            Dialect::Spark => format!("(({a}) DIV ({b}))"),
        }
    }

    /// The text of a regular expression's groups, evaluated once as the
    /// array `g` for `body` when `x` matches (null otherwise). Groups that
    /// take no part in the match are empty.
    fn with_groups(self, x: &str, re: &str, groups: usize, body: &str) -> String {
        let lit = self.lit(re);
        match self {
            Dialect::ClickHouse => format!(
                "if(match({x}, {lit}), arrayMap(g -> {body}, [extractGroups({x}, {lit})])[1], NULL)"
            ),
            Dialect::Spark => {
                let parts: Vec<String> = (1..=groups)
                    .map(|i| format!("regexp_extract({x}, {lit}, {i})"))
                    .collect();
                format!(
                    "(CASE WHEN {x} RLIKE {lit} THEN element_at(transform(array(array({})), g -> {body}), 1) END)",
                    parts.join(", ")
                )
            }
        }
    }

    /// Group `i` (from 1) of the array `g` of [`Dialect::with_groups`].
    fn group(self, i: usize) -> String {
        match self {
            Dialect::ClickHouse => format!("g[{i}]"),
            Dialect::Spark => format!("element_at(g, {i})"),
        }
    }

    /// Group `i` as a whole number, null when empty.
    fn group_int(self, i: usize) -> String {
        match self {
            Dialect::ClickHouse => format!("toInt64OrNull(g[{i}])"),
            Dialect::Spark => format!("try_cast(element_at(g, {i}) AS BIGINT)"),
        }
    }

    /// Days since 1970-01-01 of a valid proleptic Gregorian date (year 0
    /// or later), by integer arithmetic both engines do alike.
    fn civil_day(self, y: &str, m: &str, d: &str) -> String {
        let yp = format!("({y} - CASE WHEN {m} <= 2 THEN 1 ELSE 0 END)");
        let era = self.div(
            &format!("CASE WHEN {yp} >= 0 THEN {yp} ELSE {yp} - 399 END"),
            "400",
        );
        let yoe = format!("({yp} - {era} * 400)");
        let mp = format!("CASE WHEN {m} > 2 THEN {m} - 3 ELSE {m} + 9 END");
        let doy = format!(
            "({} + {d} - 1)",
            self.div(&format!("153 * ({mp}) + 2"), "5")
        );
        let doe = format!(
            "({yoe} * 365 + {} - {} + {doy})",
            self.div(&yoe, "4"),
            self.div(&yoe, "100")
        );
        format!("({era} * 146097 + {doe} - 719468)")
    }

    /// Whether `d` is a day of month `m` of year `y`.
    fn valid_date(self, y: &str, m: &str, d: &str) -> String {
        let leap = format!("(({y} % 4 = 0 AND {y} % 100 <> 0) OR {y} % 400 = 0)");
        format!(
            "({m} BETWEEN 1 AND 12 AND {d} >= 1 AND {d} <= CASE WHEN {m} = 2 THEN CASE WHEN {leap} THEN 29 ELSE 28 END WHEN {m} IN (4, 6, 9, 11) THEN 30 ELSE 31 END)"
        )
    }

    /// The UTC day (days since 1970-01-01) of a time written in text, as
    /// hunt's `parse_timestamp` reads one, or null where hunt reads none:
    /// ISO 8601 / RFC 3339 (`T`, `t` or a space; seconds, fraction and
    /// offset optional; offsets within ±25:59) and en-US exports'
    /// `M/D/YYYY[,] h:mm[:ss[.fff]] [AM|PM]`. Seconds never move a day, so
    /// only their form is checked. The text is trimmed already.
    pub fn text_utc_day(self, x: &str) -> String {
        const ISO: &str = "^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[Tt ]([0-9]{2}):([0-9]{2})(?::[0-9]{2})?(?:[.,][0-9]+)?(Z|z|[+]([0-9]{2})(?::?([0-9]{2}))?|-([0-9]{2})(?::?([0-9]{2}))?)?)?$";
        // Hunt splits the clock on ':' and reads the first three parts
        // only, so anything after a third part's digits is let by.
        const US: &str = "^([0-9]{1,9})/([0-9]{1,9})/([0-9]{1,9})(?:[ ,]+[ \t]*([0-9]{1,9}):([0-9]{1,9})(?::[0-9]{1,9}(?:[.][0-9]+)?(?::[^ \t]*)?)?(?:[ \t]+([AaPp][Mm]))?|[ ,]*)$";
        let n = |i: usize| format!("coalesce({}, 0)", self.group_int(i));
        let (y, m, d) = (self.group_int(1), self.group_int(2), self.group_int(3));
        let (h, mi) = (n(4), n(5));
        let east = format!("({} * 3600 + {} * 60)", n(7), n(8));
        let west = format!("({} * 3600 + {} * 60)", n(9), n(10));
        let iso = format!(
            "CASE WHEN {} AND {h} < 24 AND {mi} < 60 AND {east} <= 93599 AND {west} <= 93599 THEN {} + {} - 2 END",
            self.valid_date(&y, &m, &d),
            self.civil_day(&y, &m, &d),
            self.div(&format!("{h} * 3600 + {mi} * 60 - {east} + {west} + 172800"), "86400")
        );
        // US order: month, day, year.
        let (m, d, y) = (self.group_int(1), self.group_int(2), self.group_int(3));
        let ampm = format!("upper({})", self.group(6));
        let hour = format!(
            "CASE WHEN {ampm} = 'AM' AND {h} = 12 THEN 0 WHEN {ampm} = 'PM' AND {h} <> 12 THEN {h} + 12 ELSE {h} END"
        );
        let us = format!(
            "CASE WHEN {y} BETWEEN 1000 AND 9999 AND {} AND {hour} < 24 AND {mi} < 60 THEN {} END",
            self.valid_date(&y, &m, &d),
            self.civil_day(&y, &m, &d)
        );
        format!(
            "coalesce({}, {})",
            self.with_groups(x, ISO, 10, &iso),
            self.with_groups(x, US, 6, &us)
        )
    }

    /// `x` starts with `p`.
    pub fn starts_with(self, x: &str, p: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("startsWith({x}, {p})"),
            Dialect::Spark => format!("startswith({x}, {p})"),
        }
    }

    /// `x` ends with `p`.
    pub fn ends_with(self, x: &str, p: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("endsWith({x}, {p})"),
            Dialect::Spark => format!("endswith({x}, {p})"),
        }
    }

    /// `x` contains `p`.
    pub fn contains(self, x: &str, p: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("(position({x}, {p}) > 0)"),
            Dialect::Spark => format!("contains({x}, {p})"),
        }
    }

    /// `x` is one of the string literals `set` (already escaped).
    pub fn in_set(self, x: &str, set: &[String]) -> String {
        match self {
            Dialect::ClickHouse => format!("has([{}], {x})", set.join(", ")),
            Dialect::Spark => format!("({x} IN ({}))", set.join(", ")),
        }
    }

    /// `x` matches the regular expression `re` somewhere. Patterns come
    /// from [`Dialect::wildcard_regex`], in the subset both engines read
    /// alike.
    pub fn regex(self, x: &str, re: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("match({x}, {})", self.lit(re)),
            Dialect::Spark => format!("({x} RLIKE {})", self.lit(re)),
        }
    }

    /// The regular expression of a Sigma wildcard pattern: anchored at both
    /// ends of the whole value, `.` across newlines, and case-insensitive
    /// by Unicode rules unless `cased`. `\z` rather than `$`: Java's `$`
    /// also matches before a final newline.
    pub fn wildcard_regex(self, toks: &[tokenward_sigma::matcher::Tok], cased: bool) -> String {
        use tokenward_sigma::matcher::Tok;
        let flags = match (self, cased) {
            (_, true) => "(?s)",
            (Dialect::ClickHouse, false) => "(?si)",
            // Java folds only ASCII case unless told `u`.
            (Dialect::Spark, false) => "(?siu)",
        };
        let mut re = format!("{flags}^");
        for t in toks {
            match t {
                Tok::Lit(l) => {
                    for c in l.chars() {
                        // Escaping every ASCII punctuation character makes
                        // it literal in RE2 and in Java alike; letters,
                        // digits and other characters stand for themselves.
                        if c.is_ascii_punctuation() || c == ' ' {
                            re.push('\\');
                        }
                        re.push(c);
                    }
                }
                Tok::Star => re.push_str(".*"),
                Tok::One => re.push('.'),
            }
        }
        re.push_str("\\z");
        re
    }

    /// A number parsed from text the way hunt parses one (surrounding
    /// white space allowed, decimal with optional exponent), or null.
    pub fn number(self, x: &str) -> String {
        const NUM: &str = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$";
        match self {
            Dialect::ClickHouse => format!(
                "if(match({x}, {}), toFloat64OrNull({}), NULL)",
                self.lit(NUM),
                self.replace_all(x, r"^\s+|\s+$", "")
            ),
            Dialect::Spark => format!(
                "(CASE WHEN {x} RLIKE {} THEN try_cast(trim({x}) AS DOUBLE) END)",
                self.lit(NUM)
            ),
        }
    }

    /// The IPv4 address in text the way hunt reads a client address
    /// (`a.b.c.d`, with a port, or IPv4-mapped `::ffff:a.b.c.d` with or
    /// without brackets), as a number; null otherwise.
    pub fn ipv4_number(self, x: &str) -> String {
        const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])";
        let quad = format!("{OCTET}\\.{OCTET}\\.{OCTET}\\.{OCTET}");
        let re = format!(
            "^\\s*(?:{quad}(?::[0-9]*)?|(?i:::ffff:){quad}|\\[(?i:::ffff:){quad}\\].*)\\s*$"
        );
        let lit = self.lit(&re);
        // Groups 1-4, 5-8 or 9-12 hold the octets, by form; the others
        // are empty.
        let part = |i: usize| {
            match self {
            Dialect::ClickHouse => format!(
                "toUInt64OrZero(concat(g[{}], g[{}], g[{}]))",
                i,
                i + 4,
                i + 8
            ),
            Dialect::Spark => format!(
                "CAST(concat(regexp_extract({x}, {lit}, {}), regexp_extract({x}, {lit}, {}), regexp_extract({x}, {lit}, {})) AS BIGINT)",
                i,
                i + 4,
                i + 8
            ),
        }
        };
        let sum = format!(
            "({} * 16777216 + {} * 65536 + {} * 256 + {})",
            part(1),
            part(2),
            part(3),
            part(4)
        );
        match self {
            Dialect::ClickHouse => format!(
                "if(match({x}, {lit}), arrayMap(g -> {sum}, [extractGroups({x}, {lit})])[1], NULL)"
            ),
            Dialect::Spark => format!("(CASE WHEN {x} RLIKE {lit} THEN {sum} END)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_backslashes_and_controls() {
        let d = Dialect::ClickHouse;
        assert_eq!(d.lit("it's"), r"'it\'s'");
        assert_eq!(d.lit(r"a\b"), r"'a\\b'");
        assert_eq!(d.lit("a\nb\u{1}"), r"'a\nb\x01'");
        assert_eq!(Dialect::Spark.lit("\u{1}"), r"'\u0001'");
        assert_eq!(d.lit("100%_é"), "'100%_é'");
    }

    #[test]
    fn wildcards_become_anchored_patterns_with_literal_punctuation() {
        use tokenward_sigma::matcher::parse_wild;
        let re = Dialect::Spark.wildcard_regex(&parse_wild("a.b*c?(d)"), false);
        assert_eq!(re, r"(?siu)^a\.b.*c.\(d\)\z");
        let re = Dialect::ClickHouse.wildcard_regex(&parse_wild("x y"), true);
        assert_eq!(re, r"(?s)^x\ y\z");
    }
}
