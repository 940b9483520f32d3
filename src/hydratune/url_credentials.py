"""Credentials inside URL-valued settings, kept out of everything a run records.

A user may give a setting as `https://user:token@host/...` (`train.mlflow.tracking_uri`,
`method.vllm_server_url`). What hydratune writes or sends elsewhere (spec.json, plan.json,
run.json and its command, checkpoint markers, the trainer's arguments as TensorBoard and W&B log
them, MLflow parameters, mlflow_run.json, the model card) holds the URL without its `user:token@`.
The process that needs the credentials gets them another way: MLflow from its own environment
variables, the training ranks from their environment (`SECRET_SETTINGS`, set only while they
run), TRL's vLLM client only while the trainer is built, never from a file.

The rule: a URL token is `scheme://` and the characters after it up to the next whitespace; its
credentials are everything from `//` up to the LAST `@` of that token (unless that part starts
with `/`, as in `sqlite:///dir/db`, which has no authority). Users type passwords holding `@` or
`/` unencoded (`https://alice:p@ss/w0rd@host`), and a rule that stops at the first `@` or `/`
leaves part of them in place. The price: an `@` in a path or query (`https://host/a@b`) is taken
for the end of credentials and the URL is cut to `https://b`; leaking nothing comes first.
Whitespace inside a password must be percent-encoded (%20). `split_credentials` and
`strip_credentials` use this one rule, so what is sent is exactly what is recorded.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from typing import Any, Iterator

# scheme://userinfo@ anywhere in a text (a command line, a setting, a YAML file): greedy up to the
# token's last `@`, never across whitespace (see the module's docstring).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>(?:[^\s/]\S*)?)@")
# The ranks a run starts read their settings with credentials from here (a JSON of dotted key -> value).
SECRET_SETTINGS = "HYDRATUNE_SECRET_SETTINGS"


def has_credentials(text: str) -> bool:
    return bool(_USERINFO.search(text))


def strip_credentials(text: str) -> str:
    """`text` with every URL's `user:password@` removed."""
    return _USERINFO.sub(lambda m: m.group("scheme"), text)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(url without credentials, user, password), both as typed (percent-escapes kept); the url part is
    `strip_credentials(url)`."""
    match = _USERINFO.search(url)
    if match is None:
        return url, None, None
    user, colon, password = match.group("userinfo").partition(":")
    return strip_credentials(url), user, password if colon else None


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


@contextmanager
def passed_to_ranks(settings: dict[str, str]) -> Iterator[None]:
    """Put the settings with credentials where the ranks started inside the block read them (this
    process's environment), and take them away after: a sweep runs its jobs in one process, and a
    later job must not inherit an earlier job's URLs."""
    os.environ.pop(SECRET_SETTINGS, None)
    if settings:
        os.environ[SECRET_SETTINGS] = json.dumps(settings)
    try:
        yield
    finally:
        os.environ.pop(SECRET_SETTINGS, None)


@contextmanager
def lent_credentials(holder: Any, attribute: str, url: str | None) -> Iterator[None]:
    """`holder.attribute` set to `url` (with its credentials) inside the block, back to it without them
    after: a trainer's arguments hold the stripped URL, which its loggers record, and its client is
    built with the whole one."""
    setattr(holder, attribute, url)
    try:
        yield
    finally:
        setattr(holder, attribute, strip_credentials(url) if url else url)


def restore_from_environment(data: dict[str, Any]) -> dict[str, Any]:
    """A spec dict read from spec.json, with the settings the launching process passed in the environment."""
    for key, value in json.loads(os.environ.get(SECRET_SETTINGS) or "{}").items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return data
