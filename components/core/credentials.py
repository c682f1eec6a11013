"""Labeller tokens: the credential that ``POST /feedback`` (a write path into the training
data) asks for, even on loopback.

As Jupyter does with its token, the first ``mloop serve`` of a workspace writes one
(``.mloop/labellers.json``, mode 0600: ``{name: token}``) and says where it is; a
labelling process sends it as ``Authorization: Bearer <token>`` to /feedback, and
each label is logged with the token's name, so ``mloop harvest --source NAME`` can
take only chosen labellers' labels. More labellers are more entries of the file.
``MLOOP_LABELLER_TOKEN`` adds one (named ``env``) where no file can be written (a
container with its secret in the environment).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")  # a labeller's name: it lands in the log
MIN_TOKEN = 16  # characters of a labeller's token, from the file or the environment
ENV_NAME = "env"  # the name of MLOOP_LABELLER_TOKEN's labeller


class CredentialError(ValueError):
    """The labeller file cannot be read or holds something that is no token."""


def ensure_labeller_file(path: Path) -> bool:
    """Write ``path`` with one labeller (``default``) unless it exists; True if written.

    Created with mode 0600 from the start (never world-readable, not even for a moment).
    """
    path = Path(path)
    if path.exists():
        read_labellers(path)  # a broken file is named now, not at the first label
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"default": secrets.token_urlsafe(32)}, out, indent=2)
        out.write("\n")
    return True


def read_labellers(path: Path | None) -> dict[str, str]:
    """``{name: token}`` of the labeller file (``{}`` where there is none)."""
    if path is None or not Path(path).exists():
        return {}
    path = Path(path)
    if path.is_symlink():
        raise CredentialError(f"{path}: a symbolic link; the labeller file is never followed")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CredentialError(f"{path}: not a readable labeller file ({err})") from None
    if not isinstance(raw, dict):
        raise CredentialError(f"{path}: expected an object {{name: token}}")
    for name, token in raw.items():
        if not NAME.match(str(name)) or not isinstance(token, str) or len(token) < MIN_TOKEN:
            raise CredentialError(
                f"{path}: labeller {str(name)[:40]!r} needs a name of letters, digits, '_.-'"
                f" and a token of at least {MIN_TOKEN} characters"
            )
    return raw


def labeller_tokens(path: Path | None, env_token: str | None) -> dict[str, str]:
    """``{token: name}`` of every labeller the service accepts."""
    tokens = {token: name for name, token in read_labellers(path).items()}
    if env_token:
        if len(env_token) < MIN_TOKEN:
            raise CredentialError(f"MLOOP_LABELLER_TOKEN has {len(env_token)} characters: a"
                                  f" labeller token needs at least {MIN_TOKEN}, as the"
                                  " labeller file's do")  # fmt: skip
        tokens[env_token] = ENV_NAME
    return tokens


def first_token(path: Path | None, env_token: str | None = None) -> str | None:
    """A token to label with (``mloop traffic --feedback``): the environment's, else the
    file's first."""
    if env_token:
        return env_token
    return next(iter(read_labellers(path).values()), None)
