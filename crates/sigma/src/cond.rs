//! The detection `condition` expression: `and`, `or`, `not`, parentheses,
//! `1 of pattern*`, `all of pattern*`, `1 of them`, `all of them`.
//! Precedence, loosest first: `or`, `and`, `not`, `x of`, parentheses.

/// A parsed condition over search-identifier indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// One search identifier.
    Id(usize),
    /// Negation.
    Not(Box<Cond>),
    /// Conjunction.
    And(Vec<Cond>),
    /// Disjunction.
    Or(Vec<Cond>),
    /// At least `n` of the identifiers (`usize::MAX` = all of them).
    Of(usize, Vec<usize>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum T {
    Word(String),
    Open,
    Close,
}

fn lex(s: &str) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    let mut w = String::new();
    for c in s.chars() {
        match c {
            '(' | ')' => {
                if !w.is_empty() {
                    out.push(T::Word(std::mem::take(&mut w)));
                }
                out.push(if c == '(' { T::Open } else { T::Close });
            }
            c if c.is_whitespace() => {
                if !w.is_empty() {
                    out.push(T::Word(std::mem::take(&mut w)));
                }
            }
            '|' => {
                return Err(
                    "aggregation expressions (`| count() ...`) are not Sigma v2; use a correlation rule"
                        .into(),
                )
            }
            c => w.push(c),
        }
    }
    if !w.is_empty() {
        out.push(T::Word(w));
    }
    Ok(out)
}

/// Matches an identifier pattern with `*` wildcards. Greedy with one
/// backtrack point (the last `*`), so time is at most pattern × name and
/// nothing recurses: trying every split at every `*` was exponential in
/// the number of stars (`1 of ******…x` hung rule loading; found by the
/// `sigma_condition` fuzz target).
pub fn pattern_match(pat: &str, name: &str) -> bool {
    let (p, n) = (pat.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it now stands for.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            // Let the last star take one more byte and retry after it.
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Deepest nesting of parentheses and `not` a condition may have. SigmaHQ
/// rules nest two or three levels.
pub const MAX_DEPTH: usize = 64;

struct P<'a> {
    toks: Vec<T>,
    pos: usize,
    /// Current nesting of parentheses and `not`.
    depth: usize,
    names: &'a [String],
}

fn kw(t: Option<&T>, k: &str) -> bool {
    matches!(t, Some(T::Word(w)) if w.eq_ignore_ascii_case(k))
}

impl P<'_> {
    fn peek(&self) -> Option<&T> {
        self.toks.get(self.pos)
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut v = vec![self.and()?];
        while kw(self.peek(), "or") {
            self.pos += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Cond::Or(v)
        })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut v = vec![self.not()?];
        while kw(self.peek(), "and") {
            self.pos += 1;
            v.push(self.not()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Cond::And(v)
        })
    }

    /// Enters a nested level; refuses past [`MAX_DEPTH`], so parsing,
    /// evaluating and dropping a condition never recurse without bound.
    fn deeper(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "condition nested deeper than {MAX_DEPTH} levels (parentheses and `not`)"
            ));
        }
        Ok(())
    }

    fn not(&mut self) -> Result<Cond, String> {
        if kw(self.peek(), "not") {
            self.pos += 1;
            self.deeper()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Cond::Not(Box::new(inner)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Cond, String> {
        match self.toks.get(self.pos).cloned() {
            Some(T::Open) => {
                self.pos += 1;
                self.deeper()?;
                let c = self.or()?;
                self.depth -= 1;
                if self.peek() != Some(&T::Close) {
                    return Err("missing `)`".into());
                }
                self.pos += 1;
                Ok(c)
            }
            Some(T::Word(w)) => {
                self.pos += 1;
                let quant = if w.eq_ignore_ascii_case("all") {
                    Some(usize::MAX)
                } else if w.eq_ignore_ascii_case("any") {
                    Some(1)
                } else {
                    w.parse::<usize>().ok().filter(|_| kw(self.peek(), "of"))
                };
                if let Some(n) = quant.filter(|_| kw(self.peek(), "of")) {
                    self.pos += 1;
                    let Some(T::Word(pat)) = self.toks.get(self.pos).cloned() else {
                        return Err(format!("`{w} of` needs an identifier pattern or `them`"));
                    };
                    self.pos += 1;
                    let ids: Vec<usize> = if pat.eq_ignore_ascii_case("them") {
                        (0..self.names.len())
                            .filter(|&i| !self.names[i].starts_with('_'))
                            .collect()
                    } else {
                        (0..self.names.len())
                            .filter(|&i| pattern_match(&pat, &self.names[i]))
                            .collect()
                    };
                    if ids.is_empty() {
                        return Err(format!("`{w} of {pat}` matches no search identifier"));
                    }
                    if n == 0 {
                        return Err("`0 of` is not a condition".into());
                    }
                    return Ok(Cond::Of(n, ids));
                }
                for k in ["and", "or", "not", "of"] {
                    if w.eq_ignore_ascii_case(k) {
                        return Err(format!("unexpected `{w}`"));
                    }
                }
                match self.names.iter().position(|n| *n == w) {
                    Some(i) => Ok(Cond::Id(i)),
                    None => Err(format!("unknown search identifier `{w}`")),
                }
            }
            Some(T::Close) => Err("unexpected `)`".into()),
            None => Err("condition ends too early".into()),
        }
    }
}

/// Parses a condition against the rule's search-identifier names.
pub fn parse(s: &str, names: &[String]) -> Result<Cond, String> {
    let mut p = P {
        toks: lex(s)?,
        pos: 0,
        depth: 0,
        names,
    };
    if p.toks.is_empty() {
        return Err("empty condition".into());
    }
    let c = p.or()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected text after position {}", p.pos + 1));
    }
    Ok(c)
}

/// Evaluates a condition given a lazy test of each identifier.
pub fn eval(c: &Cond, test: &mut dyn FnMut(usize) -> bool) -> bool {
    match c {
        Cond::Id(i) => test(*i),
        Cond::Not(x) => !eval(x, test),
        Cond::And(v) => v.iter().all(|x| eval(x, test)),
        Cond::Or(v) => v.iter().any(|x| eval(x, test)),
        Cond::Of(n, ids) => {
            if *n == usize::MAX {
                ids.iter().all(|&i| test(i))
            } else {
                let mut k = 0;
                for &i in ids {
                    if test(i) {
                        k += 1;
                        if k >= *n {
                            return true;
                        }
                    }
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split at every star: the definition `pattern_match` must agree
    /// with (exponential, so only for short inputs).
    fn reference(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| reference(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && reference(rest, &n[1..]),
        }
    }

    #[test]
    fn identifier_patterns_match_as_every_split_would() {
        let alphabet = [b'a', b'b', b'_', b'*'];
        let mut x: u64 = 7;
        let mut next = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as usize
        };
        for _ in 0..20_000 {
            let p: Vec<u8> = (0..next() % 7).map(|_| alphabet[next() % 4]).collect();
            let n: Vec<u8> = (0..next() % 7).map(|_| alphabet[next() % 3]).collect();
            let (ps, ns) = (String::from_utf8(p).unwrap(), String::from_utf8(n).unwrap());
            assert_eq!(
                pattern_match(&ps, &ns),
                reference(ps.as_bytes(), ns.as_bytes()),
                "{ps:?} on {ns:?}"
            );
        }
    }

    #[test]
    fn a_pattern_of_many_stars_is_refused_or_matched_at_once() {
        // The fuzz input that hung: 100 stars then text no name has.
        let c = format!("selection and not 1 of {}fi(el", "*".repeat(100));
        let names = vec!["selection".to_string(), "filter".to_string()];
        assert!(parse(&c, &names).is_err());
        let c = format!("selection and not 1 of {}er", "*".repeat(100));
        assert!(parse(&c, &names).is_ok());
    }

    fn names() -> Vec<String> {
        [
            "selection",
            "selection_b",
            "filter_main_x",
            "filter_opt",
            "_hidden",
            "keywords",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn run(c: &str, truth: &[bool]) -> bool {
        let c = parse(c, &names()).unwrap();
        eval(&c, &mut |i| truth[i])
    }

    #[test]
    fn precedence_and_forms() {
        let t = [true, false, false, true, true, false];
        assert!(run("selection and not filter_main_x", &t));
        assert!(!run("selection and not filter_opt", &t));
        // not binds tighter than and, and tighter than or.
        assert!(run("selection_b or selection and not selection_b", &t));
        assert!(!run("not (selection or selection_b)", &t));
        assert!(run("(selection or selection_b) and filter_opt", &t));
        assert!(run("1 of selection*", &t));
        assert!(!run("all of selection*", &t));
        assert!(run("selection and not 1 of filter_main_*", &t));
        assert!(run("1 of filter* and selection", &t));
        assert!(run("any of selection*", &t));
        // `them` excludes identifiers that start with an underscore.
        assert!(run("all of them", &[true, true, true, true, false, true]));
        assert!(!run("all of them", &[true, true, true, false, true, true]));
        assert!(run("all of them", &[true, true, true, true, true, true]));
        assert!(!run(
            "1 of them",
            &[false, false, false, false, true, false]
        ));
        assert!(run(
            "2 of selection*",
            &[true, true, false, false, false, false]
        ));
        assert!(!run("2 of selection*", &t));
    }

    #[test]
    fn errors() {
        let n = names();
        assert!(parse("selection and", &n).is_err());
        assert!(parse("nope", &n).is_err());
        assert!(parse("1 of nomatch*", &n).is_err());
        assert!(parse("(selection", &n).is_err());
        assert!(parse("selection | count() > 5", &n).is_err());
        assert!(parse("selection selection_b", &n).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}selection{}", "(".repeat(20_000), ")".repeat(20_000));
        let e = parse(&deep, &names()).unwrap_err();
        assert!(e.contains("nested deeper than 64"), "{e}");
        let nots = format!("{}selection", "not ".repeat(20_000));
        assert!(parse(&nots, &names())
            .unwrap_err()
            .contains("nested deeper"));
        let ok = format!(
            "{}selection{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert!(parse(&ok, &names()).is_ok(), "the limit itself is allowed");
    }
}
