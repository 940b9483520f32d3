"""Upload a model directory (merged/ or adapter/, with its model card) to the Hugging Face Hub.

The token is huggingface_hub's own: $HF_TOKEN or the user's `hf auth login`. hydratune
never reads, prints or writes it. Every failure is one message naming the endpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydratune.errors import HydratuneError


class PushError(HydratuneError):
    """The push could not happen (offline, no token, no access, no network): the card is written, push later."""

    exit_code = 1


class PushRefused(PushError):
    """The push would publish something other than what was asked (a public repository for --private)."""

    exit_code = 2


def push_folder(folder: Path, repo_id: str, *, private: bool, message: str) -> str:
    """Create the repository if needed and make it hold exactly `folder`; returns the commit's URL.

    An existing repository keeps its visibility (`create_repo(exist_ok=True)` does not change it),
    so `private` meeting a public one is refused before anything is uploaded. Files of an earlier
    push that `folder` no longer has (a model now sharded leaves its old model.safetensors, which
    from_pretrained would load) are deleted in the same commit.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalTokenNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    endpoint = constants.ENDPOINT
    where = f"{endpoint}/{repo_id}"
    api = HfApi()
    try:
        try:
            public = not api.repo_info(repo_id, repo_type="model").private
        except RepositoryNotFoundError:  # a new repository: created with the visibility asked for
            public = None
        if private and public:
            raise PushRefused(
                f"{where} exists and is public, and --private does not change an existing repository's "
                f"visibility: make it private first (its settings page, {where}/settings), or push without "
                "--private to publish publicly"
            )
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), commit_message=message, repo_type="model", delete_patterns=["*"]
        )  # .gitattributes is always kept
    except PushRefused:
        raise
    except OfflineModeIsEnabled:
        raise PushError(
            f"cannot push to {where}: HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE')} is set. "
            f"The model card is written; push from a machine that reaches {endpoint}, with HF_HUB_OFFLINE unset"
        ) from None
    except LocalTokenNotFoundError:
        raise PushError(
            f"cannot push to {where}: no Hugging Face token; log in with `hf auth login` or set HF_TOKEN"
        ) from None
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        hint = {
            401: "the token is not valid: log in again with `hf auth login`",
            403: f"the token cannot write to {repo_id}: use a token with write access to that namespace",
        }.get(status, str(error).splitlines()[0])
        raise PushError(f"cannot push to {where}: HTTP {status}: {hint}") from None
    except Exception as error:  # the HTTP client's connection errors: DNS, refused, timeout, proxy
        raise PushError(
            f"cannot reach {endpoint} to push {repo_id} ({type(error).__name__}: {error}); "
            "check the network, or HF_ENDPOINT if you use a mirror"
        ) from None
    return str(getattr(commit, "commit_url", commit))
