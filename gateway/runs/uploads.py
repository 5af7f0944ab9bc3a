"""Uploaded files for ``file`` parameters (Flask-Shell2HTTP's multi-file uploads).

Each file is stored under a generated name in a private per-run folder that
only the run-as account can read, size-capped while it is written; the audit
records its original name, size and sha256, and its path is what reaches argv.
The executor removes the folder when the run ends.  ``store_uploads`` is the
one way in, for the web form and Shell2HTTP alike: folder and files get the
run-as account together, so no surface can hand a command a file it cannot read.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from typing import IO

from werkzeug.datastructures import FileStorage

from gateway.audit import bounds
from gateway.catalogue.params import FileValue, ParamError
from gateway.platform.phrases import N_
from gateway.runners.shell import RunAs

CHUNK = 64 * 1024


def store_uploads(
    files: Mapping[str, FileStorage], max_bytes: int, run_as: RunAs | None
) -> tuple[dict[str, FileValue], str | None]:
    """Store one request's uploads (by param name) in a new per-run folder; (values, folder), or ({}, None).

    ``run_as`` is the account the run will use (``runs.run_as_account()``):
    the folder and every file in it become its own.
    :raise ParamError: a file larger than ``max_bytes``; nothing is left on disk then.
    """
    if not files:
        return {}, None
    folder = _make_run_folder(run_as)
    try:
        stored = {
            name: _store_upload(name, upload.stream, upload.filename or "upload", folder, max_bytes, run_as)
            for name, upload in files.items()
        }
    except BaseException:
        remove_folder(folder)
        raise
    return stored, folder


def _make_run_folder(run_as: RunAs | None) -> str:
    path = tempfile.mkdtemp(prefix="gateway-run-")
    if run_as is not None and os.geteuid() == 0:
        os.chown(path, run_as.uid, run_as.gid)
    return path


def _store_upload(
    field: str, stream: IO[bytes], original_name: str, folder: str, max_bytes: int, run_as: RunAs | None
) -> FileValue:
    """Copy an upload into ``folder`` under a random name; refuse it past ``max_bytes``."""
    digest = hashlib.sha256()
    size = 0
    path = os.path.join(folder, secrets.token_hex(16))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as target:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                target.close()
                os.unlink(path)
                raise ParamError(field, N_("file is larger than %(limit)s bytes", limit=max_bytes))
            digest.update(chunk)
            target.write(chunk)
    if run_as is not None and os.geteuid() == 0:
        os.chown(path, run_as.uid, run_as.gid)
    # The name is the caller's: recorded in the run's params, so bounded like every such text.
    safe_name = (
        bounds.caller_text(os.path.basename(original_name.replace("\\", "/")), bounds.FILE_NAME_CHARS) or "upload"
    )
    return FileValue(path=path, original_name=safe_name, size=size, sha256=digest.hexdigest())


def remove_folder(folder: str | None) -> None:
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
