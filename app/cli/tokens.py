"""`gridflow token`: bearer tokens for people and scripts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from app.auth.scopes import InvalidScope, parse_scope
from app.auth.tokens import STAFF, Role, issue_token
from app.cli.common import JSON_OPTION, CliError, print_json, settings


def issue(
    role: Annotated[Role, typer.Option(help="who the token speaks for")],
    subject: Annotated[
        str, typer.Option(help="resident id, worker id (as the API shows it), or operator id")
    ],
    ttl: Annotated[
        int | None, typer.Option(min=1, help="lifetime in seconds (default: auth.token_ttl_s)")
    ] = None,
    scope: Annotated[
        str | None,
        typer.Option(
            help="limit an operator or admin to district:CODE, street:CODE, community:CODE or "
            "department:CODE (default: the whole city)"
        ),
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print a signed bearer token.

    Example: gridflow token issue --role worker --subject w-33010600100101-1 --ttl 3600

    Example: gridflow token issue --role operator --subject ops-hu --scope street:330106001
    """
    reach = None
    if scope is not None:
        try:
            reach = parse_scope(scope)
        except InvalidScope as exc:
            raise CliError(f"--scope: {exc}") from exc
        if role not in STAFF:
            raise CliError(
                f"--scope: only operator and admin tokens carry a scope, not {role.value}"
            )
    s = settings()
    now = datetime.now(UTC)
    lifetime = ttl or s.auth.token_ttl_s
    token = issue_token(
        s.jwt_secret(),
        role=role,
        subject=subject,
        issuer=s.auth.issuer,
        audience=s.auth.audience,
        now=now,
        ttl_s=lifetime,
        scope=reach,
    )
    if as_json:
        expires = now + timedelta(seconds=lifetime)
        print_json(
            {
                "token": token,
                "role": role.value,
                "subject": subject,
                "scope": None if reach is None else str(reach),
                "expires_at": expires,
            }
        )
    else:
        print(token)


def group() -> typer.Typer:
    """The command group, built when the command line is read."""
    commands = typer.Typer(help="Bearer tokens.", no_args_is_help=True)
    commands.command("issue")(issue)
    return commands
