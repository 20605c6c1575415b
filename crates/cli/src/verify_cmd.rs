//! `tokenward verify`: check tokens against a policy.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use serde_json::{json, Value};
use tokenward_jose::Claims;
use tokenward_trust::{parse_rfc3339, LivePolicy, Verdict};

use crate::EXIT_USAGE;

/// Arguments of `tokenward verify`.
#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 every token accepted, 1 any token rejected, 2 usage or configuration error."
)]
pub struct VerifyArgs {
    /// Policy file (TOML) binding every key to its issuers, tenants,
    /// audiences, algorithm and validity.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The token; `-` or nothing reads one token from standard input.
    #[arg(value_name = "TOKEN", conflicts_with = "tokens")]
    token: Option<String>,
    /// Verify every line of FILE as a token (blank lines are skipped); one
    /// verdict per line. `-` reads the lines from standard input as they
    /// come, so tokens can be piped in from a log.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// One JSON object per token instead of text.
    #[arg(long)]
    json: bool,
    /// Verification time (RFC 3339), e.g. to replay tokens from a log.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// Do not print policy load warnings.
    #[arg(long, short)]
    quiet: bool,
}

/// Verifies the given tokens and returns the process exit status.
pub fn run(args: VerifyArgs) -> u8 {
    match run_inner(&args) {
        Ok(all_accepted) => u8::from(!all_accepted),
        Err(message) => {
            eprintln!("tokenward verify: {message}");
            EXIT_USAGE
        }
    }
}

fn run_inner(args: &VerifyArgs) -> Result<bool, String> {
    // The key sets are fetched at the real time; --now only moves the
    // verification clock (replaying old tokens must not make fresh keys
    // look stale).
    let wall_clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let live = LivePolicy::load(&args.policy, wall_clock).map_err(|e| e.to_string())?;
    let policy = live.policy();
    if !args.quiet {
        for w in policy.warnings() {
            eprintln!("warning: {w}");
        }
    }
    let now = match &args.now {
        Some(t) => parse_rfc3339(t).map_err(|e| format!("--now: {e}"))?,
        None => wall_clock,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // Tokens piped in from a log (`tail -f | ... --tokens -`) get their
    // verdicts as they come, not when a buffer fills or the pipe ends.
    let live_lines = args.tokens.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let mut all_accepted = true;
    let mut emit = |token: &str, line: Option<usize>| -> Result<(), String> {
        let verdict = live.verify_at(token, now, wall_clock);
        all_accepted &= verdict.accepted();
        let text = if args.json {
            let mut obj = verdict_json(&verdict);
            if let Some(n) = line {
                obj["line"] = json!(n);
            }
            obj.to_string()
        } else {
            verdict_text(&verdict, line)
        };
        writeln!(out, "{text}")
            .and_then(|()| if live_lines { out.flush() } else { Ok(()) })
            .map_err(|e| format!("writing output: {e}"))
    };
    if let Some(path) = &args.tokens {
        let from_stdin = path.as_os_str() == "-";
        let source: Box<dyn Read> = if from_stdin {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?)
        };
        let name = if from_stdin {
            "standard input".to_owned()
        } else {
            path.display().to_string()
        };
        let mut reader = std::io::BufReader::new(source);
        // One byte over the limit is enough for the verifier to say
        // `too-large`; the rest of a longer line is skipped unread, so an
        // endless line (`/dev/zero`) costs no memory.
        let keep = policy.max_token_bytes() + 1;
        let mut line = Vec::new();
        let mut n = 0usize;
        while next_line(&mut reader, keep, &mut line)
            .map_err(|e| format!("{name}:{}: {e}", n + 1))?
        {
            n += 1;
            // Not UTF-8 is not a token: the verifier rejects the replacement
            // characters as `malformed`, and the next lines are still read.
            let text = String::from_utf8_lossy(&line);
            let token = text.trim();
            if !token.is_empty() {
                emit(token, Some(n))?;
            }
        }
    } else {
        let token = match args.token.as_deref() {
            Some(t) if t != "-" => t.to_owned(),
            _ => {
                let mut buf = String::new();
                std::io::stdin()
                    .take(1 << 20)
                    .read_to_string(&mut buf)
                    .map_err(|e| format!("reading standard input: {e}"))?;
                buf.trim().to_owned()
            }
        };
        if token.is_empty() {
            return Err(
                "no token given (pass TOKEN, `-` with a token on standard input, or --tokens FILE)"
                    .into(),
            );
        }
        emit(&token, None)?;
    }
    out.flush().map_err(|e| format!("writing output: {e}"))?;
    Ok(all_accepted)
}

/// Reads the next line into `line`, keeping at most `keep` bytes of it and
/// consuming the rest. `false` at the end of the input.
fn next_line(r: &mut impl BufRead, keep: usize, line: &mut Vec<u8>) -> std::io::Result<bool> {
    line.clear();
    let mut any = false;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok(any);
        }
        any = true;
        let (take, used, done) = match memchr_newline(avail) {
            Some(p) => (p, p + 1, true),
            None => (avail.len(), avail.len(), false),
        };
        let room = keep.saturating_sub(line.len());
        line.extend_from_slice(&avail[..take.min(room)]);
        r.consume(used);
        if done {
            return Ok(true);
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// The `--json` object; a contract documented in the README.
pub fn verdict_json(v: &Verdict) -> Value {
    let claims = v.claims.as_ref();
    json!({
        "verdict": if v.accepted() { "accepted" } else { "rejected" },
        "reasons": v.reasons,
        "kid": v.kid,
        "alg": v.alg.map(|a| a.name()),
        "x5t": v.x5t,
        "iss": claims.and_then(Claims::iss),
        "tid": claims.and_then(Claims::tid),
        "aud": claims.and_then(Claims::aud).map(|a| a.to_vec()),
        "claims": v.claims_json(),
    })
}

fn verdict_text(v: &Verdict, line: Option<usize>) -> String {
    let prefix = line.map(|n| format!("line {n}: ")).unwrap_or_default();
    let claims = v.claims.as_ref();
    let ident = format!(
        "kid={} alg={} iss={} tid={}",
        v.kid.as_deref().unwrap_or("-"),
        v.alg.map_or("-", |a| a.name()),
        claims.and_then(Claims::iss).unwrap_or("-"),
        claims.and_then(Claims::tid).unwrap_or("-"),
    );
    if v.accepted() {
        format!("{prefix}accepted  {ident}")
    } else {
        let mut s = format!("{prefix}rejected  {ident}");
        for r in &v.reasons {
            s.push_str(&format!("\n  {}: {}", r.code, r.message));
        }
        s
    }
}
