#!/usr/bin/env bash
# tokenward probe, twice: against the verifying gateway (nothing forged gets
# through) and against a service with the Storm-0558 flaw (any key of the
# shared set verifies; only the iss string is compared).
#
# Needs the Python venv that .ci/run makes (PyJWT signs the demo token and
# runs the flawed service): run .ci/run once, or
#   python3 -m venv .ci/venv && .ci/venv/bin/pip install -r tests/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${TOKENWARD_PYTHON:-.ci/venv/bin/python}
BIN=${TOKENWARD_BIN:-target/release/tokenward}
[ -x "$BIN" ] || cargo build --release -p tokenward
K=examples/probe/keys
TENANT=3c1f6a8e-5b7d-4a2e-9f10-2b6c8d4e7a91
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

# A legitimate Contoso token, valid for an hour, signed by the enterprise key.
"$PY" - "$K/enterprise.pem" "$TENANT" > "$work/token.jwt" <<'PYEOF'
import sys, time, jwt
key, tid = open(sys.argv[1]).read(), sys.argv[2]
now = int(time.time())
print(jwt.encode({"iss": f"https://login.microsoftonline.com/{tid}/v2.0", "tid": tid,
                  "aud": "api://contoso-orders", "sub": "alice", "iat": now - 60,
                  "nbf": now - 60, "exp": now + 3600}, key, algorithm="RS256",
                 headers={"kid": "ent-2024-1"}))
PYEOF

port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# 1. The gateway in front of a plain upstream.
up=$(port); gw=$(port)
mkdir "$work/www" && echo '{"orders": [1, 2, 3]}' > "$work/www/orders"
"$PY" -m http.server "$up" --bind 127.0.0.1 --directory "$work/www" >/dev/null 2>&1 & pids+=($!)
"$BIN" gateway --policy examples/probe/policy.toml --listen "127.0.0.1:$gw" \
    --upstream "http://127.0.0.1:$up" --access-log "$work/access.jsonl" 2>/dev/null & pids+=($!)
sleep 1
echo "\$ tokenward probe http://127.0.0.1:$gw/orders --token-file token.jwt --jwks $K/common.json --key $K/enterprise.pem --foreign-key $K/consumer.pem"
set +e
"$BIN" probe "http://127.0.0.1:$gw/orders" --token-file "$work/token.jwt" --jwks "$K/common.json" \
    --key "$K/enterprise.pem" --foreign-key "$K/consumer.pem" --rate 50
echo "exit $?"
set -e

# 2. A PyJWT service with the Storm-0558 flaw, same keys.
"$PY" tests/probe/services.py storm-0558 --jwks "$K/common.json" --audience api://contoso-orders \
    --tenant "$TENANT" > "$work/svc.out" & pids+=($!)
for _ in $(seq 50); do [ -s "$work/svc.out" ] && break; sleep 0.1; done
svc=$(awk '{print $2}' "$work/svc.out")
echo
echo "\$ tokenward probe http://127.0.0.1:$svc/api/mail --token-file token.jwt --jwks $K/common.json --key $K/enterprise.pem --foreign-key $K/consumer.pem"
set +e
"$BIN" probe "http://127.0.0.1:$svc/api/mail" --token-file "$work/token.jwt" --jwks "$K/common.json" \
    --key "$K/enterprise.pem" --foreign-key "$K/consumer.pem" --rate 50
echo "exit $?"
