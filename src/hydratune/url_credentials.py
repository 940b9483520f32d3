"""Credentials inside URL-valued settings, kept out of everything a run records.

A user may give a setting as `https://user:token@host/...` (`train.mlflow.tracking_uri`,
`method.vllm_server_url`). What hydratune writes or sends elsewhere (spec.json, plan.json,
run.json and its command, MLflow parameters, mlflow_run.json, the model card) holds the URL
without its `user:token@`. The process that needs the credentials gets them another way:
MLflow from its own environment variables, the training ranks from their environment
(`SECRET_SETTINGS`), never from a file.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# scheme://userinfo@ anywhere in a text (a command line, a setting)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s:]*(?::[^/@\s]*)?)@")
# The ranks a run starts read their settings with credentials from here (a JSON of dotted key -> value).
SECRET_SETTINGS = "HYDRATUNE_SECRET_SETTINGS"


def has_credentials(text: str) -> bool:
    return bool(_USERINFO.search(text))


def strip_credentials(text: str) -> str:
    """`text` with every URL's `user:password@` removed."""
    return _USERINFO.sub(lambda m: m.group("scheme"), text)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(url without credentials, user, password)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), parts.username, parts.password


def without_credentials(data: Any) -> Any:
    """A copy of a JSON-like value (a spec as a dict, a record) with every string stripped of URL credentials."""
    if isinstance(data, dict):
        return {key: without_credentials(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [without_credentials(value) for value in data]
    return strip_credentials(data) if isinstance(data, str) else data


def settings_with_credentials(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted key -> value of the settings in a spec dict whose value holds URL credentials."""
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(settings_with_credentials(value, f"{prefix}{key}."))
        elif isinstance(value, str) and has_credentials(value):
            out[f"{prefix}{key}"] = value
    return out


def pass_to_ranks(settings: dict[str, str]) -> None:
    """Put the settings with credentials where the ranks this process starts read them (its environment)."""
    if settings:
        os.environ[SECRET_SETTINGS] = json.dumps(settings)


def restore_from_environment(data: dict[str, Any]) -> dict[str, Any]:
    """A spec dict read from spec.json, with the settings the launching process passed in the environment."""
    for key, value in json.loads(os.environ.get(SECRET_SETTINGS) or "{}").items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return data
