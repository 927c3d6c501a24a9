#!/bin/bash
# Solves the challenge: the three answers, and a chunked server on port 9000.
set -euo pipefail
cat > /root/framing.txt <<'TXT'
/products content-length
/feed chunked
/legacy close
TXT
cat > /root/pong.py <<'PY'
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked encoding does not exist in HTTP/1.0

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (b"ping\n", b"pong\n"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))  # size in hex, CRLF, data, CRLF
        self.wfile.write(b"0\r\n\r\n")  # a zero-size chunk ends the body


ThreadingHTTPServer(("0.0.0.0", 9000), Handler).serve_forever()
PY
systemd-run --quiet --unit=pong python3 /root/pong.py
