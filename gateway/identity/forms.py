"""Sign-in and sign-out forms (Flask-WTF: every form carries a CSRF token).

Both forms read the submitted *form* fields only: Flask-WTF would otherwise
take a JSON body as form data, where a list, number or object in place of a
field's text reaches code that expects a string.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, Form, PasswordField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from gateway.identity.usernames import MAX_USERNAME_LENGTH, login_name_problem


def _lookup_safe_name(_form: Form, field: Field) -> None:
    problem = login_name_problem(field.data or "")
    if problem:
        raise ValidationError(_("The username contains control characters."))


def _browser_form_data() -> Any:
    """The submitted form fields on POST; nothing on other methods (the form then renders empty)."""
    return request.form if request.method == "POST" else None


class LoginForm(FlaskForm):
    username = StringField(
        _l("Username"), validators=[DataRequired(), Length(max=MAX_USERNAME_LENGTH), _lookup_safe_name]
    )
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formdata", _browser_form_data())
        super().__init__(**kwargs)


class LogoutForm(FlaskForm):
    """No fields: the CSRF token is the point (logout is a POST)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formdata", _browser_form_data())
        super().__init__(**kwargs)


class CodeForm(FlaskForm):
    """The second sign-in step: a six-digit app code or a recovery code, in one field."""

    code = StringField(_l("Code"), validators=[DataRequired(), Length(max=64)])

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formdata", _browser_form_data())
        super().__init__(**kwargs)
