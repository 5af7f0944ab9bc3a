"""Unbound Flask extensions, created once so models and blueprints import them without cycles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask_limiter import Limiter
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase

from gateway.platform.addresses import client_address


class Base(DeclarativeBase):
    """Declarative base shared by every model (one metadata for Alembic)."""


# expire_on_commit off: a request keeps reading the objects it loaded after a
# write transaction commits, instead of silently re-querying them.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=client_address)

# Models subclass `Model`, which is `db.Model` at run time. Flask-SQLAlchemy builds that class
# dynamically, so a type checker cannot see it as a base class; to the checker it is what it is
# made of: our declarative base plus Flask-SQLAlchemy's model mixin (the `query` property).
if TYPE_CHECKING:
    from typing import ClassVar

    from flask_sqlalchemy.model import Model as _FlaskModel
    from sqlalchemy import Table

    class Model(_FlaskModel, Base):
        """The static view of ``db.Model``.

        Every model maps one table (none maps a join or a select), so ``__table__`` is a
        ``Table``, not SQLAlchemy's general ``FromClause``.
        """

        __table__: ClassVar[Table]

else:
    Model = db.Model
