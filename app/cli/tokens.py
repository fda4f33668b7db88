"""`gridflow token`: bearer tokens for people and scripts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from app.auth.tokens import Role, issue_token
from app.cli.common import JSON_OPTION, print_json, settings


def issue(
    role: Annotated[Role, typer.Option(help="who the token speaks for")],
    subject: Annotated[
        str, typer.Option(help="resident id, worker id (as the API shows it), or operator id")
    ],
    ttl: Annotated[
        int | None, typer.Option(min=1, help="lifetime in seconds (default: auth.token_ttl_s)")
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print a signed bearer token.

    Example: gridflow token issue --role worker --subject w-33010600100101-1 --ttl 3600
    """
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
    )
    if as_json:
        expires = now + timedelta(seconds=lifetime)
        print_json({"token": token, "role": role.value, "subject": subject, "expires_at": expires})
    else:
        print(token)


def group() -> typer.Typer:
    """The command group, built when the command line is read."""
    commands = typer.Typer(help="Bearer tokens.", no_args_is_help=True)
    commands.command("issue")(issue)
    return commands
