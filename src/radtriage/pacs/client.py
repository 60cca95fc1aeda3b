"""Connecting to a PACS over DICOMweb: the URL, the credentials and plain-sentence errors.

Credentials come from the environment or from a file, never from the command line (which other users
of the machine can read in the process list) and never into any output or log:

- ``RADTRIAGE_PACS_USER`` and ``RADTRIAGE_PACS_PASSWORD``: HTTP basic auth;
- ``RADTRIAGE_PACS_TOKEN``: an HTTP bearer token (OAuth 2 / OpenID Connect);
- ``RADTRIAGE_PACS_CREDENTIALS_FILE``: a file of ``user=...``, ``password=...`` or ``token=...`` lines
  (``#`` starts a comment), readable by its owner only.

The protocol itself (QIDO-RS, WADO-RS, STOW-RS) is :mod:`dicomweb_client`'s; this module only builds
its session and turns the ``requests`` failures it raises into one sentence (:func:`describe_failure`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
from dicomweb_client.api import DICOMwebClient

USER_ENV, PASSWORD_ENV, TOKEN_ENV = "RADTRIAGE_PACS_USER", "RADTRIAGE_PACS_PASSWORD", "RADTRIAGE_PACS_TOKEN"
FILE_ENV = "RADTRIAGE_PACS_CREDENTIALS_FILE"
TIMEOUT = 60.0  # seconds per HTTP request: a large study over a slow link, yet a dead server is noticed
RETRIES = 3  # attempts on 408/429/503/504, with dicomweb-client's exponential back-off


class PacsError(Exception):
    """A PACS problem told in one sentence (no traceback, no credential, no patient identifier)."""


@dataclass(frozen=True)
class Credentials:
    """HTTP credentials for the PACS; ``repr`` never shows them.

    Attributes:
        user: basic-auth user name, or None.
        password: basic-auth password, or None.
        token: bearer token, or None (it wins over user/password when both are given).
        source: where they came from, for messages ("the environment", "the credentials file", "none").
    """

    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    source: str = "none"

    @property
    def kind(self) -> str:
        """"bearer", "basic" or "none"."""
        return "bearer" if self.token else "basic" if self.user else "none"


def _read_credentials_file(path: Path) -> dict[str, str]:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise PacsError(f"The credentials file named by {FILE_ENV} cannot be read.") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        raise PacsError(f"The credentials file named by {FILE_ENV} is readable by other users; "
                        "make it private (chmod 600) and run again.")
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or key.strip().lower() not in ("user", "password", "token"):
            # the line is not quoted: it may hold a secret
            raise PacsError(f"The credentials file named by {FILE_ENV} has a line that is not "
                            "user=..., password=... or token=...")
        values[key.strip().lower()] = value.strip()
    return values


def credentials_from_env(env: Mapping[str, str] | None = None) -> Credentials:
    """The PACS credentials: from the file named by ``$RADTRIAGE_PACS_CREDENTIALS_FILE``, else from
    ``$RADTRIAGE_PACS_TOKEN`` or ``$RADTRIAGE_PACS_USER`` / ``$RADTRIAGE_PACS_PASSWORD``, else none.

    Raises:
        PacsError: an unreadable, shared or malformed file, or a user without a password.
    """
    env = os.environ if env is None else env
    if env.get(FILE_ENV):
        values, source = _read_credentials_file(Path(env[FILE_ENV]).expanduser()), "the credentials file"
    else:
        values = {"user": env.get(USER_ENV, ""), "password": env.get(PASSWORD_ENV, ""), "token": env.get(TOKEN_ENV, "")}
        source = "the environment"
    creds = Credentials(values.get("user") or None, values.get("password") or None, values.get("token") or None, source)
    if creds.kind == "none":
        return Credentials()
    if creds.kind == "basic" and creds.password is None:
        raise PacsError(f"A PACS user name is set in {source} without a password.")
    return creds


def check_url(url: str) -> str:
    """The DICOMweb root URL, checked: http(s), a host, and no credentials inside it.

    Raises:
        PacsError: the URL is unusable (the message never repeats it: it may hold a password).
    """
    parts = urlsplit(url.strip())
    if parts.username or parts.password:
        raise PacsError(f"The PACS URL must not hold credentials; set {USER_ENV} and {PASSWORD_ENV} "
                        f"(or {TOKEN_ENV}) in the environment instead.")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError("The PACS URL must be an http:// or https:// DICOMweb root, "
                        "e.g. http://127.0.0.1:8042/dicom-web.")
    return url.strip().rstrip("/")


def connect(url: str, credentials: Credentials | None = None) -> DICOMwebClient:
    """A DICOMweb client of the PACS at ``url`` (no request is made yet).

    Args:
        url: the DICOMweb root, checked by :func:`check_url`.
        credentials: None reads them from the environment (:func:`credentials_from_env`).

    Raises:
        PacsError: a bad URL or bad credentials settings.
    """
    url = check_url(url)
    creds = credentials_from_env() if credentials is None else credentials
    session = requests.Session()
    if creds.kind == "bearer":
        session.headers["Authorization"] = f"Bearer {creds.token}"
    elif creds.kind == "basic":
        session.auth = (creds.user or "", creds.password or "")
    client = DICOMwebClient(url, session=session, timeout=TIMEOUT)
    client.set_http_retry_params(max_attempts=RETRIES)
    return client


def host_of(url: str) -> str:
    """``host:port`` of a URL, for messages (never its path, query or user part)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def describe_failure(error: BaseException, url: str) -> str:
    """One sentence for a failed DICOMweb request (the URL's host only, never credentials or UIDs)."""
    host = host_of(url)
    if isinstance(error, PacsError):
        return str(error)
    if isinstance(error, requests.HTTPError) and error.response is not None:
        code = error.response.status_code
        if code == 401:
            return (f"The PACS at {host} refused the credentials (HTTP 401); check {USER_ENV} / {PASSWORD_ENV}, "
                    f"{TOKEN_ENV} or {FILE_ENV}.")
        if code == 403:
            return f"The PACS at {host} denied access (HTTP 403): these credentials may not do this."
        if code == 404:
            return f"The PACS at {host} does not know this resource (HTTP 404); is the URL its DICOMweb root?"
        return f"The PACS at {host} answered HTTP {code} ({error.response.reason or 'error'})."
    if isinstance(error, requests.Timeout):
        return f"The PACS at {host} did not answer within {TIMEOUT:.0f} seconds."
    if isinstance(error, requests.ConnectionError):
        return f"The PACS at {host} cannot be reached (connection refused or lost)."
    if isinstance(error, requests.RequestException):
        return f"The request to the PACS at {host} failed ({type(error).__name__})."
    return f"The PACS at {host} sent an answer that could not be read ({type(error).__name__})."

