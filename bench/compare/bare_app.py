"""The baseline: a bare Flask route that runs a fixed command with ``subprocess.run`` and returns its output.

No auth, no audit, no database: the floor any gateway is measured against in
``bench/compare.py``.  Served by gunicorn (1 worker x 8 threads), like the others.
"""

from __future__ import annotations

import subprocess

from compare_commands import ARGV
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/run/<name>")
def run(name: str):
    body = request.get_json(silent=True) or {}
    argv = [*ARGV[name], *[str(arg) for arg in body.get("args", [])]]
    done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    return jsonify(
        returncode=done.returncode,
        stdout=done.stdout.decode("utf-8", "replace"),
        stderr=done.stderr.decode("utf-8", "replace"),
    )
