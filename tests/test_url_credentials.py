"""The credentials rule of url_credentials.py: a URL token's userinfo ends at its LAST `@`."""

from __future__ import annotations

import pytest

from hydratune.url_credentials import has_credentials, split_credentials, strip_credentials

# (as typed, as recorded, user, password)
CASES = [
    ("https://alice:tok@host:5000/x", "https://host:5000/x", "alice", "tok"),
    ("https://token@host", "https://host", "token", None),
    ("https://:tok@host", "https://host", "", "tok"),
    ("https://user:p@ss@host", "https://host", "user", "p@ss"),  # was https://ss@host
    ("https://alice:p@ss/w0rdZQX@mlflow.example:5000", "https://mlflow.example:5000", "alice", "p@ss/w0rdZQX"),
    ("https://alice:pass/word@host/path", "https://host/path", "alice", "pass/word"),  # was kept whole
    ("https://alice:p%40ss@host", "https://host", "alice", "p%40ss"),  # escapes kept for the client to read
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000", None, None),
    ("sqlite:////tmp/me@work/mlflow.db", "sqlite:////tmp/me@work/mlflow.db", None, None),  # no authority
    ("file:///data/a@b", "file:///data/a@b", None, None),
    # The price of the rule: an `@` in a path is taken for the end of credentials.
    ("https://host/user@example", "https://example", "host/user", None),
]


@pytest.mark.parametrize(("typed", "recorded", "user", "password"), CASES)
def test_split_and_strip_follow_one_rule(typed, recorded, user, password):
    assert strip_credentials(typed) == recorded
    assert split_credentials(typed) == (recorded, user, password)
    assert has_credentials(typed) == (user is not None)


def test_in_a_command_line_each_token_is_stripped_alone():
    typed = (
        "train 'train.mlflow.tracking_uri=https://alice:p@ss/w0rdZQX@mlflow.example:5000' "
        "method.vllm_server_url=https://me:a@b@vllm:8000 dataset.system_prompt='mail me@example.com'"
    )
    assert strip_credentials(typed) == (
        "train 'train.mlflow.tracking_uri=https://mlflow.example:5000' "
        "method.vllm_server_url=https://vllm:8000 dataset.system_prompt='mail me@example.com'"
    )


def test_yaml_and_shell_quoting_of_a_password_with_quotes_leaks_nothing():
    assert strip_credentials("uri: 'https://al:it''s@host'\n") == "uri: 'https://host'\n"
    assert strip_credentials("""'uri=https://al:it'"'"'s@host'""") == "'uri=https://host'"
