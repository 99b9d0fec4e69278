"""docs/custom-models.md's example is real: the page carries the example's files verbatim, and the requests it shows
get the answers it shows from a real server, from the example folder and from the layout `kubeinfer build` makes."""

from __future__ import annotations

import http.client
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from kubeinfer.kube.build import build_context
from kubeinfer.spec import load_spec
from kubeinfer.testing import ServerProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "custom-models.md"
EXAMPLE = ROOT / "examples" / "custom-linear"


def _exchanges() -> list[tuple[str, str, object]]:
    """(path, request body, documented answer) for each `curl` of the page."""
    page = DOC.read_text()
    pattern = re.compile(r"curl -s localhost:8080(\S+)(?: \\\n)?\s+-d '([^']*)'\n# (.*)\n")
    found = [(path, body, json.loads(answer)) for path, body, answer in pattern.findall(page)]
    assert len(found) == 3, found
    return found


def _post(port: int, path: str, body: str) -> object:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _approx(doc: object) -> object:
    """The answer with floats rounded to 5 significant digits (the page shows JSON as the server writes it)."""
    if isinstance(doc, float):
        return float(f"{doc:.5g}")
    if isinstance(doc, list):
        return [_approx(x) for x in doc]
    if isinstance(doc, dict):
        return {k: _approx(v) for k, v in doc.items()}
    return doc


def test_the_page_shows_the_example_files_verbatim() -> None:
    page = DOC.read_text()
    for f in ("scorer/linear.py", "scorer/weights.json", "service.yaml"):
        text = (EXAMPLE / f).read_text().rstrip()
        assert f"\n{text}\n```" in page, f"docs/custom-models.md must show examples/custom-linear/{f} as it is"


def test_the_documented_requests_get_the_documented_answers() -> None:
    with ServerProcess(EXAMPLE / "service.yaml", grpc=False) as server:
        for path, body, answer in _exchanges():
            assert _approx(_post(server.http_port, path, body)) == _approx(answer), path


def test_the_example_serves_from_the_layout_kubeinfer_build_makes(tmp_path: Path) -> None:
    """In the image the spec is mounted apart from the model folder, and the spec's uri points at the copy."""
    ctx = tmp_path / "context"
    build_context(load_spec(EXAMPLE / "service.yaml"), EXAMPLE, ctx)
    image_model = tmp_path / "opt" / "model"
    shutil.copytree(ctx / "model", image_model)
    doc = yaml.safe_load((ctx / "service.yaml").read_text())
    doc["spec"]["model"]["uri"] = doc["spec"]["model"]["uri"].replace("/opt/kubeinfer/model", str(image_model))
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "service.yaml").write_text(yaml.safe_dump(doc))
    path, body, answer = _exchanges()[0]
    with ServerProcess(etc / "service.yaml", grpc=False) as server:
        assert _approx(_post(server.http_port, path, body)) == _approx(answer)
