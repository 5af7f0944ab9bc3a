"""Languages: which one a page is in, the catalogues its strings come from, numbers in its format.

The rooms:

- ``choice``: the page's language (English for what machines read: the API, Shell2HTTP, health,
  metrics, streams; else the user's stored choice, else the cookie, else
  ``Accept-Language``, else English), among ``LANGUAGES`` (config: ``GATEWAY_LANGUAGES``, a subset
  of ``config.SHIPPED_LANGUAGES``); each language's name in itself, for the selects;
- ``formatting``: numbers per language (Babel through Flask-Babel) and the counted phrases (ngettext);
- ``scripts``: the strings the small scripts show, rendered by the server in the page's language;
- ``views``: ``POST /language`` (signed out: a cookie) and ``POST /account/language`` (stored, audited).

Template helpers: ``_()``/``ngettext()`` (Flask-Babel's), the filters ``number`` and ``localized``
(a catalogue text, ``gateway.catalogue.texts``), the globals ``count_runs`` and ``script_messages``,
and ``page_language`` / ``language_choices`` in every template.

Translations live in ``translations/`` (gettext ``.po``; the ``.mo`` files are built by ``make``,
never committed). May import ``config``, ``gateway.platform``, ``gateway.db``, ``gateway.audit``,
``gateway.identity`` (the safe ``next``), ``gateway.catalogue.texts`` and ``gateway.web.shared``'s
``STATUS_LABELS`` (the scripts' run-state names, read when rendering); the other rooms translate
through ``flask_babel``'s functions and never import this package.
"""

from __future__ import annotations

from flask import Flask
from flask_babel import Babel

from config import PROJECT_ROOT

TRANSLATIONS = PROJECT_ROOT / "translations"


def init_app(app: Flask) -> None:
    """Flask-Babel with our catalogues and chooser; the language routes; the template helpers."""
    from gateway.catalogue.texts import localized
    from gateway.i18n import choice, formatting, scripts, views

    app.config.setdefault("BABEL_DEFAULT_LOCALE", "en")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    Babel(app, locale_selector=choice.page_language)
    app.register_blueprint(views.bp)
    app.add_template_filter(formatting.number, "number")
    app.add_template_global(formatting.count_runs, "count_runs")
    app.add_template_filter(localized, "localized")  # a catalogue text in the page's language
    app.add_template_global(scripts.script_messages, "script_messages")
    app.context_processor(choice.template_values)
