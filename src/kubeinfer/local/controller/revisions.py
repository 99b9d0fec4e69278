"""The service's revisions: each spec that needed new processes, numbered, with the file its replicas load.

A revision is what a Kubernetes Deployment keeps as a ReplicaSet: one pod template (:func:`template_of`). A spec
with the same template updates the current revision in place; a changed template adds a revision, which becomes
the target the rollout moves the replicas to. Each revision's spec is written (its model uri and payload log file
made absolute, since the replicas run in the revision's folder) to the service's private ``specs`` folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubeinfer.local.files import private_dir, write_private
from kubeinfer.spec import InferenceService, resolve_uri
from kubeinfer.spec.service import ServiceSpec
from kubeinfer.storage.uris import is_remote

__all__ = ["Revision", "RevisionStore", "template_of"]


def template_of(spec: ServiceSpec) -> dict[str, Any]:
    """The parts of a spec that need new processes when they change (a Deployment's pod template)."""
    doc = spec.model_dump(mode="json")
    for key in ("replicas", "autoscaling", "rollout"):
        doc.pop(key, None)
    return doc


@dataclass(eq=False)
class Revision:
    number: int
    svc: InferenceService
    base_dir: Path
    """The folder the spec's relative paths are relative to (the replicas run in it)."""
    spec_path: Path
    """The spec as the replicas read it."""

    @property
    def version(self) -> str:
        return self.svc.spec.model.version


class RevisionStore:
    """Every revision of one service by number, and the target: the revision the replicas should run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        """The service's private state folder; specs go to its ``specs`` folder."""
        self.revisions: dict[int, Revision] = {}
        self.target = 0

    @property
    def current(self) -> Revision:
        """The target revision."""
        return self.revisions[self.target]

    def __contains__(self, number: object) -> bool:
        return number in self.revisions

    def __getitem__(self, number: int) -> Revision:
        return self.revisions[number]

    def same_template(self, svc: InferenceService, base_dir: Path) -> bool:
        """Whether ``svc`` runs with the target's processes (only its replica count, autoscaling or rollout differ)."""
        current = self.current
        return template_of(svc.spec) == template_of(current.svc.spec) and base_dir == current.base_dir

    def add(self, svc: InferenceService, base_dir: Path) -> Revision:
        """A new revision of ``svc``, numbered after the last one, as the target."""
        number = max(self.revisions, default=0) + 1
        rev = Revision(number, svc, base_dir, self._write(svc, base_dir, number))
        self.revisions[number] = rev
        self.target = number
        return rev

    def update(self, svc: InferenceService) -> Revision:
        """The target revision takes ``svc`` in place (same template: its replicas go on as they are)."""
        current = self.current
        current.svc = svc
        current.spec_path = self._write(svc, current.base_dir, current.number)
        return current

    def _write(self, svc: InferenceService, base_dir: Path, number: int) -> Path:
        doc = svc.model_dump(mode="json")
        logger = doc["spec"].get("logger") or {}
        if logger.get("file"):  # the payload log, relative to the spec's folder like the model's uri
            logger["file"] = str((base_dir / Path(logger["file"]).expanduser()).resolve())
        if svc.spec.models is not None:
            return self._write_models(doc, base_dir, number)
        uri = svc.spec.model.uri
        if uri and not is_remote(uri):  # a remote uri (s3://, hf://, ...) is fetched by the replica as it is
            doc["spec"]["model"]["uri"] = str(resolve_uri(uri, base_dir).resolve())
        path = self.folder / "specs" / f"revision-{number}.yaml"
        private_dir(path.parent)
        write_private(path, yaml.safe_dump(doc, sort_keys=False))
        return path

    def _write_models(self, doc: dict[str, Any], base_dir: Path, number: int) -> Path:
        """``spec.models``: each entry's local uri made absolute (a remote one is fetched by the replica as it is)."""
        for entry in doc["spec"]["models"]:
            uri = entry.get("uri", "")
            if uri and ("://" not in uri or uri.startswith("file://")):
                entry["uri"] = str(resolve_uri(uri, base_dir).resolve())
        path = self.folder / "specs" / f"revision-{number}.yaml"
        private_dir(path.parent)
        write_private(path, yaml.safe_dump(doc, sort_keys=False))
        return path
