#!/usr/bin/env python3
"""Gateway traffic for bench/pgo_build.sh's training runs (loopback only).

  pgo_gateway_training.py upstream PORT
      an upstream answering every GET with 200 "ok" (HTTP/1.1, keep-alive)
  pgo_gateway_training.py client TOKEN_FILE UPSTREAM_PORT PROXY_PORT AUTHZ_PORT
      3,000 requests to each port, over one kept-alive connection, cycling
      through the valid token of TOKEN_FILE (bench_setup's), the same with
      a wrong signature, its claims under an unknown kid, a malformed token
      and no token (to the authorization service as nginx's auth_request
      sends them: the original method and URI in X-Original-Method and
      X-Original-URI); exits non-zero if a port never opens or a valid
      token is refused

Standard library only.
"""

import base64
import http.client
import http.server
import json
import sys
import time


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle's algorithm the
    # second waits for the gateway's delayed ACK, 40 ms a request.
    disable_nagle_algorithm = True

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def wait_open(port):
    for _ in range(100):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.connect()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"port {port} never opened")


def client(token_file, upstream, ports):
    token = open(token_file).read().strip()
    header, payload, sig = token.split(".")
    tokens = [
        token,
        f"{header}.{payload}.{sig[:-8]}AAAAAAAA",
        f"{b64(json.dumps({'alg': 'RS256', 'kid': 'attacker-kid'}).encode())}.{payload}.{sig}",
        "not-a-token",
        None,
    ]
    # The first request carries the valid token: an upstream not yet
    # listening would refuse it (502).
    wait_open(upstream)
    for n, port in enumerate(ports):
        wait_open(port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(3000):
            t = tokens[i % len(tokens)]
            headers = {"Authorization": f"Bearer {t}"} if t else {}
            if n == 1:
                headers["X-Original-Method"] = "GET"
                headers["X-Original-URI"] = f"/orders/{i}"
            conn.request("GET", f"/orders/{i}", headers=headers)
            r = conn.getresponse()
            r.read()
            if t == token and r.status != 200:
                sys.exit(f"port {port}: the valid token was refused ({r.status})")
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "upstream":
        http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Upstream).serve_forever()
    elif len(sys.argv) == 6 and sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]), [int(p) for p in sys.argv[4:]])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
