#!/usr/bin/env python3
"""The demo's notification receiver: takes ward's webhook POSTs on
127.0.0.1:PORT and prints one line per notification, as a person reads
it (the demo shows the last one on its status line). Only for the demo:
a real deployment points `webhook` or `alertmanager` at its own receivers.
"""
import json
import sys
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer


def describe(body):
    kind = body.get("kind", "?")
    name = body.get("alertname", "?")
    device = body.get("device") or {}
    agent = body.get("agent") or {}
    what = device.get("name") or agent.get("id") or "?"
    site = device.get("site") or agent.get("site") or "?"
    return f"{kind} {name} {what} ({site}), severity {body.get('severity', '?')}"


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        try:
            line = describe(json.loads(self.rfile.read(length)))
            self.send_response(200)
        except (ValueError, AttributeError) as error:
            line = f"unreadable notification: {error}"
            self.send_response(400)
        self.end_headers()
        print(f"{datetime.now():%H:%M:%S} {line}", flush=True)

    def log_message(self, *_):
        pass


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
