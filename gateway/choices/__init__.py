"""Parameters from data (DESIGN.md): a ``choice`` parameter's options read from a query command's result.

The rooms:

- ``lists``: one list, read from its source's result cache or by running the source as
  ``system:choices``; checking a command's values against their lists (``ChoiceLists``,
  installed for the runs engine, which checks every run with it);
- ``offered``: what a form, the API's command schema and the choices route are offered.

Which commands may be a source, and the shape of ``choices_from`` / ``multiple`` /
``depends_on``, are the catalogue's (``gateway.catalogue.sources``), checked at load.

May import ``access`` (the ``system:choices`` principal), ``catalogue``, ``db``,
``platform`` and ``runs`` (start, wait, the shared result cache); never the delivery
layer (``web``, ``api``, ``admin``, ``cli``), which uses the names re-exported here.
"""

from __future__ import annotations

from gateway.choices.lists import ChoiceLists, Options, init_app, lists
from gateway.choices.offered import ChoiceErrors, Offered, depends_chain, offered, requested

__all__ = [
    "ChoiceErrors",
    "ChoiceLists",
    "Offered",
    "Options",
    "depends_chain",
    "init_app",
    "lists",
    "offered",
    "requested",
]
