"""Process groups: kill one, tell whether it is alive, tell whether it still belongs to a run.

Every command leads its own process group (the shell runner starts it in a new
session), so a group id is what a timeout, a cancel and the clean-up after a
dead worker act on.  /proc is read in one place (``group_members``).
"""

from __future__ import annotations

import os


def kill_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False when it is gone (or not ours to signal)."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running.

    A killed member stays a zombie until its new parent reaps it, and not
    every PID 1 in a container does; a group of zombies only is gone.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    members = live_group_members(pgid)
    return members is None or bool(members)


def group_members(pgid: int) -> list[tuple[int, bytes]] | None:
    """(pid, state) of every process in the group, zombies included, from /proc (None where there is no /proc)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    members = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # exited while we looked
        # "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and fields[2].isdigit() and int(fields[2]) == pgid:
            members.append((int(entry), fields[0]))
    return members


def live_group_members(pgid: int) -> list[int] | None:
    """Pids of the group's members that are not zombies (None where there is no /proc)."""
    members = group_members(pgid)
    return None if members is None else [pid for pid, state in members if state != b"Z"]


def belongs_to_run(pgid: int, run_id: str) -> bool:
    """Whether a member of the group still carries the run's ``GATEWAY_RUN_ID`` (pids get reused).

    Checked before a recorded group is killed.  The group's leader may be gone
    (it died with its worker): any member will do, since every process the
    command started inherited ``GATEWAY_RUN_ID``.
    """
    marker = f"GATEWAY_RUN_ID={run_id}".encode()
    for pid, _state in group_members(pgid) or []:
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if marker in handle.read().split(b"\0"):
                    return True
        except OSError:
            continue
    return False
