"""``manage.py groups ...`` and ``manage.py grants ...``."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from gateway.catalogue.switches import current_catalogue
from gateway.cli.common import fail, operator_actor
from gateway.identity import groups, idp_links
from gateway.identity.accounts import AccountError


@click.group("groups")
def groups_group() -> None:
    """Groups of users (grants are given to groups)."""


@groups_group.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the group is for.")
@with_appcontext
def create(name: str, description: str) -> None:
    """Create a group."""
    try:
        group = groups.create_group(name, description=description, actor=operator_actor())
    except AccountError as exc:
        fail(str(exc))
    click.echo(f"created group {group.name}", err=True)


@groups_group.command("list")
@with_appcontext
def list_groups() -> None:
    """List groups: name, members, linked IdP groups (a JSON list: IdP names may hold commas)."""
    links = idp_links.links_by_group()
    for group in groups.list_groups():
        members = ",".join(sorted(member.user.username for member in group.members))
        click.echo(f"{group.name}\t{members}\t{json.dumps(links.get(group.name, []), ensure_ascii=False)}")


@groups_group.command("link-idp")
@click.argument("group")
@click.argument("idp_group")
@with_appcontext
def link_idp(group: str, idp_group: str) -> None:
    """Map the identity provider's IDP_GROUP (e.g. /ops/admins or an object id) to GROUP."""
    try:
        linked = idp_links.link(group, idp_group, actor=operator_actor())
    except AccountError as exc:
        fail(str(exc))
    click.echo(f"{idp_group.strip()} {'linked to' if linked else 'was already linked to'} {group}", err=True)


@groups_group.command("unlink-idp")
@click.argument("group")
@click.argument("idp_group")
@with_appcontext
def unlink_idp(group: str, idp_group: str) -> None:
    """Remove the link from the identity provider's IDP_GROUP to GROUP (memberships follow at the next sign-in)."""
    try:
        unlinked = idp_links.unlink(group, idp_group, actor=operator_actor())
    except AccountError as exc:
        fail(str(exc))
    click.echo(f"{idp_group} {'unlinked from' if unlinked else 'was not linked to'} {group}", err=True)


@groups_group.command("add-member")
@click.argument("group")
@click.argument("user")
@with_appcontext
def add_member(group: str, user: str) -> None:
    """Add USER to GROUP."""
    try:
        added = groups.add_member(group, user, actor=operator_actor())
    except AccountError as exc:
        fail(str(exc))
    click.echo(f"{user} {'added to' if added else 'already in'} {group}", err=True)


@groups_group.command("remove-member")
@click.argument("group")
@click.argument("user")
@with_appcontext
def remove_member(group: str, user: str) -> None:
    """Remove USER from GROUP."""
    try:
        removed = groups.remove_member(group, user, actor=operator_actor())
    except AccountError as exc:
        fail(str(exc))
    click.echo(f"{user} {'removed from' if removed else 'was not in'} {group}", err=True)


@click.group("grants")
def grants_group() -> None:
    """Which groups may run which commands."""


@grants_group.command("add")
@click.argument("group")
@click.argument("command")
@with_appcontext
def add(group: str, command: str) -> None:
    """Let GROUP run COMMAND."""
    try:
        added = groups.add_grant(group, command, actor=operator_actor(), known_commands=current_catalogue().commands)
    except AccountError as exc:
        fail(str(exc))
    click.echo(f"{group} {'may now run' if added else 'could already run'} {command}", err=True)


@grants_group.command("remove")
@click.argument("group")
@click.argument("command")
@with_appcontext
def remove(group: str, command: str) -> None:
    """Stop GROUP running COMMAND."""
    try:
        removed = groups.remove_grant(group, command, actor=operator_actor())
    except AccountError as exc:
        fail(str(exc))
    click.echo(f"{group} {'may no longer run' if removed else 'had no grant for'} {command}", err=True)


@grants_group.command("list")
@with_appcontext
def list_grants() -> None:
    """List grants; a command missing from the catalogue is marked stale."""
    known = current_catalogue().commands
    for group, command in groups.list_grants():
        stale = "" if command in known else "\t(stale: not in the catalogue)"
        click.echo(f"{group}\t{command}{stale}")
