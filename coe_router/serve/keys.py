"""API keys of the service: a keys file names each caller, where its secret lives and its optional limits.

The file (YAML or JSON; `coe serve --keys FILE` or `$COE_KEYS_FILE`) is a list of keys, or `{keys: [...]}`:

    - name: team-a            # the label in metrics and logs; never the secret
      key_env: TEAM_A_KEY     # the environment variable holding the secret (the file holds no secret) ...
      rpm: 60                 # requests per minute (optional)
      tpm: 20000              # tokens per minute (optional)
    - name: batch
      key_sha256: 9f86d0...   # ... or the SHA-256 (hex) of the secret
      tpm: 100000

A file that cannot be used is one `ConfigError` naming the file, the entry and the field, so `coe serve` stops
before it listens. Secrets are kept only as SHA-256 digests, and a presented token is compared with every key's
digest in constant time (`hmac.compare_digest`, no early exit), so neither timing nor a heap dump gives a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coe_router.config import ConfigError
from coe_router.serve.auth import bearer

KEYS_FILE_ENV = "COE_KEYS_FILE"


class KeySpec(BaseModel):
    """One entry of the keys file, as written."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_secret(self) -> KeySpec:
        if (self.key_env is None) == (self.key_sha256 is None):
            raise ValueError("key_env, key_sha256: give exactly one of them (key_env names the variable that "
                             "holds the secret; key_sha256 is the secret's SHA-256 in hex)")
        return self


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeySpec] = Field(min_length=1)


@dataclass(frozen=True)
class ApiKey:
    """A caller the service knows: its name, the SHA-256 of its secret and its limits (None: unlimited)."""

    name: str
    digest: bytes = field(repr=False)
    rpm: int | None = None
    tpm: int | None = None


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


class KeyRing:
    """The keys a request may carry as `Authorization: Bearer <secret>`."""

    def __init__(self, keys: list[ApiKey]):
        self.keys = list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def match(self, header: str | None) -> ApiKey | None:
        """The key whose secret the header carries (scheme `Bearer`, any case), or None."""
        secret = bearer(header)
        if secret is None:
            return None
        presented = digest(secret)
        found = None
        for key in self.keys:  # every key is compared, whichever matches
            if hmac.compare_digest(presented, key.digest) and found is None:
                found = key
        return found


def _where(spec_index: int, raw: object) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"keys[{spec_index}]" + (f" ({name!r})" if isinstance(name, str) else "")


def _problem(path: Path, raw: dict, exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    loc = list(error["loc"])
    entries = raw.get("keys") if isinstance(raw.get("keys"), list) else []
    where = ""
    if len(loc) >= 2 and loc[0] == "keys" and isinstance(loc[1], int):
        where = _where(loc[1], entries[loc[1]] if loc[1] < len(entries) else None)
        loc = loc[2:]
    else:
        where = ".".join(map(str, loc))
        loc = []
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    field_name = ".".join(map(str, loc))
    return ConfigError(f"{path}: {where}{': ' + field_name if field_name else ''}: {message}")


def load_keys(path: str | os.PathLike, environ: dict[str, str] | None = None,
              reserved: tuple[str, ...] = ()) -> KeyRing:
    """The keys of a keys file, each secret read from its variable in `environ` (default: the process's).
    `reserved` are names the file may not use (the single API token's label)."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the keys file: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          f"{str(exc).splitlines()[0]}") from None
    raw = {"keys": raw} if isinstance(raw, list) else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a keys file is a list of keys (or {{keys: [...]}})")
    try:
        specs = KeysFile.model_validate(raw).keys
    except ValidationError as exc:
        raise _problem(path, raw, exc) from None
    keys, names, digests = [], set(reserved), {}
    for index, spec in enumerate(specs):
        where = f"{path}: {_where(index, spec.model_dump())}"
        if spec.name in names:
            raise ConfigError(f"{where}: name: {spec.name!r} is used twice (or is the API token's label)")
        names.add(spec.name)
        if spec.key_env is not None:
            secret = environ.get(spec.key_env, "").strip()
            if not secret:
                raise ConfigError(f"{where}: key_env: the environment variable {spec.key_env} is not set")
            key_digest = digest(secret)
        else:
            key_digest = bytes.fromhex(spec.key_sha256)
        if key_digest in digests:
            raise ConfigError(f"{where}: key_env, key_sha256: the same secret as {digests[key_digest]!r}")
        digests[key_digest] = spec.name
        keys.append(ApiKey(spec.name, key_digest, spec.rpm, spec.tpm))
    return KeyRing(keys)


def service_keys(keys_file: str | os.PathLike | None, token_env: str | None,
                 environ: dict[str, str] | None = None) -> KeyRing | None:
    """The keys `coe serve` accepts, or None when no keys file is given (then `$token_env` alone guards it, as
    before). With a keys file, the single token of `$token_env`, when that is set too, stays valid as one more
    key without limits, labelled with the variable's name (so clients and scrapers already using it keep
    working while they move to named keys)."""
    environ = os.environ if environ is None else environ
    keys_file = keys_file or environ.get(KEYS_FILE_ENV) or None
    if keys_file is None:
        return None
    token = environ.get(token_env, "").strip() if token_env else ""
    ring = load_keys(keys_file, environ, reserved=(token_env,) if token else ())
    if token:
        token_digest = digest(token)
        if any(hmac.compare_digest(token_digest, key.digest) for key in ring.keys):
            raise ConfigError(f"{keys_file}: a key has the same secret as ${token_env}")
        ring.keys.append(ApiKey(token_env, token_digest))
    return ring
