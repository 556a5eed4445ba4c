"""LiteLLM proxy custom auth: the proxy's API keys from a keys file in the format of `coe serve --keys`.

    general_settings:
      custom_auth: coe_keys_auth.user_api_key_auth     # this file, beside the proxy's config

The file named by `$COE_LITELLM_KEYS_FILE` (YAML or JSON) is a list of keys, or `{keys: [...]}`:

    - {name: team-a, key_env: TEAM_A_KEY, rpm: 60, tpm: 20000}   # the secret is in $TEAM_A_KEY
    - {name: batch, key_sha256: 9f86d0..., tpm: 200000}           # or given by its SHA-256 (hex)

A request must carry one of the keys as `Authorization: Bearer ...` (401 otherwise); LiteLLM enforces each
key's `rpm` and `tpm` (its `rpm_limit` / `tpm_limit`) in the proxy's memory, with no database: a 429 with
`Retry-After` over a limit. The file is read once, when the proxy loads its config; a file that cannot be used
stops the proxy with a message naming the file, the entry and the field.

Self-contained (PyYAML, which LiteLLM depends on, and the standard library), so it runs in LiteLLM's own
environment without coe-router installed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from pathlib import Path

import yaml
from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth

KEYS_FILE_ENV = "COE_LITELLM_KEYS_FILE"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_FIELDS = {"name", "key_env", "key_sha256", "rpm", "tpm"}


class KeysFileError(ValueError):
    pass


def _limit(where: str, entry: dict, field: str) -> int | None:
    value = entry.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KeysFileError(f"{where}: {field}: a whole number of at least 1, not {value!r}")
    return value


def load_keys(path: str | os.PathLike, environ: dict | None = None) -> list[dict]:
    """[{name, digest, rpm, tpm}] from the keys file, each secret read from its variable in `environ`."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise KeysFileError(f"{path}: cannot read the keys file: {str(exc).splitlines()[0]}") from None
    entries = raw.get("keys") if isinstance(raw, dict) else raw
    if not isinstance(entries, list) or not entries:
        raise KeysFileError(f"{path}: a keys file is a non-empty list of keys (or {{keys: [...]}})")
    keys, names = [], set()
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"{path}: keys[{index}]" + (f" ({name!r})" if isinstance(name, str) else "")
        if not isinstance(entry, dict):
            raise KeysFileError(f"{where}: an entry is a mapping with name, key_env or key_sha256, rpm, tpm")
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise KeysFileError(f"{where}: {unknown[0]}: unknown field")
        if not isinstance(name, str) or not _NAME.match(name):
            raise KeysFileError(f"{where}: name: letters, digits and _.:- (up to 64), not {name!r}")
        if name in names:
            raise KeysFileError(f"{where}: name: {name!r} is used twice")
        names.add(name)
        key_env, key_sha256 = entry.get("key_env"), entry.get("key_sha256")
        if (key_env is None) == (key_sha256 is None):
            raise KeysFileError(f"{where}: key_env, key_sha256: give exactly one of them")
        if key_env is not None:
            if not isinstance(key_env, str) or not _ENV.match(key_env):
                raise KeysFileError(f"{where}: key_env: a variable name, not {key_env!r}")
            secret = environ.get(key_env)
            if not secret:
                raise KeysFileError(f"{where}: key_env: the variable {key_env} is not set")
            digest = hashlib.sha256(secret.encode("utf-8")).digest()
        else:
            if not isinstance(key_sha256, str) or not _SHA256.match(key_sha256):
                raise KeysFileError(f"{where}: key_sha256: 64 hexadecimal digits")
            digest = bytes.fromhex(key_sha256)
        keys.append({"name": name, "digest": digest, "rpm": _limit(where, entry, "rpm"),
                     "tpm": _limit(where, entry, "tpm")})
    return keys


def _keys_from_environment() -> list[dict]:
    path = os.environ.get(KEYS_FILE_ENV)
    if not path:
        raise KeysFileError(f"{KEYS_FILE_ENV} is not set: it names the proxy's keys file")
    return load_keys(path)


KEYS = _keys_from_environment()


def match(api_key: str, keys: list[dict] = KEYS) -> dict | None:
    """The key whose secret `api_key` is; every key is compared in constant time, whichever matches."""
    presented = hashlib.sha256(api_key.encode("utf-8")).digest()
    found = None
    for key in keys:
        if hmac.compare_digest(presented, key["digest"]) and found is None:
            found = key
    return found


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    key = match(api_key or "")
    if key is None:
        raise Exception("unknown API key")  # LiteLLM answers 401
    return UserAPIKeyAuth(api_key=api_key, key_alias=key["name"], key_name=key["name"],
                          rpm_limit=key["rpm"], tpm_limit=key["tpm"])
