"""Small API services on loopback, each verifying tokens with PyJWT (and
the standard library) the way real services do: one correctly, the others
with a well-known mistake. `tokenward probe` must name exactly the mistake.

Usage: services.py MODE --jwks FILE --audience AUD --tenant TID [--public-pem FILE] [--hs-dir DIR]
Prints "listening PORT" once ready, then serves until killed.
"""

import argparse
import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from jwt import PyJWK

ENTERPRISE_TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"


class Refused(Exception):
    pass


def b64d(part):
    return jwt.utils.base64url_decode(part.encode())


def load_args():
    p = argparse.ArgumentParser()
    p.add_argument("mode")
    p.add_argument("--jwks", required=True)
    p.add_argument("--audience", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--public-pem")
    p.add_argument("--hs-dir")
    p.add_argument("--refuse-with-200", action="store_true",
                   help="answer refusals with 200 and an error page, as some sites do")
    return p.parse_args()


ARGS = load_args()
with open(ARGS.jwks) as f:
    KEYS = json.load(f)["keys"]
EXPECTED_ISS = ENTERPRISE_TEMPLATE.replace("{tenantid}", ARGS.tenant)


def key_by_kid(kid):
    for k in KEYS:
        if k.get("kid") == kid:
            return k
    raise Refused("unknown kid")


def claims_only(token):
    """Checks exp/nbf/iat, aud and iss but not the signature: used after a
    service's own (possibly broken) signature check."""
    return jwt.decode(
        token,
        options={"verify_signature": False, "verify_exp": True, "verify_nbf": True,
                 "verify_iat": True, "verify_aud": True, "verify_iss": True},
        audience=ARGS.audience,
        issuer=EXPECTED_ISS,
    )


def strict(token, options=None):
    """The correct verifier: the key comes from the configured set by kid,
    is bound to one algorithm and to the issuer it may sign for (the
    Microsoft per-key `issuer` with the tenant substituted), and every
    registered claim is checked."""
    header = jwt.get_unverified_header(token)
    jwk = key_by_kid(header.get("kid"))
    unverified = jwt.decode(token, options={"verify_signature": False})
    tid = unverified.get("tid")
    if tid != ARGS.tenant:
        raise Refused("tenant not allowed")
    bound_issuer = jwk["issuer"].replace("{tenantid}", tid)
    return jwt.decode(
        token,
        key=PyJWK(jwk).key,
        algorithms=[jwk["alg"]],
        audience=ARGS.audience,
        issuer=bound_issuer,
        options=dict({"require": ["exp", "iat", "iss", "aud"]}, **(options or {})),
    )


def no_verify(token):
    # The decode-only mistake: "verify_signature": False in production.
    return jwt.decode(token, options={"verify_signature": False})


def alg_confusion(token):
    header = jwt.get_unverified_header(token)
    if header.get("alg", "").startswith("HS"):
        # Hand-rolled HMAC branch keyed with "the key" file, which is the
        # RSA public key: the classic RS256 -> HS256 confusion.
        with open(ARGS.public_pem, "rb") as f:
            secret = f.read()
        h, p, s = token.split(".")
        mac = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(mac, b64d(s)):
            raise Refused("bad HMAC")
        return claims_only(token)
    return strict(token)


def none_any_case(token):
    header = jwt.get_unverified_header(token)
    if str(header.get("alg", "")).lower() == "none":
        # "Unsecured JWTs are allowed for internal callers".
        return claims_only(token)
    return strict(token)


def no_exp(token):
    return strict(token, {"verify_exp": False})


def no_aud(token):
    return strict(token, {"verify_aud": False})


def storm_0558(token):
    # Any key in the shared set verifies; only the iss string is checked,
    # never that the key may sign for that issuer.
    header = jwt.get_unverified_header(token)
    jwk = key_by_kid(header.get("kid"))
    claims = jwt.decode(token, key=PyJWK(jwk).key, algorithms=[jwk["alg"]],
                        audience=ARGS.audience)
    if claims.get("tid") != ARGS.tenant or claims.get("iss") != EXPECTED_ISS:
        raise Refused("wrong issuer or tenant")
    return claims


def header_jwk(token):
    header = jwt.get_unverified_header(token)
    if "jwk" in header:
        key = PyJWK(header["jwk"])
        return jwt.decode(token, key=key.key, algorithms=[header["alg"]],
                          audience=ARGS.audience, issuer=EXPECTED_ISS)
    return strict(token)


def jku(token):
    header = jwt.get_unverified_header(token)
    if "jku" in header:
        with urllib.request.urlopen(header["jku"], timeout=3) as r:
            fetched = json.load(r)["keys"]
        jwk = next(k for k in fetched if k.get("kid") == header.get("kid"))
        return jwt.decode(token, key=PyJWK(jwk).key, algorithms=[header["alg"]],
                          audience=ARGS.audience, issuer=EXPECTED_ISS)
    return strict(token)


def hs_verify(token, secret):
    h, p, s = token.split(".")
    mac = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
    header = jwt.get_unverified_header(token)
    if header.get("alg") != "HS256" or not hmac.compare_digest(mac, b64d(s)):
        raise Refused("bad HMAC")
    return claims_only(token)


def kid_path(token):
    kid = jwt.get_unverified_header(token).get("kid", "")
    with open(os.path.join(ARGS.hs_dir, kid), "rb") as f:
        return hs_verify(token, f.read())


def kid_sql(token):
    kid = jwt.get_unverified_header(token).get("kid", "")
    db = sqlite3.connect(os.path.join(ARGS.hs_dir, "keys.db"))
    try:
        row = db.execute("SELECT secret FROM keys WHERE kid = '%s'" % kid).fetchone()
    finally:
        db.close()
    if row is None:
        raise Refused("unknown kid")
    return hs_verify(token, row[0].encode())


def kid_shell(token):
    kid = jwt.get_unverified_header(token).get("kid", "")
    out = subprocess.run("cat %s/%s" % (ARGS.hs_dir, kid), shell=True,
                         capture_output=True, timeout=5).stdout
    return hs_verify(token, out)


MODES = {
    "strict": strict, "no-verify": no_verify, "alg-confusion": alg_confusion,
    "none-any-case": none_any_case, "no-exp": no_exp, "no-aud": no_aud,
    "storm-0558": storm_0558, "header-jwk": header_jwk, "jku": jku,
    "kid-path": kid_path, "kid-sql": kid_sql, "kid-shell": kid_shell,
}
VERIFY = MODES[ARGS.mode]

if ARGS.mode == "kid-sql":
    # The key table the SQL lookup reads: one row per key file.
    db = sqlite3.connect(os.path.join(ARGS.hs_dir, "keys.db"))
    db.execute("CREATE TABLE IF NOT EXISTS keys (kid TEXT PRIMARY KEY, secret TEXT)")
    for name in os.listdir(ARGS.hs_dir):
        if name != "keys.db":
            with open(os.path.join(ARGS.hs_dir, name)) as f:
                db.execute("INSERT OR REPLACE INTO keys VALUES (?, ?)", (name, f.read()))
    db.commit()
    db.close()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        cookie = self.headers.get("Cookie", "")
        try:
            if auth.startswith("Bearer "):
                token = auth[len("Bearer "):]
            elif "session=" in cookie:
                token = cookie.split("session=", 1)[1].split(";", 1)[0]
            else:
                raise Refused("no token")
            claims = VERIFY(token)
            status, body = 200, {"mailbox": claims.get("sub"), "messages": 3,
                                 "folders": ["Inbox", "Sent Items"]}
        except Exception as e:  # every failure is a refusal, as in real services
            status, body = 401, {"error": "invalid_token", "detail": type(e).__name__}
            if ARGS.refuse_with_200:
                status, body = 200, {"error": "Your session has expired. Please sign in again.",
                                     "help": "https://contoso.example/support"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("listening", server.server_address[1], flush=True)
server.serve_forever()
