//! `tokenward probe`: forged tokens against your own staging endpoint.

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokenward_probe::keyfile::{self, PrivateKeyFile};
use tokenward_probe::{probe, Class, ProbeConfig, ProbeError, Report, Target};

use crate::EXIT_USAGE;

/// Exit status when at least one forged token (or no token) was accepted.
const EXIT_ACCEPTED: u8 = 1;

#[derive(Args)]
#[command(
    after_help = "Exit status: 0 when no forged token was accepted, 1 when at least one \
was (or the endpoint answered without a token), 2 for a usage error or a baseline that \
cannot be judged (the legitimate token refused, unstable answers, or refused again after \
the battery with nothing accepted).\n\nAttack classes: no-token, alg-none, signature-stripped, \
signature-invalid, claims-tampered, hs-public-key, empty-hmac-key, header-jwk, header-jku, \
header-x5u, kid-traversal, kid-injection, psychic-signature, expired, not-yet-valid, \
wrong-audience, wrong-issuer, wrong-tenant, cross-issuer-key. See docs/probe.md.\n\n\
Send it only to endpoints you are allowed to test."
)]
pub struct ProbeArgs {
    /// The endpoint to probe (http:// or https://). Requests go only to it.
    pub url: String,
    /// A token the endpoint accepts; `-` reads it from standard input
    /// (keeps it out of shell history and process lists).
    #[arg(
        long,
        conflicts_with = "token_file",
        required_unless_present = "token_file"
    )]
    pub token: Option<String>,
    /// Read the legitimate token from this file.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Where the token goes: `NAME` or `NAME: PREFIX`, e.g. `Cookie: session=`.
    #[arg(long, default_value = "Authorization: Bearer", value_name = "NAME")]
    pub header: String,
    /// HTTP method (default GET, or POST when --data is given).
    #[arg(long, short = 'X')]
    pub method: Option<String>,
    /// Request body, sent with every request (`@FILE` reads a file).
    #[arg(long, short = 'd')]
    pub data: Option<String>,
    /// Extra request header `NAME: VALUE`; repeatable.
    #[arg(short = 'H', long = "request-header", value_name = "HEADER")]
    pub request_headers: Vec<String>,
    /// The target's key set (file or URL), for key-confusion classes.
    #[arg(long, value_name = "FILE|URL")]
    pub jwks: Option<String>,
    /// The target's public key (PEM or JWK), for key-confusion classes.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Private key (JWK or PEM) that signed --token; enables the claim
    /// classes. For test environments.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Private key of another issuer or tenant that the target's key set
    /// also publishes; enables cross-issuer-key. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub foreign_key: Vec<PathBuf>,
    /// Text that only an accepted answer contains.
    #[arg(long)]
    pub canary: Option<String>,
    /// Most requests to send, baseline included.
    #[arg(long, default_value_t = 200)]
    pub max_requests: u32,
    /// Most requests per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Address the callback listener (jku/x5u documents, kid callbacks) binds.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub callback_listen: SocketAddr,
    /// Base URL the target reaches the callback listener at, when it cannot
    /// reach loopback (use with --callback-listen).
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// Run only these classes; repeatable.
    #[arg(long, value_name = "CLASS")]
    pub only: Vec<String>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

fn usage(message: impl std::fmt::Display) -> u8 {
    eprintln!("tokenward probe: {message}");
    EXIT_USAGE
}

fn read_token(args: &ProbeArgs) -> Result<String, String> {
    let text = match (&args.token, &args.token_file) {
        (Some(t), _) if t == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .take(1024 * 1024)
                .read_to_string(&mut s)
                .map_err(|e| format!("reading the token from standard input: {e}"))?;
            s
        }
        (Some(t), _) => t.clone(),
        (None, Some(path)) => {
            let bytes = tokenward_keys::read_capped(path, 1024 * 1024)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
            String::from_utf8(bytes)
                .map_err(|_| format!("--token-file {}: not text", path.display()))?
        }
        (None, None) => return Err("--token or --token-file is required".into()),
    };
    let token = text.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token);
    Ok(token.to_owned())
}

fn config(args: &ProbeArgs) -> Result<ProbeConfig, String> {
    let token = read_token(args)?;
    let parsed = tokenward_probe::LegitToken::parse(&token).map_err(|e| e.to_string())?;
    let (token_header, token_prefix) =
        Target::token_placement(&args.header).map_err(|e| e.to_string())?;
    let mut headers = Vec::new();
    for h in &args.request_headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("-H {h:?}: expected \"NAME: VALUE\""))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let body = match &args.data {
        Some(d) if d.starts_with('@') => Some(
            tokenward_keys::read_capped(std::path::Path::new(&d[1..]), 16 * 1024 * 1024)
                .map_err(|e| format!("--data {d}: {e}"))?,
        ),
        Some(d) => Some(d.clone().into_bytes()),
        None => None,
    };
    let method = args
        .method
        .clone()
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into())
        .to_ascii_uppercase();
    let jwks = match &args.jwks {
        Some(source) => keyfile::read_jwks(source).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let mut public_keys = keyfile::public_keys_from_jwks(&jwks, parsed.kid());
    if let Some(path) = &args.public_key {
        public_keys.push(keyfile::read_public_key(path).map_err(|e| e.to_string())?);
    }
    let key = match &args.key {
        Some(path) => {
            let file = PrivateKeyFile::read(path, "--key").map_err(|e| e.to_string())?;
            Some(file.signing_key(parsed.alg).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let foreign_files = args
        .foreign_key
        .iter()
        .map(|p| PrivateKeyFile::read(p, "--foreign-key"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let foreign_keys = keyfile::foreign_keys(&foreign_files, &jwks).map_err(|e| e.to_string())?;
    let only = args
        .only
        .iter()
        .map(|id| Class::from_id(id).ok_or_else(|| format!("--only {id}: no such class")))
        .collect::<Result<Vec<_>, _>>()?;
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        return Err("--timeout must be a positive number of seconds".into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok(ProbeConfig {
        target: Target {
            url: args.url.clone(),
            method,
            token_header,
            token_prefix,
            headers,
            body,
        },
        token,
        canary: args.canary.clone(),
        public_keys,
        key,
        foreign_keys,
        callback_listen: args.callback_listen,
        callback_url: args.callback_url.clone(),
        max_requests: args.max_requests,
        rate: args.rate,
        timeout: Duration::from_secs_f64(args.timeout),
        now,
        only,
    })
}

/// Runs `tokenward probe`.
pub fn run(args: ProbeArgs) -> u8 {
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} probe {pos}/{len} requests {wide_bar}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let result = probe(config, &mut |done, total| {
        if let Some(bar) = &bar {
            bar.set_length(u64::from(total));
            bar.set_position(u64::from(done));
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = match result {
        Ok(r) => r,
        Err(e @ (ProbeError::Usage(_) | ProbeError::Baseline(_) | ProbeError::Internal(_))) => {
            return usage(e)
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => return usage(format!("could not write JSON: {e}")),
        }
    } else {
        print_table(&report);
    }
    if !report.accepted.is_empty() {
        EXIT_ACCEPTED
    } else if !report.reliable() {
        EXIT_USAGE
    } else {
        0
    }
}

fn status(s: Option<u16>) -> String {
    s.map_or_else(|| "no answer".into(), |s| s.to_string())
}

fn print_table(report: &Report) {
    let t = &report.token;
    println!(
        "target    {} {} (token in {})",
        report.target.method, report.target.url, report.target.token_header
    );
    println!(
        "token     {} kid={} iss={} (fingerprint {})",
        t.alg,
        t.kid.as_deref().unwrap_or("-"),
        t.iss.as_deref().unwrap_or("-"),
        t.fingerprint
    );
    let b = &report.baseline;
    let legit: Vec<String> = b.legitimate.iter().map(|a| status(a.status)).collect();
    println!(
        "baseline  legitimate {} · no token {} · broken signature {}{}",
        legit.join("/"),
        status(b.no_token.status),
        status(b.broken_signature.status),
        b.resigned_with_key
            .as_ref()
            .map(|a| format!(" · re-signed with --key {}", status(a.status)))
            .unwrap_or_default()
    );
    println!();
    println!("{:<20} {:>8}  {:<12} FIX", "CLASS", "REQUESTS", "VERDICT");
    for c in &report.classes {
        let verdict = if c.verdict == "accepted" {
            "ACCEPTED"
        } else {
            c.verdict
        };
        let line = format!(
            "{:<20} {:>8}  {:<12} {}",
            c.class.id(),
            c.attempts,
            verdict,
            c.fix.unwrap_or("")
        );
        println!("{}", line.trim_end());
    }
    let accepted: Vec<_> = report.attempts.iter().filter(|a| a.accepted).collect();
    if !accepted.is_empty() {
        println!();
        println!("accepted requests:");
        for a in accepted {
            println!(
                "  {} / {}: {} -> {} ({})",
                a.class,
                a.name,
                a.sent,
                status(a.status),
                a.reason
            );
        }
    }
    if !report.skipped.is_empty() {
        println!();
        for s in &report.skipped {
            println!("skipped   {}: needs {}", s.class, s.needs);
        }
    }
    for w in &report.warnings {
        println!("warning   {w}");
    }
    println!();
    println!(
        "{} requests; {}",
        report.requests,
        if report.accepted.is_empty() {
            "no forged token was accepted".to_owned()
        } else {
            format!(
                "ACCEPTED: {}",
                report
                    .accepted
                    .iter()
                    .map(|c| c.id())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
}
