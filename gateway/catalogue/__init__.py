"""The command catalogue: what may run, as reviewed YAML validated strictly before anything can run.

The rooms:

- ``model``: ``Command``, ``Datasource`` and the loaded ``Catalogue``, each valid by construction;
- ``approval``: a command's ``approval:`` (approver groups, how many, how long a request waits);
- ``params``: a parameter's declaration (``ParamSpec``) and the default-deny validators of values;
- ``values``: a command's values as a caller sent them, validated, masked and keyed (``collect_errors``);
- ``schedule``: a ``schedules:`` entry (cron through ``cronsim``, time zone through ``zoneinfo``);
- ``sources``: which command may fill a parameter's choices (``choices_from``, ``depends_on``), checked at load;
- ``notification``: a ``notifications:`` entry (webhook, email, Slack; the outcomes it is sent on);
- ``loader``: reading and checking the YAML file (``load_catalogue``, ``parse_catalogue``);
- ``argv``: a shell command's argv from its template and the validated values;
- ``switches``: the catalogue this process loaded, reloads, and the runtime kill switch.

May import ``config``, ``gateway.db``, ``gateway.platform`` and (``switches``, for the kill
switch's audit events) ``gateway.audit``; never runs, access or the delivery layer.  Other
rooms use the names re-exported below; the submodules import each other, never this package.
"""

from __future__ import annotations

from gateway.catalogue.approval import Approval
from gateway.catalogue.loader import load_catalogue, parse_catalogue
from gateway.catalogue.model import Catalogue, CatalogueError, Command, Datasource, Target
from gateway.catalogue.notification import Notification
from gateway.catalogue.params import ParamSpec
from gateway.catalogue.schedule import Schedule

__all__ = [
    "Approval",
    "Catalogue",
    "CatalogueError",
    "Command",
    "Datasource",
    "Notification",
    "ParamSpec",
    "Schedule",
    "Target",
    "load_catalogue",
    "parse_catalogue",
]
