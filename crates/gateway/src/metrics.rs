//! Counters for the Prometheus `/metrics` endpoint, kept in atomics so the
//! request path never takes a lock for them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokenward_trust::ReasonCode;

use crate::access::{Verdict, GATEWAY_REASONS};

/// Upper bounds (seconds) of the request-duration histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// Why a request could not be completed upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamError {
    /// Connection refused or failed.
    Unavailable,
    /// No response headers within the upstream timeout.
    Timeout,
    /// Any other failure talking to the upstream.
    Failed,
}

impl UpstreamError {
    pub(crate) const ALL: [UpstreamError; 3] = [
        UpstreamError::Unavailable,
        UpstreamError::Timeout,
        UpstreamError::Failed,
    ];

    /// The string used in the access log and as a metric label.
    pub(crate) fn code(self) -> &'static str {
        match self {
            UpstreamError::Unavailable => "upstream-unavailable",
            UpstreamError::Timeout => "upstream-timeout",
            UpstreamError::Failed => "upstream-error",
        }
    }
}

/// Every counter the gateway exports.
pub(crate) struct Metrics {
    verdicts: [AtomicU64; Verdict::ALL.len()],
    reasons: Vec<(&'static str, AtomicU64)>,
    upstream_errors: [AtomicU64; UpstreamError::ALL.len()],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    in_flight: AtomicI64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    keys: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    duration_micros: AtomicU64,
    duration_count: AtomicU64,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let reasons = ReasonCode::ALL
            .iter()
            .map(|c| c.code())
            .chain(GATEWAY_REASONS.iter().copied())
            .map(|c| (c, AtomicU64::new(0)))
            .collect();
        Metrics {
            verdicts: Default::default(),
            reasons,
            upstream_errors: Default::default(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            keys: AtomicU64::new(0),
            buckets: Default::default(),
            duration_micros: AtomicU64::new(0),
            duration_count: AtomicU64::new(0),
        }
    }

    /// Records one finished request.
    pub(crate) fn request(&self, verdict: Verdict, reasons: &[&'static str], took: Duration) {
        self.verdicts[verdict as usize].fetch_add(1, Relaxed);
        for r in reasons {
            if let Some((_, n)) = self.reasons.iter().find(|(c, _)| c == r) {
                n.fetch_add(1, Relaxed);
            }
        }
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.duration_micros
            .fetch_add(took.as_micros() as u64, Relaxed);
        self.duration_count.fetch_add(1, Relaxed);
    }

    pub(crate) fn upstream_error(&self, e: UpstreamError) {
        self.upstream_errors[e as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn cache(&self, hit: bool) {
        if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        }
        .fetch_add(1, Relaxed);
    }

    pub(crate) fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Relaxed);
    }

    pub(crate) fn reloaded(&self, ok: bool, keys: usize) {
        if ok {
            self.reloads.fetch_add(1, Relaxed);
            self.keys.store(keys as u64, Relaxed);
        } else {
            self.reload_failures.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn set_keys(&self, keys: usize) {
        self.keys.store(keys as u64, Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub(crate) fn render(&self, cache_entries: usize) -> String {
        let mut o = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, kind: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        counter(
            "tokenward_gateway_requests_total",
            "Requests handled, by verdict.",
            "counter",
        );
        let mut o2 = String::new();
        for v in Verdict::ALL {
            let _ = writeln!(
                o2,
                "tokenward_gateway_requests_total{{verdict=\"{}\"}} {}",
                v.as_str(),
                self.verdicts[v as usize].load(Relaxed)
            );
        }
        o.push_str(&o2);
        let mut line = |s: String| {
            o.push_str(&s);
            o.push('\n');
        };
        line("# HELP tokenward_gateway_rejections_total Refused tokens, by reason code (a token may carry several).".into());
        line("# TYPE tokenward_gateway_rejections_total counter".into());
        for (code, n) in &self.reasons {
            line(format!(
                "tokenward_gateway_rejections_total{{reason=\"{code}\"}} {}",
                n.load(Relaxed)
            ));
        }
        line("# HELP tokenward_gateway_upstream_errors_total Requests that passed policy but got no upstream response.".into());
        line("# TYPE tokenward_gateway_upstream_errors_total counter".into());
        for e in UpstreamError::ALL {
            line(format!(
                "tokenward_gateway_upstream_errors_total{{kind=\"{}\"}} {}",
                e.code(),
                self.upstream_errors[e as usize].load(Relaxed)
            ));
        }
        let simple: [(&str, &str, &str, String); 7] = [
            (
                "tokenward_gateway_verdict_cache_hits_total",
                "Token verdicts served from the cache.",
                "counter",
                self.cache_hits.load(Relaxed).to_string(),
            ),
            (
                "tokenward_gateway_verdict_cache_misses_total",
                "Tokens verified against the policy.",
                "counter",
                self.cache_misses.load(Relaxed).to_string(),
            ),
            (
                "tokenward_gateway_verdict_cache_entries",
                "Accepted verdicts currently cached.",
                "gauge",
                cache_entries.to_string(),
            ),
            (
                "tokenward_gateway_in_flight_requests",
                "Requests being handled now.",
                "gauge",
                self.in_flight.load(Relaxed).to_string(),
            ),
            (
                "tokenward_gateway_policy_reloads_total",
                "Successful policy and key reloads after a file changed.",
                "counter",
                self.reloads.load(Relaxed).to_string(),
            ),
            (
                "tokenward_gateway_policy_reload_failures_total",
                "Reloads refused because the changed policy or key set was invalid (the previous one stays in force).",
                "counter",
                self.reload_failures.load(Relaxed).to_string(),
            ),
            (
                "tokenward_gateway_policy_keys",
                "Key records in the policy in force.",
                "gauge",
                self.keys.load(Relaxed).to_string(),
            ),
        ];
        for (name, help, kind, value) in simple {
            line(format!("# HELP {name} {help}"));
            line(format!("# TYPE {name} {kind}"));
            line(format!("{name} {value}"));
        }
        let name = "tokenward_gateway_request_duration_seconds";
        line(format!(
            "# HELP {name} Time from request received to response headers sent."
        ));
        line(format!("# TYPE {name} histogram"));
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            line(format!("{name}_bucket{{le=\"{b}\"}} {cumulative}"));
        }
        let count = self.duration_count.load(Relaxed);
        line(format!("{name}_bucket{{le=\"+Inf\"}} {count}"));
        line(format!(
            "{name}_sum {}",
            self.duration_micros.load(Relaxed) as f64 / 1e6
        ));
        line(format!("{name}_count {count}"));
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_counts_requests_reasons_and_durations() {
        let m = Metrics::new();
        m.request(
            Verdict::Rejected,
            &["key-denied", "expired"],
            Duration::from_micros(300),
        );
        m.request(Verdict::Accepted, &[], Duration::from_millis(2));
        m.upstream_error(UpstreamError::Unavailable);
        m.cache(true);
        let text = m.render(3);
        for want in [
            "tokenward_gateway_requests_total{verdict=\"rejected\"} 1",
            "tokenward_gateway_requests_total{verdict=\"accepted\"} 1",
            "tokenward_gateway_rejections_total{reason=\"key-denied\"} 1",
            "tokenward_gateway_rejections_total{reason=\"exchange-subject-refused\"} 0",
            "tokenward_gateway_upstream_errors_total{kind=\"upstream-unavailable\"} 1",
            "tokenward_gateway_verdict_cache_hits_total 1",
            "tokenward_gateway_verdict_cache_entries 3",
            "tokenward_gateway_request_duration_seconds_bucket{le=\"0.0005\"} 1",
            "tokenward_gateway_request_duration_seconds_bucket{le=\"0.0025\"} 2",
            "tokenward_gateway_request_duration_seconds_count 2",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
