"""Opening the object store a URI names, with obstore (one Rust client for S3, GCS, Azure and HTTP).

Credentials are never in the spec: obstore reads the standard environment of each cloud (``AWS_ACCESS_KEY_ID``,
``AWS_SESSION_TOKEN``, ``AWS_WEB_IDENTITY_TOKEN_FILE`` for IRSA, the instance and container metadata endpoints;
``GOOGLE_APPLICATION_CREDENTIALS`` or the gcloud application-default file, the GKE metadata server for workload
identity; ``AZURE_STORAGE_ACCOUNT_NAME``/``AZURE_STORAGE_ACCOUNT_KEY``/``AZURE_STORAGE_SAS_TOKEN``,
``AZURE_FEDERATED_TOKEN_FILE`` for workload identity). What object_store does not read, the AWS shared profile files
(``AWS_PROFILE``, ``~/.aws/credentials``, ``~/.aws/config``), is read here with :mod:`configparser`, so a laptop with
``aws configure`` done works as the AWS CLI does. ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` point ``s3://`` at any
S3-compatible server (MinIO, Ceph, GCS interoperability); an ``http://`` endpoint is allowed because it was asked for.
The same holds for the other clouds' endpoints: ``AZURE_STORAGE_ENDPOINT`` (or ``AZURE_STORAGE_USE_EMULATOR`` with
``AZURITE_BLOB_STORAGE_URL``) for Azurite or a private endpoint, ``GOOGLE_BASE_URL`` or the ``STORAGE_EMULATOR_HOST``
that Google's own clients read (an emulator such as fake-gcs-server, reached without credentials) for GCS. The GCS and
Azure variables are read from the ``env`` mapping given, as the AWS ones are, so a caller's mapping is the one used.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubeinfer.storage.errors import StorageError

__all__ = ["Opened", "open_store"]


@dataclass(frozen=True, slots=True)
class Opened:
    """A store and the path of the object (or folder prefix) in it; ``listable`` is False for plain HTTP."""

    store: Any
    path: str
    listable: bool
    kind: str  # s3 | gcs | azure | http


# The variables object_store reads for GCS and Azure (obstore takes their names as config keys; an unknown key is an
# error, hence the lists), passed from ``env`` so that they need not be in the process environment
_GCS_VARS = (
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_BASE_URL",
    "GOOGLE_BEARER_TOKEN",
    "GOOGLE_SKIP_SIGNATURE",
)
_AZURE_VARS = (
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_USE_EMULATOR",
    "AZURE_STORAGE_ENDPOINT",
    "AZURE_ENDPOINT",
    "AZURE_STORAGE_CLIENT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_TENANT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_SKIP_SIGNATURE",
)


def _from_env(env: Mapping[str, str], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: env[name] for name in names if env.get(name)}


def _obstore(uri: str) -> Any:
    try:
        import obstore.store
    except ImportError:
        raise StorageError(
            f"{uri}: reading models from object storage needs the storage extra: pip install 'kubeinfer[storage]'"
        ) from None
    return obstore.store


def _aws_profile(env: Mapping[str, str]) -> dict[str, str]:
    """Keys and region of the AWS shared profile (``AWS_PROFILE`` or ``default``), where the environment has none."""
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return {}
    home = Path(env.get("HOME", str(Path.home())))
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    found: dict[str, str] = {}
    creds = configparser.ConfigParser()
    creds.read(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
    if creds.has_section(profile):
        for src, dst in (
            ("aws_access_key_id", "access_key_id"),
            ("aws_secret_access_key", "secret_access_key"),
            ("aws_session_token", "token"),
        ):
            if creds.has_option(profile, src):
                found[dst] = creds.get(profile, src)
    conf = configparser.ConfigParser()
    conf.read(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    section = profile if profile == "default" else f"profile {profile}"
    if conf.has_section(section):
        if conf.has_option(section, "region") and not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
            found["region"] = conf.get(section, "region")
        if conf.has_option(section, "endpoint_url"):
            found["endpoint"] = conf.get(section, "endpoint_url")
    return found


def open_store(uri: str, env: Mapping[str, str]) -> Opened:
    """The obstore store for ``uri`` (``s3``, ``gs``, ``az``/``abfs``, ``http[s]`` schemes). Settings the client
    refuses (a service account file that is not one, a malformed key) are a :class:`StorageError` naming the URI."""
    _obstore(uri)
    try:
        return _open(uri, env)
    except StorageError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"{uri}: the store's settings in the environment were refused: {first}") from e


def _open(uri: str, env: Mapping[str, str]) -> Opened:
    stores = _obstore(uri)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    key = parts.path.lstrip("/")
    retry = {"max_retries": 3, "retry_timeout": timedelta(seconds=30)}
    if scheme in ("s3", "s3a"):
        config: dict[str, Any] = _aws_profile(env)
        for var, name in (
            ("AWS_ACCESS_KEY_ID", "access_key_id"),
            ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
            ("AWS_SESSION_TOKEN", "token"),
        ):
            if env.get(var):
                config[name] = env[var]
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or config.pop("endpoint", None)
        if endpoint:
            config["endpoint"] = endpoint
        if not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "region" in config):
            config["region"] = "us-east-1"
        client = {"allow_http": bool(endpoint and endpoint.startswith("http://"))}
        store = stores.S3Store(parts.netloc, config=config, client_options=client, retry_config=retry)
        return Opened(store, key, True, "s3")
    if scheme in ("gs", "gcs"):
        config = _from_env(env, _GCS_VARS)
        emulator = env.get("STORAGE_EMULATOR_HOST")
        if emulator:  # an emulator needs no credentials, and Google's clients send it none
            config.setdefault("GOOGLE_BASE_URL", emulator if "://" in emulator else f"http://{emulator}")
            config.setdefault("GOOGLE_SKIP_SIGNATURE", "true")
        client = {"allow_http": str(config.get("GOOGLE_BASE_URL", "")).startswith("http://")}
        store = stores.GCSStore(parts.netloc, config=config, client_options=client, retry_config=retry)
        return Opened(store, key, True, "gcs")
    if scheme in ("az", "azure", "abfs", "abfss"):
        # abfs[s]://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH carries the account; az://CONTAINER/PATH takes it
        # from AZURE_STORAGE_ACCOUNT_NAME
        container, _, host = parts.netloc.partition("@")
        config = _from_env(env, _AZURE_VARS)
        if host:
            config["AZURE_STORAGE_ACCOUNT_NAME"] = host.split(".")[0]
        endpoint = str(config.get("AZURE_STORAGE_ENDPOINT") or config.get("AZURE_ENDPOINT") or "")
        client = {"allow_http": endpoint.startswith("http://")}
        store = stores.AzureStore(container, config=config, client_options=client, retry_config=retry)
        return Opened(store, key, True, "azure")
    if scheme in ("http", "https"):
        base = f"{scheme}://{parts.netloc}"
        client = {"allow_http": scheme == "http"}
        store = stores.HTTPStore.from_url(base, client_options=client, retry_config=retry)
        path = key + (f"?{parts.query}" if parts.query else "")
        return Opened(store, path, False, "http")
    raise StorageError(f"{uri}: {scheme}:// is not an object store")  # callers check the scheme first
