"""Access: who may reach what. Two chokepoints, and nothing else.

``netguard`` is the network allowlist, the first hook of every request (and the
``Host`` check); ``policy`` is the one permission decision every surface asks
(web, API, Shell2HTTP, admin, CLI) before it shows or acts on a command or a
run. May import: ``platform``, ``db``, ``catalogue``, ``identity`` (the user a
decision is about); never the delivery layer (``web``, ``api``, ``admin``, ``cli``).
"""
