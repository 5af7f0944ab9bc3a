"""Flask-Shell2HTTP 1.9.1 as its README sets it up, for ``bench/compare.py``.

Runs in its own throwaway virtualenv (bench/.venvs/shell2http), never the
project's.  Executor defaults are Flask-Shell2HTTP's own.
"""

from __future__ import annotations

from compare_commands import ARGV
from flask import Flask
from flask_executor import Executor
from flask_shell2http import Shell2HTTP

app = Flask(__name__)
executor = Executor(app)
shell2http = Shell2HTTP(app=app, executor=executor, base_url_prefix="/commands/")
for name, argv in ARGV.items():
    shell2http.register_command(endpoint=name, command_name=" ".join(argv))
