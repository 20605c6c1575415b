//! The checks, in order. Each failure is recorded and checking goes on, so
//! a verdict lists every problem, not just the first.

use tokenward_jose::{Claims, Jws};

use crate::policy::{
    guid_segment, is_guid_str, normalise_typ, IssuerEntry, KeyRecord, KeyStatus, Policy, TenantRule,
};
use crate::reason::ReasonCode as R;
use crate::verdict::Verdict;
use crate::CONSUMER_TENANT;
use tokenward_keys::format_rfc3339;

/// How a token's `iss` matched an issuer entry.
struct IssuerMatch<'p, 'c> {
    index: usize,
    entry: &'p IssuerEntry,
    /// For templates: the tenant segment found in `iss`.
    tenant_in_iss: Option<&'c str>,
}

impl Policy {
    /// Verifies a compact token at time `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> Verdict {
        let mut v = Verdict::default();
        let mut jws = match Jws::parse(token, &self.limits) {
            Ok(jws) => jws,
            Err(e) => {
                v.fail(e.kind.into(), e.message);
                return v;
            }
        };
        v.alg = jws.header.alg;
        // The claims keep the payload; a payload that is no claim set is
        // kept on the verdict instead, for `claims_json`.
        let claims = match Claims::parse_owned(std::mem::take(&mut jws.payload), &self.noted_claims)
        {
            Ok(c) => c,
            Err(e) => {
                v.fail(
                    R::Malformed,
                    format!("payload is not a JSON claim set: {}", e.reason),
                );
                v.payload = e.payload;
                Claims::default()
            }
        };
        for (name, found) in &claims.type_errors {
            v.fail(
                R::ClaimType,
                format!("claim \"{name}\" has the wrong type: {found}"),
            );
        }

        // Denylist first: a compromised key is refused whatever else holds.
        let mut denied = false;
        if let Some(kid) = &jws.header.kid {
            if self.deny_kids.contains(kid) {
                v.fail(
                    R::KeyDenied,
                    format!("kid {kid:?} is a known-compromised key"),
                );
                denied = true;
            }
        }
        for tp in [&jws.header.x5t, &jws.header.x5t_s256]
            .into_iter()
            .flatten()
        {
            if let Some(why) = self.header_thumbprint_denied(tp) {
                if !denied {
                    v.fail(R::KeyDenied, why);
                    denied = true;
                }
            }
        }

        let issuer = self.match_issuer(&claims, &mut v);
        v.issuer_index = issuer.as_ref().map(|m| m.index);
        let record = self.check_key(&jws, issuer.as_ref(), now, denied, &mut v);
        if let Some(m) = &issuer {
            self.check_tenant(m, &claims, &mut v);
            check_audience(m.entry, &claims, &mut v);
            check_typ(m.entry, jws.header.typ.as_deref(), &mut v);
            for name in &m.entry.required_claims {
                let noted = self.noted_claims.iter().position(|n| n == name);
                if !noted.is_some_and(|i| claims.has_noted(i)) {
                    v.fail(
                        R::ClaimMissing,
                        format!("required claim \"{name}\" is absent"),
                    );
                }
            }
        }
        self.check_times(issuer.as_ref().map(|m| m.entry), &claims, now, &mut v);
        // Moved, not cloned, once every check has read the header.
        v.kid = jws.header.kid;
        v.x5t = jws
            .header
            .x5t
            .or_else(|| record.and_then(|rec| rec.x5t.clone()));
        v.claims = Some(claims);
        v
    }

    fn match_issuer<'c>(&self, claims: &'c Claims, v: &mut Verdict) -> Option<IssuerMatch<'_, 'c>> {
        let Some(iss) = claims.iss() else {
            if !claims.has("iss") {
                v.fail(R::ClaimMissing, "claim \"iss\" is absent");
            }
            return None;
        };
        // An exact entry wins over a template that also matches: a policy
        // may trust the enterprise `{tenantid}` template and, separately,
        // the consumer tenant's exact issuer, whose keys are scoped to it.
        if let Some((index, entry)) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, e)| e.template.is_none() && e.issuer == iss)
        {
            return Some(IssuerMatch {
                index,
                entry,
                tenant_in_iss: None,
            });
        }
        for (index, entry) in self.issuers.iter().enumerate() {
            let Some((pre, post)) = &entry.template else {
                continue;
            };
            let Some(mid) = iss
                .strip_prefix(pre.as_str())
                .and_then(|r| r.strip_suffix(post.as_str()))
            else {
                continue;
            };
            if !mid.is_empty() && !mid.contains('/') {
                return Some(IssuerMatch {
                    index,
                    entry,
                    tenant_in_iss: Some(mid),
                });
            }
        }
        v.fail(
            R::IssuerUnknown,
            format!("no issuer entry matches iss {iss:?}"),
        );
        None
    }

    fn check_key<'p>(
        &'p self,
        jws: &Jws<'_>,
        issuer: Option<&IssuerMatch<'_, '_>>,
        now: i64,
        already_denied: bool,
        v: &mut Verdict,
    ) -> Option<&'p KeyRecord> {
        let alg = jws.header.algorithm();
        if let Some(m) = issuer {
            if !m.entry.algorithms.contains(&alg) {
                v.fail(
                    R::AlgNotAllowed,
                    format!("{alg} is not allowed for issuer {:?}", m.entry.issuer),
                );
            }
        }
        let Some(kid) = jws.header.kid.as_deref() else {
            v.fail(
                R::KidMissing,
                "header has no kid; tokenward never tries every key",
            );
            return None;
        };
        let candidates = self.keys_with_kid(kid);
        let record = issuer
            .and_then(|m| candidates.iter().find(|r| r.scope == Some(m.index)))
            .or_else(|| candidates.first());
        let Some(rec) = record else {
            v.fail(R::KidUnknown, format!("no trusted key has kid {kid:?}"));
            if let Some(o) = self.overrides.get(kid) {
                status_reason(o.status, kid, v);
            }
            return None;
        };
        if let Some(m) = issuer {
            if rec.scope != Some(m.index) {
                let serves = match (rec.scope, &rec.key_issuer) {
                    (Some(i), _) => format!("issuer {:?}", self.issuers[i].issuer),
                    (None, Some(own)) => {
                        format!("issuer {own:?}, which no [[issuer]] entry trusts")
                    }
                    (None, None) => "no issuer".to_owned(),
                };
                v.fail(
                    R::KeyOutOfScope,
                    format!(
                        "key {kid:?} is scoped to {serves}; it may not sign for {:?}",
                        m.entry.issuer
                    ),
                );
            }
        } else if rec.scope.is_none() {
            v.fail(
                R::KeyOutOfScope,
                format!("key {kid:?} serves no issuer entry of this policy"),
            );
        }
        if let Some(why) = &rec.denied {
            if !already_denied {
                v.fail(R::KeyDenied, why.clone());
            }
        }
        status_reason(rec.status, kid, v);
        if let Some(na) = rec.not_after {
            if now > na {
                v.fail(
                    R::KeyExpired,
                    format!("key {kid:?} expired at {}", format_rfc3339(na)),
                );
            }
        }
        if let Some(nb) = rec.not_before {
            if now < nb {
                v.fail(
                    R::KeyNotYetValid,
                    format!("key {kid:?} is valid from {}", format_rfc3339(nb)),
                );
            }
        }
        match (&rec.verifier, rec.alg) {
            (Err(why), _) => v.fail(R::KeyUnusable, format!("key {kid:?} cannot verify: {why}")),
            (Ok(_), Some(key_alg)) if key_alg != alg => v.fail(
                R::AlgNotAllowed,
                format!("header alg {alg} is not the key's algorithm {key_alg}"),
            ),
            (Ok(key), _) => {
                if !key.verify(jws.signing_input.as_bytes(), &jws.signature) {
                    v.fail(
                        R::SignatureInvalid,
                        format!("signature does not verify with key {kid:?}"),
                    );
                }
            }
        }
        Some(rec)
    }

    fn check_tenant(&self, m: &IssuerMatch<'_, '_>, claims: &Claims, v: &mut Verdict) {
        let tid = claims.tid();
        if let Some(in_iss) = m.tenant_in_iss {
            // The Microsoft binding: iss must be the template filled with
            // tid, and tid a GUID. Both come from the token, so this alone
            // proves nothing; the tenant list below is what restricts.
            let Some(tid) = tid else {
                if !claims.has("tid") {
                    v.fail(
                        R::ClaimMissing,
                        "claim \"tid\" is absent (required by a {tenantid} issuer)",
                    );
                }
                return;
            };
            if !is_guid_str(tid) {
                v.fail(R::TidMismatch, format!("tid {tid:?} is not a GUID"));
                return;
            }
            if !in_iss.eq_ignore_ascii_case(tid) {
                v.fail(
                    R::TidMismatch,
                    format!("iss names tenant {in_iss:?} but tid is {tid:?}"),
                );
                return;
            }
        } else if let (Some(tid), Some(seg)) = (tid, guid_segment(&m.entry.issuer)) {
            if !seg.eq_ignore_ascii_case(tid) {
                v.fail(
                    R::TidMismatch,
                    format!("issuer is tenant {seg:?} but tid is {tid:?}"),
                );
                return;
            }
        }
        // Tenant lists are lower-cased at load; comparing without case
        // spares a lower-cased copy of every token's tid.
        let consumer = tid.is_some_and(|t| t.eq_ignore_ascii_case(CONSUMER_TENANT));
        match &m.entry.tenants {
            TenantRule::Unrestricted => {}
            TenantRule::Any => {
                if consumer && m.tenant_in_iss.is_some() {
                    v.fail(R::TenantNotAllowed, format!(
                        "the consumer tenant {CONSUMER_TENANT} never passes for a multi-tenant enterprise issuer"
                    ));
                }
            }
            TenantRule::List(list) => match tid {
                None => {
                    if !claims.has("tid") {
                        v.fail(
                            R::ClaimMissing,
                            "claim \"tid\" is absent (the issuer lists tenants)",
                        );
                    }
                }
                Some(t) => {
                    let consumer_mixed = consumer && list.len() > 1;
                    if !list.iter().any(|l| l.eq_ignore_ascii_case(t)) || consumer_mixed {
                        v.fail(R::TenantNotAllowed, if consumer_mixed {
                            format!("the consumer tenant {CONSUMER_TENANT} never passes for an issuer entry that also lists other tenants")
                        } else {
                            format!(
                                "tenant {} is not allowed for issuer {:?}",
                                t.to_ascii_lowercase(),
                                m.entry.issuer
                            )
                        });
                    }
                }
            },
        }
    }

    fn check_times(&self, entry: Option<&IssuerEntry>, claims: &Claims, now: i64, v: &mut Verdict) {
        let now_f = now as f64;
        let leeway = self.leeway as f64;
        match claims.exp {
            None if !claims.has("exp") => v.fail(R::ClaimMissing, "claim \"exp\" is absent"),
            None => {}
            Some(exp) if now_f >= exp.0 + leeway => v.fail(
                R::Expired,
                format!("expired at {}", format_rfc3339(exp.0 as i64)),
            ),
            Some(_) => {}
        }
        if let Some(nbf) = claims.nbf {
            if nbf.0 > now_f + leeway {
                v.fail(
                    R::NotYetValid,
                    format!("not valid before {}", format_rfc3339(nbf.0 as i64)),
                );
            }
        }
        if let Some(iat) = claims.iat {
            if iat.0 > now_f + leeway {
                v.fail(
                    R::IatInFuture,
                    format!("issued in the future, at {}", format_rfc3339(iat.0 as i64)),
                );
            }
        }
        if let Some(max) = entry.and_then(|e| e.max_lifetime) {
            match (claims.exp, claims.iat.or(claims.nbf)) {
                (Some(exp), Some(start)) if exp.0 - start.0 > max as f64 => v.fail(
                    R::LifetimeTooLong,
                    format!(
                        "lifetime {}s exceeds the maximum {max}s",
                        (exp.0 - start.0) as i64
                    ),
                ),
                (Some(_), None) => v.fail(
                    R::ClaimMissing,
                    "claim \"iat\" is absent; it is needed to check the maximum lifetime",
                ),
                _ => {}
            }
        }
    }
}

fn status_reason(status: KeyStatus, kid: &str, v: &mut Verdict) {
    match status {
        KeyStatus::Active => {}
        KeyStatus::Retired => v.fail(R::KeyRetired, format!("key {kid:?} is retired")),
        KeyStatus::Revoked => v.fail(R::KeyRevoked, format!("key {kid:?} is revoked")),
    }
}

fn check_audience(entry: &IssuerEntry, claims: &Claims, v: &mut Verdict) {
    match claims.aud() {
        None => {
            if !claims.has("aud") {
                v.fail(R::ClaimMissing, "claim \"aud\" is absent");
            }
        }
        Some(aud) => {
            if !aud.values().any(|a| entry.audiences.iter().any(|e| e == a)) {
                v.fail(
                    R::AudienceMismatch,
                    format!("aud {aud:?} names none of {:?}", entry.audiences),
                );
            }
        }
    }
}

fn check_typ(entry: &IssuerEntry, typ: Option<&str>, v: &mut Verdict) {
    if let Some(want) = &entry.typ {
        match typ {
            Some(t) if &normalise_typ(t) == want => {}
            Some(t) => v.fail(R::TypMismatch, format!("typ {t:?} is not {want:?}")),
            None => v.fail(
                R::TypMismatch,
                format!("typ is absent; {want:?} is required"),
            ),
        }
    }
}
