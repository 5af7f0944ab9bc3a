"""The staff pages' blueprint, apart from the package so each view module can import it without a circle."""

from __future__ import annotations

from flask import Blueprint

from gateway.web import shared, words

bp = Blueprint("web", __name__)

bp.add_app_template_filter(shared.clock, "clock")
bp.add_app_template_filter(shared.stamp, "stamp")
bp.add_app_template_filter(shared.ago, "ago")
bp.add_app_template_filter(shared.duration, "duration")
bp.add_app_template_filter(shared.cell_class, "cell_class")
bp.add_app_template_global(shared.badge, "badge")
bp.add_app_template_global(words.approval_state, "approval_state")
