"""What every room stands on: extensions, errors, headers, logs, metrics, health probes, lifecycle.

Also the small shared parts: blinker signals, wake-ups (in-process and PostgreSQL
LISTEN/NOTIFY), time helpers, public URLs from ``PUBLIC_BASE_URL``, the
identifier check for ids and names in URLs, one-time secrets (``reveal``).
Modules here hold no domain rules; a few observe the domains (metrics reads
run signals, health asks the executor) and import them lazily, inside functions.
"""
