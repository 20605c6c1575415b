//! Many texts searched for at once by a few short *cover texts*.
//!
//! SIMD searchers (aho-corasick's Teddy) take at most 64 texts, and run
//! about twice as fast on up to 32 as on 64. Screens look for hundreds of
//! texts (indicator addresses, user agents in three spellings, the values
//! of SigmaHQ rules), so a [`CoverSearch`] looks for a few four-byte pieces
//! instead, chosen so that every text contains one: wherever a piece is
//! found, the texts holding it are compared in place. Every place each
//! text occurs is found, overlapping ones included. The SigmaHQ screen and
//! the hunt engine's literal pass both search this way.

use std::cmp::Reverse;
use std::collections::HashMap;

/// Texts found in the keys and common values of exports (lower case):
/// four-byte pieces of these make poor screening texts.
const EXPORT_TEXT: &str = "creationtime id operation organizationid recordtype \
resultstatus userkey usertype version workload clientip objectid userid \
clientipaddress clientinfostring client=microsoft outlook externalaccess \
internallogontype logontype logonusersid mailboxguid mailboxownerupn \
mailboxowner sid operationcount operationproperties name value \
mailaccesstype bind sync isthrottled false true null folders folderitems \
path internetmessageid sessionid appid clientappid useragent mozilla \
windows nt win64 x64 applewebkit khtml like gecko chrome safari exchange \
sharepoint onedrive azureactivedirectory userloggedin pageviewed \
fileaccessed filepreviewed filemodified movetodeleteditems create update \
send extendedproperties resultstatusdetail requesttype redirect oauth2 \
authorize actor actorcontextid applicationid devicename interactive \
intrasystemid supportticketid targetcontextid target type success \
succeeded failed failure eventsource itemtype file listid \
listitemuniqueid site siteurl webid sourcefileextension sourcefilename \
sourcerelativeurl shared documents appaccesscontext aadsessionid \
issuedattime uniquetokenid uniquetokenidentifier membership live.com \
fabrikam example inbox sent items deleted items subject attachments \
createddatetime userdisplayname userprincipalname appdisplayname \
ipaddress status errorcode additionaldetails devicedetail location city \
state countryorregion geocoordinates conditionalaccessstatus notapplied \
authenticationrequirement correlationid resourcedisplayname resourceid \
tokenissuertype azuread signinlogs noninteractiveusersignins \
category properties time tenantid resultsignature durationms \
calleripaddress identity level operationname onmicrosoft.com \
originatingserver providers/microsoft.aadiam sign-in activity \
office 365 exchange online mobile apps and desktop clients \
modifiedproperties newvalue oldvalue operatingsystem browser report \
.docx .xlsx .pptx .pdf chrome/114.0.0.0 safari/537.36 edg/ \
203.0.113.100 198.51.100.100 192.0.2.100";

/// Cover texts per SIMD searcher: Teddy takes at most 64, but fewer per
/// searcher verify fewer false candidates. On the bench sets, four
/// searchers of about 21 screened SigmaHQ anchors faster than two of 64 or
/// eleven of 8, and two of 21 found the hunt's built-in anchors 2-3 % of
/// a hunt's CPU faster than two of 32.
pub const SEARCHER_TEXTS: usize = 21;

/// Length of the cover texts.
const GRAM: usize = 4;

/// Most texts one cover text may stand for: past it, every place the
/// piece is found compares them all, and an automaton is the faster search.
const GRAM_HOLDERS_MAX: usize = 256;

/// Texts found by searching for cover texts ([module docs](self)).
#[derive(Debug)]
pub struct CoverSearch {
    searchers: Vec<aho_corasick::packed::Searcher>,
    /// Each cover text as a little-endian word and the mask of its bytes
    /// (cover texts are at most four bytes): a match is checked with one
    /// load and compare where a call to `memcmp` per candidate was 1.4 %
    /// of a hunt's instructions.
    grams: Vec<(u32, u32)>,
    /// Cover text -> the texts holding it, with its offset there.
    gram_texts: Vec<Vec<(u32, usize)>>,
    /// First byte -> the cover texts starting with it.
    by_first: Vec<Vec<u32>>,
    texts: Vec<String>,
}

impl CoverSearch {
    /// A search for `texts` with at most `per_searcher` cover texts to a
    /// SIMD searcher and at most `searchers_max` searchers. `None` when
    /// that would not do: no SIMD on this machine, an empty text (found
    /// everywhere), more searchers than allowed, or a cover text held by
    /// too many texts (or `per_searcher` is 0). The caller then searches
    /// with an automaton.
    pub fn new(texts: &[String], per_searcher: usize, searchers_max: usize) -> Option<CoverSearch> {
        if per_searcher == 0 || texts.iter().any(String::is_empty) {
            return None;
        }
        let mut grams = cover(texts);
        if grams.len().div_ceil(per_searcher) > searchers_max {
            return None;
        }
        grams.sort();
        let grams: Vec<Vec<u8>> = grams.chunks(per_searcher).flat_map(bucket_order).collect();
        let searchers = grams
            .chunks(per_searcher)
            .map(|g| {
                aho_corasick::packed::Config::new()
                    .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
                    .builder()
                    .extend(g)
                    .build()
            })
            .collect::<Option<Vec<_>>>()?;
        let mut gram_texts = Vec::with_capacity(grams.len());
        let mut covered = vec![false; texts.len()];
        for g in &grams {
            let mut v = Vec::new();
            for (ti, t) in texts.iter().enumerate() {
                // Occurrences that overlap an earlier one are skipped: the
                // first is where every occurrence of the text holds it.
                for k in memchr::memmem::find_iter(t.as_bytes(), g) {
                    v.push((ti as u32, k));
                    covered[ti] = true;
                }
                if v.len() > GRAM_HOLDERS_MAX {
                    return None;
                }
            }
            gram_texts.push(v);
        }
        // Every text holds a cover text by construction; a text that did
        // not would never be found, so the search is refused instead.
        if covered.contains(&false) {
            return None;
        }
        let mut by_first = vec![Vec::new(); 256];
        for (i, g) in grams.iter().enumerate() {
            if let Some(&c) = g.first() {
                by_first[usize::from(c)].push(i as u32);
            }
        }
        let grams = grams.iter().map(|g| gram_word(g)).collect();
        Some(CoverSearch {
            searchers,
            grams,
            gram_texts,
            by_first,
            texts: texts.to_vec(),
        })
    }

    /// How many SIMD passes a search makes.
    pub fn passes(&self) -> usize {
        self.searchers.len()
    }

    /// Calls `found(start, text)` for every place in `hay` where one of
    /// the texts (by its index) starts, until `found` answers true; then
    /// answers true. A text occurring at several places, or holding its
    /// cover text twice, may be reported more than once at a place, and
    /// places come in no particular order.
    pub fn find(&self, hay: &[u8], mut found: impl FnMut(usize, usize) -> bool) -> bool {
        for searcher in &self.searchers {
            let mut at = 0;
            while let Some(m) = searcher.find_in(hay, aho_corasick::Span::from(at..hay.len())) {
                let pos = m.start();
                // Every cover text starting here (a searcher reports one
                // per place; a shorter one may start where a longer one
                // was found), and every text holding it.
                let word = hay_word(hay, pos);
                for &gi in &self.by_first[usize::from(hay[pos])] {
                    let (g, mask) = self.grams[gi as usize];
                    if word & mask != g {
                        continue;
                    }
                    for &(ti, k) in &self.gram_texts[gi as usize] {
                        if pos >= k
                            && hay[pos - k..].starts_with(self.texts[ti as usize].as_bytes())
                            && found(pos - k, ti as usize)
                        {
                            return true;
                        }
                    }
                }
                at = pos + 1;
            }
        }
        false
    }
}

/// A cover text (at most [`GRAM`] bytes) as a little-endian word, and the
/// mask of the bytes it has.
fn gram_word(g: &[u8]) -> (u32, u32) {
    debug_assert!(!g.is_empty() && g.len() <= GRAM);
    let mut b = [0u8; GRAM];
    b[..g.len()].copy_from_slice(g);
    let mask = u32::MAX >> (8 * (GRAM - g.len()));
    (u32::from_le_bytes(b), mask)
}

/// The (up to) four bytes of `hay` from `pos` as a little-endian word,
/// bytes past its end read as zero. A cover text never fails to match
/// where it occurs; one that seems to match past the end (a text holding
/// zero bytes) is ruled out by the comparison of its texts that follows.
#[inline]
fn hay_word(hay: &[u8], pos: usize) -> u32 {
    match hay.get(pos..pos + GRAM) {
        Some(w) => u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
        None => {
            let mut b = [0u8; GRAM];
            let rest = &hay[pos..];
            b[..rest.len()].copy_from_slice(rest);
            u32::from_le_bytes(b)
        }
    }
}

/// Of several texts that must all be in a record, the one to search for
/// (the others are then compared only where it is found): the one whose
/// four-byte pieces are least often in the keys and common values of
/// exports (ASCII case ignored), as a share of its pieces, then the
/// longest, then the first.
/// Of a browser user agent's runs between slashes, the browser's version
/// ("92.0.4515.159 Safari") rather than the platform every browser names
/// ("5.0 (Windows NT 10.0; Win64; x64) AppleWebKit").
pub fn rarest<'a>(texts: &[&'a str]) -> Option<&'a str> {
    let mut best: Option<(&str, usize, usize)> = None;
    for &t in texts {
        let (rare, n) = rare_share(t);
        let better = match best {
            None => true,
            Some((b, br, bn)) => {
                let (lhs, rhs) = (rare * bn, br * n);
                lhs > rhs || (lhs == rhs && t.len() > b.len())
            }
        };
        if better {
            best = Some((t, rare, n));
        }
    }
    best.map(|(t, _, _)| t)
}

/// Pieces to look for, each in every ASCII case spelling, where texts may
/// be spelled in any case: for texts given as their runs (the parts a
/// record holds as written), pieces of three or four bytes, whole
/// characters, of those runs (the whole of a shorter run) such that each
/// text holds one (case ignored), with the texts each was chosen for.
/// Greedy, like the cover: of the pieces that are not in the export text
/// the cover search knows, not digits and JSON syntax alone and not
/// starting with them (if any), the one held by the most texts not yet
/// covered per case spelling (each letter doubles them, and each spelling
/// is a pattern of the literal pass), then one with punctuation, then the
/// most of it, then the longest, then the first. `Client=REST;Client=RESTSystem;;` gives `m;;`; a quoted user
/// agent in its JSON, .NET and CSV spellings gives `;v=` for all of them.
pub fn any_case_cover(texts: &[Vec<&str>]) -> Vec<(String, Vec<usize>)> {
    // Every candidate, lower-cased, in the order first seen, with its
    // holders, case spellings and rank (worked out once: the rank searches
    // the export text, and a long indicator list has many candidates).
    struct Candidate {
        piece: String,
        holders: Vec<usize>,
        spellings: usize,
        rank: AnyCaseRank,
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut by_piece: HashMap<String, usize> = HashMap::new();
    for (i, runs) in texts.iter().enumerate() {
        for run in runs {
            let mut pieces: Vec<&str> = [GRAM - 1, GRAM]
                .into_iter()
                .flat_map(|n| {
                    (0..=run.len().saturating_sub(n)).filter_map(move |k| run.get(k..k + n))
                })
                .collect();
            if pieces.is_empty() || run.len() < GRAM - 1 {
                pieces.push(run);
            }
            for p in pieces {
                let piece = p.to_ascii_lowercase();
                let at = *by_piece.entry(piece.clone()).or_insert_with(|| {
                    candidates.push(Candidate {
                        spellings: 1 << piece.bytes().filter(u8::is_ascii_alphabetic).count(),
                        rank: any_case_rank(&piece),
                        piece,
                        holders: Vec::new(),
                    });
                    candidates.len() - 1
                });
                let h = &mut candidates[at].holders;
                if h.last() != Some(&i) {
                    h.push(i);
                }
            }
        }
    }
    let mut covered = vec![false; texts.len()];
    let mut out = Vec::new();
    loop {
        let mut best: Option<(&Candidate, usize)> = None;
        for c in &candidates {
            let new = c.holders.iter().filter(|&&h| !covered[h]).count();
            if new == 0 {
                continue;
            }
            let better = match best {
                None => true,
                Some((b, bnew)) => {
                    let (lhs, rhs) = (new * b.spellings, bnew * c.spellings);
                    c.rank.0 < b.rank.0
                        || (c.rank.0 == b.rank.0
                            && (lhs > rhs || (lhs == rhs && c.rank.1 < b.rank.1)))
                }
            };
            if better {
                best = Some((c, new));
            }
        }
        let Some((chosen, _)) = best else {
            return out;
        };
        let holders: Vec<usize> = chosen
            .holders
            .iter()
            .copied()
            .filter(|&h| !covered[h])
            .collect();
        for &h in &holders {
            covered[h] = true;
        }
        out.push((chosen.piece.clone(), holders));
    }
}

/// A piece's rank in [`any_case_cover`] ([`any_case_rank`]).
type AnyCaseRank = ((bool, bool, bool), (bool, Reverse<usize>, Reverse<usize>));

/// How good a piece is to look for in any case, lower first, in two
/// parts. First: one not in [`EXPORT_TEXT`], then one not of digits and
/// JSON's syntax alone (`", "` of a quoted list is in most sign-ins,
/// `0022` of a `\u0022` spelling in most audit records), then one not
/// starting with either (the literal pass sorts candidates by a pattern's
/// first bytes: after a digit or a quote, most places are one). Then: one
/// holding punctuation (letters and digits alone are in every record's
/// names, times and ids), then the most punctuation, then the longest.
fn any_case_rank(p: &str) -> AnyCaseRank {
    let plain = |b: u8| b.is_ascii_digit() || b" \",:[]{}\\".contains(&b);
    let punctuation = p.bytes().filter(u8::is_ascii_punctuation).count();
    (
        (
            in_export_text(p.as_bytes()) != 0,
            p.bytes().all(plain),
            p.bytes().next().is_some_and(plain),
        ),
        (punctuation == 0, Reverse(punctuation), Reverse(p.len())),
    )
}

/// The four-byte pieces of `text` at every place (the whole of a shorter
/// one).
fn pieces(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let n = text.len().saturating_sub(GRAM) + 1;
    (0..n).map(move |k| &text[k..(k + GRAM).min(text.len())])
}

/// Whether some four-byte piece of `text` (the whole of a shorter one)
/// is not in the keys and common values of exports (ASCII case ignored):
/// a text made only of such pieces (`displayName`, `newValue`) is in most
/// records of some export.
pub fn has_rare_piece(text: &str) -> bool {
    pieces(text.as_bytes()).any(|g| in_export_text(g) == 0)
}

/// Of the four-byte pieces of `text` (the whole of a shorter one), how
/// many are not in the keys and common values of exports (ASCII case
/// ignored), and how many there are: compared as `rare / n` without
/// dividing, the share of the text that is rare in records.
fn rare_share(text: &str) -> (usize, usize) {
    let n = pieces(text.as_bytes()).count();
    let rare = pieces(text.as_bytes())
        .filter(|&g| in_export_text(g) == 0)
        .count();
    (rare, n)
}

/// How many times a piece is in [`EXPORT_TEXT`], ASCII case ignored (0
/// for one that is not whole characters).
fn in_export_text(piece: &[u8]) -> usize {
    let Ok(g) = std::str::from_utf8(piece) else {
        return 0;
    };
    // Lower-cased in place: a string for each piece was most of judging
    // a rule set's anchors ([`has_rare_piece`]) when loading it.
    match <[u8; GRAM]>::try_from(piece) {
        Ok(mut gram) => {
            gram.make_ascii_lowercase();
            export_grams().get(&gram).map_or(0, |&n| usize::from(n))
        }
        // Whole anchors shorter than a piece: few.
        Err(_) => EXPORT_TEXT.matches(&*g.to_ascii_lowercase()).count(),
    }
}

/// Every four-byte piece of [`EXPORT_TEXT`] and how many times it is there
/// without overlap, as `str::matches` counts: searching the text for each
/// candidate piece was a third of loading the SigmaHQ cloud rules, and is
/// done again for each kind's screen during the hunt.
fn export_grams() -> &'static HashMap<[u8; GRAM], u8> {
    static GRAMS: std::sync::OnceLock<HashMap<[u8; GRAM], u8>> = std::sync::OnceLock::new();
    GRAMS.get_or_init(|| {
        // Where each piece last counted started, and its count.
        let mut seen: HashMap<[u8; GRAM], (usize, u8)> = HashMap::new();
        for (at, w) in EXPORT_TEXT.as_bytes().windows(GRAM).enumerate() {
            let gram: [u8; GRAM] = w.try_into().expect("windows of GRAM bytes");
            match seen.get_mut(&gram) {
                Some((last, n)) if at >= *last + GRAM => {
                    *last = at;
                    *n = n.saturating_add(1);
                }
                Some(_) => {}
                None => {
                    seen.insert(gram, (at, 1));
                }
            }
        }
        seen.into_iter().map(|(g, (_, n))| (g, n)).collect()
    })
}

/// Short byte strings (four bytes, or a whole shorter text) such that
/// every text contains one: greedily the piece in the most texts not
/// covered yet, preferring pieces not in [`EXPORT_TEXT`] (ASCII case
/// ignored), then pieces in it fewer times (such as part of one key only
/// some records have). Pieces are bytes, not characters: a text of two
/// three-byte characters has no four-byte piece that is whole characters.
fn cover(lits: &[String]) -> Vec<Vec<u8>> {
    // Every candidate piece and the texts holding it, in one pass over
    // the texts (a rule may list 100,000 values).
    let mut holders: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (i, l) in lits.iter().enumerate() {
        for g in pieces(l.as_bytes()) {
            let h = holders.entry(g).or_default();
            if h.last() != Some(&i) {
                h.push(i);
            }
        }
    }
    // A whole anchor shorter than a piece is also found inside longer
    // anchors; such anchors are few.
    let short: Vec<&[u8]> = holders.keys().copied().filter(|g| g.len() < GRAM).collect();
    for g in short {
        let h: Vec<usize> = (0..lits.len())
            .filter(|&i| memchr::memmem::find(lits[i].as_bytes(), g).is_some())
            .collect();
        holders.insert(g, h);
    }
    let mut cands: Vec<(&[u8], Vec<usize>)> = holders.into_iter().collect();
    cands.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let tier: Vec<usize> = cands
        .iter()
        .map(|(g, _)| 3 - in_export_text(g).min(3))
        .collect();
    // Greedy set cover, lazily: a candidate's stored count only falls as
    // anchors get covered, so the top of the heap, once its count is
    // recomputed and unchanged, is the best piece (ties: the first piece).
    let mut heap: std::collections::BinaryHeap<(usize, usize, std::cmp::Reverse<usize>)> = cands
        .iter()
        .enumerate()
        .map(|(c, (_, h))| (tier[c], h.len(), std::cmp::Reverse(c)))
        .collect();
    let mut left = vec![true; lits.len()];
    let mut out = Vec::new();
    while let Some((t, n, std::cmp::Reverse(c))) = heap.pop() {
        let now = cands[c].1.iter().filter(|&&i| left[i]).count();
        if now == 0 {
            continue;
        }
        if now < n {
            heap.push((t, now, std::cmp::Reverse(c)));
            continue;
        }
        for &i in &cands[c].1 {
            left[i] = false;
        }
        out.push(cands[c].0.to_vec());
    }
    out
}

/// Teddy's buckets (the 8 of a searcher of at most 32 texts) in which
/// texts alike share one.
const TEDDY_BUCKETS: usize = 8;

/// `texts` (sorted) reordered so that neighbours share a Teddy bucket.
/// A bucket matches where some text of it could start, judged on the
/// halves of each of its first four bytes that any of its texts has:
/// texts alike leave fewer halves to match, so fewer false starts to
/// verify, which was half of the SigmaHQ screen's cost on audit records.
/// aho-corasick deals texts to buckets in turn by their place (texts with
/// the same low halves go together), so places `b`, `b + 8`, `b + 16`
/// share a bucket; another dealing only loses the gain, never a match.
fn bucket_order<T: Clone>(texts: &[T]) -> Vec<T> {
    let per = texts.len().div_ceil(TEDDY_BUCKETS);
    let places = (0..TEDDY_BUCKETS)
        .flat_map(|b| (0..per).map(move |m| b + TEDDY_BUCKETS * m))
        .filter(|&p| p < texts.len());
    let mut out: Vec<Option<&T>> = vec![None; texts.len()];
    for (t, p) in texts.iter().zip(places) {
        out[p] = Some(t);
    }
    out.into_iter().flatten().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of pieces counts as searching the text did: without
    /// overlap, case ignored, whole characters only.
    #[test]
    fn pieces_are_counted_in_the_export_text_as_a_search_counts_them() {
        let mut pieces: Vec<Vec<u8>> = EXPORT_TEXT
            .as_bytes()
            .windows(GRAM)
            .map(<[u8]>::to_vec)
            .collect();
        for extra in ["ID O", "zzzz", "....", "0.0.", "id", "x", "\u{e9}xy"] {
            pieces.push(extra.as_bytes().to_vec());
        }
        pieces.push(vec![0xc3, 0xa9, b'a', 0xc3]);
        let mut repeated = 0;
        for p in &pieces {
            let want = std::str::from_utf8(p)
                .map_or(0, |g| EXPORT_TEXT.matches(&*g.to_ascii_lowercase()).count());
            assert_eq!(in_export_text(p), want, "{:?}", String::from_utf8_lossy(p));
            repeated += usize::from(want > 1);
        }
        assert!(repeated > 10, "{repeated} pieces more than once");
    }

    #[test]
    fn the_rarest_run_is_the_least_export_like() {
        let ua = [
            "Mozilla",
            "5.0 (Windows NT 10.0; Win64; x64) AppleWebKit",
            "537.36 (KHTML, like Gecko) Chrome",
            "92.0.4515.159 Safari",
            "537.36",
        ];
        assert_eq!(rarest(&ua), Some("92.0.4515.159 Safari"));
        assert_eq!(
            rarest(&["EvilTool", "2.0 (", "https:", "x.example", "?a=1", "b=2)"]),
            Some("EvilTool")
        );
        // Ties go to the longer, then the first.
        assert_eq!(rarest(&["qzqz", "qzqzq"]), Some("qzqzq"));
        assert_eq!(rarest(&["abcd", "wxyz"]), Some("abcd"));
        assert_eq!(rarest(&[]), None);
    }

    /// Pieces in any case: few spellings, shared where they can be, never
    /// JSON's syntax or digits alone, and every text covered.
    #[test]
    fn any_case_pieces_are_few_rare_and_shared() {
        let one = |runs: &[&str]| any_case_cover(&[runs.to_vec()]);
        assert_eq!(
            one(&["Client=REST;Client=RESTSystem;;"]),
            [("m;;".to_string(), vec![0])]
        );
        assert_eq!(one(&["ab"]), [("ab".to_string(), vec![0])]);
        // Not digits or JSON's syntax alone, though they have no letters.
        assert_eq!(one(&[r#"Ab", "Cd"#])[0].0, r#"b", "#);
        let escaped = one(&[r"\u0022Edge\u0022"]);
        assert!(
            !escaped[0]
                .0
                .starts_with(|c: char| c.is_ascii_digit() || c == '\\'),
            "{escaped:?}"
        );
        // Whole characters only.
        assert_eq!(one(&["ééé"])[0].0, "éé");
        // The quoted user agent as the built-in indicators spell it: one
        // piece of one letter for all four.
        let edge = [
            r#""Microsoft Edge";v="113""#,
            r#"\"Microsoft Edge\";v=\"113\""#,
            r#"\u0022Microsoft Edge\u0022;v=\u0022113\u0022"#,
            r#"""Microsoft Edge"";v=""113"""#,
        ];
        let texts: Vec<Vec<&str>> = edge.iter().map(|t| vec![*t]).collect();
        assert_eq!(
            any_case_cover(&texts),
            [(";v=".to_string(), vec![0, 1, 2, 3])]
        );
        // Each text is covered once, whatever the mix.
        let mut texts = texts;
        texts.push(vec!["Client=REST;Client=RESTSystem;;"]);
        texts.push(vec!["EvilTool", "2.0 (Linux)"]);
        let cover = any_case_cover(&texts);
        let mut seen: Vec<usize> = cover.iter().flat_map(|(_, h)| h.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..texts.len()).collect::<Vec<_>>());
        for (piece, holders) in &cover {
            for &h in holders {
                assert!(
                    texts[h]
                        .iter()
                        .any(|r| r.to_ascii_lowercase().contains(piece.as_str())),
                    "{piece:?} in {:?}",
                    texts[h]
                );
            }
        }
        assert!(any_case_cover(&[]).is_empty());
    }

    /// Cover texts next to each other in sorted order get places that
    /// aho-corasick's Teddy deals to one bucket (equal modulo 8), and none is
    /// lost or repeated.
    #[test]
    fn cover_texts_alike_share_a_teddy_bucket() {
        for n in [1usize, 8, 9, 20, 21] {
            let texts: Vec<String> = (0..n).map(|i| format!("g{i:02}x")).collect();
            let out = bucket_order(&texts);
            let mut again = out.clone();
            again.sort();
            assert_eq!(again, texts, "a permutation of {n}");
            for b in 0..8 {
                // The sorted ranks of a bucket's texts follow one another.
                let ranks: Vec<usize> = (b..n)
                    .step_by(8)
                    .map(|place| texts.iter().position(|t| *t == out[place]).unwrap())
                    .collect();
                assert!(
                    ranks.windows(2).all(|w| w[1] == w[0] + 1),
                    "{n}: bucket {b}: {ranks:?}"
                );
            }
        }
    }

    /// Whether this machine has the SIMD instructions Teddy needs: where
    /// it has, a search that can be made must be made.
    fn simd() -> bool {
        #[cfg(target_arch = "x86_64")]
        return std::is_x86_feature_detected!("ssse3");
        #[cfg(target_arch = "aarch64")]
        return true;
        #[allow(unreachable_code)]
        false
    }

    /// Every place every text occurs, as a plain search finds them, on
    /// haystacks full of near misses: texts sharing cover texts, texts
    /// inside texts, case variants, overlaps, texts shorter than a piece
    /// and cover texts starting where another starts (`id`, `idzq`), and
    /// texts of multi-byte characters no four-byte piece of whole
    /// characters fits in (`微信`, `é€`, `éaé`).
    #[test]
    fn every_occurrence_is_found_as_a_plain_search_finds_it() {
        let texts: Vec<String> = [
            "185.236.228.183",
            "185.236.231.109",
            "146.70.157.45",
            "146.70.157.213",
            "Client=REST;Client=RESTSystem;;",
            "client=rest;client=restsystem;;",
            "MailItemsAccessed",
            "ItemsAcc",
            "\"kid\"",
            "abc",
            "aaaa",
            "aaab",
            "id",
            "idzq",
            "微信",
            "é€",
            "éaé",
        ]
        .map(String::from)
        .to_vec();
        let search = CoverSearch::new(&texts, 32, 4);
        assert_eq!(search.is_some(), simd());
        let Some(search) = search else {
            // No SIMD on this machine: the callers use an automaton.
            return;
        };
        let pieces = [
            "185.236.",
            "228.183",
            "231.109",
            "146.70.157.",
            "45",
            "213",
            "Client=REST;",
            "client=rest;",
            "Client=RESTSystem;;",
            "client=restsystem;;",
            "MailItems",
            "Accessed",
            "\"kid\"",
            "abc",
            "aaaa",
            "a",
            "b",
            "x",
            " ",
            ".",
            ";",
            "id",
            "zq",
            "微",
            "信",
            "é",
            "€",
            "éaé",
        ];
        let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
        let mut next = |n: usize| rng.usize(0..n);
        let mut found = vec![0usize; texts.len()];
        for _ in 0..3000 {
            let hay: String = (0..next(12)).map(|_| pieces[next(pieces.len())]).collect();
            let mut want: Vec<(usize, usize)> = Vec::new();
            for (ti, t) in texts.iter().enumerate() {
                for s in 0..hay.len() {
                    if hay.as_bytes()[s..].starts_with(t.as_bytes()) {
                        want.push((s, ti));
                        found[ti] += 1;
                    }
                }
            }
            let mut got = Vec::new();
            assert!(!search.find(hay.as_bytes(), |s, t| {
                got.push((s, t));
                false
            }));
            got.sort_unstable();
            got.dedup();
            want.sort_unstable();
            assert_eq!(got, want, "{hay:?}");
            // Stopping at the first text found answers whether there is one.
            assert_eq!(search.find(hay.as_bytes(), |_, _| true), !want.is_empty());
        }
        assert!(found.iter().all(|&n| n > 0), "every text met: {found:?}");
    }

    /// A searcher reports one cover text a place; where two start at one
    /// place (`id`, `idzq`: `id` is common in exports, so `idzq` gets a
    /// cover text of its own), the texts of both are found, whichever of
    /// them the searcher reported: the fillers move the two around in the
    /// searchers' order.
    #[test]
    fn texts_starting_at_one_place_are_all_found() {
        for fillers in 0..40 {
            let mut texts: Vec<String> = (0..fillers).map(|i| format!("f{i:02}x")).collect();
            texts.extend(["id", "idzq", "zqid"].map(String::from));
            let Some(search) = CoverSearch::new(&texts, 21, usize::MAX) else {
                assert!(!simd());
                return;
            };
            let mut got = Vec::new();
            search.find(b"<idzqid>", |s, t| {
                got.push((s, texts[t].as_str()));
                false
            });
            got.sort_unstable();
            got.dedup();
            assert_eq!(
                got,
                [(1, "id"), (1, "idzq"), (3, "zqid"), (5, "id")],
                "{fillers} fillers"
            );
        }
    }

    #[test]
    fn searches_it_cannot_make_well_are_refused() {
        assert!(CoverSearch::new(&["".to_string()], 32, 4).is_none());
        assert!(CoverSearch::new(&["abcd".to_string()], 0, 4).is_none());
        // Distinct four-byte texts: each is its own cover text, so 128 fill
        // four searchers of 32 exactly.
        let texts = |n: usize| (0..n).map(|i| format!("{i:04x}")).collect::<Vec<_>>();
        assert_eq!(CoverSearch::new(&texts(128), 32, 4).is_some(), simd());
        assert!(CoverSearch::new(&texts(129), 32, 4).is_none());
        assert_eq!(
            CoverSearch::new(&texts(129), 32, 5).map(|c| c.passes()),
            simd().then_some(5)
        );
        // One cover text held by as many texts as are compared in place,
        // then by one more.
        let alike = |n: usize| (0..n).map(|i| format!("{i:03}.same")).collect::<Vec<_>>();
        assert_eq!(
            CoverSearch::new(&alike(GRAM_HOLDERS_MAX), 32, usize::MAX).is_some(),
            simd()
        );
        assert!(CoverSearch::new(&alike(GRAM_HOLDERS_MAX + 1), 32, usize::MAX).is_none());
    }
}
