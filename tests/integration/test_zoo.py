"""Every model family of the zoo (``tests/zoo.py``) served end to end, each answer checked against the model run
in-process on the same rows.

One real server per model (``kubeinfer serve``, REST and gRPC). Each is asked over REST JSON, REST binary tensors
(``tritonclient.http``) and gRPC (``tritonclient.grpc``), by one client and by 64 at once -- so that the batcher
merges requests of different sizes into one model call and splits the answers back -- and every response is compared
row by row with the reference for its own rows. Not one request may fail.

The servers start in the background, two at a time, while the first models are already being asked; all of them
stop when the module ends. Each model has a pool of rows and the reference's answers for the whole pool, computed
once; a request sends a few rows of the pool and expects the pool's answers for those rows (every zoo model answers
row by row).
"""

from __future__ import annotations

import functools
import http.client
import queue
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from kubeinfer.testing import ServerProcess
from zoo import NAMES, SKLEARN, TABLE_COLUMNS, UNCOMPILED, ZooModel, build, compare, oip_datatype

pytestmark = pytest.mark.integration

POOL_ROWS = 256
CLIENTS = 64
REQUESTS_PER_CLIENT = 3  # 192 requests at c=64
MAX_ROWS = 4
STARTING_AT_ONCE = 2

DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}

Arrays = dict[str, np.ndarray]


@dataclass
class Served:
    model: ZooModel
    server: ServerProcess
    pool: Arrays  # POOL_ROWS rows of inputs
    want: Arrays  # the reference's answers for the pool
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        return self.model.name

    def rows(self, idx: np.ndarray) -> tuple[Arrays, Arrays]:
        """The inputs and the expected outputs for pool rows ``idx``."""
        return {k: v[idx] for k, v in self.pool.items()}, {k: v[idx] for k, v in self.want.items()}

    @property
    def output_types(self) -> dict[str, str]:
        return {o["name"]: o["datatype"] for o in self.metadata["outputs"]}


class Fleet:
    """Builds the zoo models (in this thread: warnings filters are process-wide and pytest's are not thread-safe) and
    starts their servers in the background, ``STARTING_AT_ONCE`` at a time, in zoo order."""

    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = root
        self.env = {"KUBEINFER_CACHE_DIR": str(root / "cache"), "OMP_NUM_THREADS": "1"}
        self.started: list[ServerProcess] = []
        self.lock = threading.Lock()
        self.closed = False
        self.pool = ThreadPoolExecutor(STARTING_AT_ONCE, thread_name_prefix="zoo-start")
        self.futures: dict[str, Future[Served]] = {}
        try:
            for name in names:
                model = build(name, root / name)
                rng = np.random.default_rng(NAMES.index(name))
                rows = model.sample(rng, POOL_ROWS)
                want = {k: np.asarray(v) for k, v in model.reference(rows).items()}
                self.futures[name] = self.pool.submit(self._start, model, rows, want)
        except BaseException:
            self.close()
            raise

    def _start(self, model: ZooModel, rows: Arrays, want: Arrays) -> Served:
        server = ServerProcess(model.spec_path, grpc=True, env=self.env, start_timeout=120)
        with self.lock:
            if self.closed:
                raise RuntimeError("the zoo was closed before this server started")
            self.started.append(server)
        server.start()
        status, metadata = server.json(f"/v2/models/{model.name}")
        if status != 200:
            raise RuntimeError(f"GET /v2/models/{model.name} answered {status}: {metadata}")
        return Served(model, server, rows, want, metadata)

    def __getitem__(self, name: str) -> Served:
        return self.futures[name].result()

    def close(self) -> None:
        with self.lock:
            self.closed = True
        for f in self.futures.values():
            f.cancel()
        self.pool.shutdown(wait=True)
        # SIGKILL: these tests are about answers, and a graceful drain of every server would cost seconds of CPU.
        for s in self.started:
            s.kill()


@pytest.fixture(scope="module")
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The servers of the models that the selected tests ask (all of them, unless ``-k`` picks a few)."""
    used = {
        item.callspec.params.get("name")
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    f = Fleet(tmp_path_factory.mktemp("zoo"), [n for n in NAMES if n in used])
    try:
        yield f
    finally:
        f.close()


# -- the three ways of asking ----------------------------------------------------------------------------------------


class Failed(Exception):
    """A request that did not answer 200: the status and the server's error text."""


def _json_inputs(inputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    out = []
    for name, arr in inputs.items():
        if arr.dtype.kind in "OUS":
            data: Any = [v.decode() if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)]
        else:
            data = arr.reshape(-1).tolist()
        out.append({"name": name, "datatype": oip_datatype(arr), "shape": list(arr.shape), "data": data})
    return out


def _from_json(out: Mapping[str, Any]) -> np.ndarray:
    datatype, shape = out["datatype"], out["shape"]
    if datatype == "BYTES":
        arr = np.empty(len(out["data"]), dtype=object)
        arr[:] = out["data"]
        return arr.reshape(shape)
    return np.array(out["data"], dtype=DTYPES[datatype]).reshape(shape)


Answer = tuple[Arrays, dict[str, str]]  # outputs, and the datatype the response gave each


class JsonClient:
    """OIP v2 over REST with JSON tensors, on one keep-alive connection; ``infer_many`` pipelines its requests on
    another connection (HTTP/1.1 pipelining: written together, answered in order), so they reach the server together."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.conn = http.client.HTTPConnection("127.0.0.1", served.server.http_port, timeout=30)

    @property
    def path(self) -> str:
        return f"/v2/models/{self.served.name}/infer"

    def post(self, path: str, doc: Any) -> Any:
        self.conn.request("POST", path, orjson.dumps(doc), {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        return _json_answer(resp.status, resp.read())

    def infer_doc(self, inputs: Mapping[str, np.ndarray]) -> Any:
        return self.post(self.path, {"inputs": _json_inputs(inputs)})

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Answer:
        return _json_outputs(self.infer_doc(inputs))

    def infer_many(self, batch: list[Arrays]) -> list[Answer | Failed]:
        head = f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        payload = b""
        for inputs in batch:
            body = orjson.dumps({"inputs": _json_inputs(inputs)})
            payload += f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        out: list[Answer | Failed] = []
        with socket.create_connection(("127.0.0.1", self.served.server.http_port), timeout=30) as sock:
            sock.sendall(payload)
            with sock.makefile("rb") as f:
                for _ in batch:
                    status, body = _read_response(f)
                    try:
                        out.append(_json_outputs(_json_answer(status, body)))
                    except Failed as e:
                        out.append(e)
        return out

    def close(self) -> None:
        self.conn.close()


def _read_response(f: Any) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length from a pipelined connection."""
    status = int(f.readline().split(b" ", 2)[1])
    length = None
    while (line := f.readline()) not in (b"\r\n", b""):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise AssertionError(f"HTTP {status} without Content-Length on a pipelined connection")
    return status, f.read(length)


def _json_answer(status: int, body: bytes) -> Any:
    if status != 200:
        raise Failed(f"HTTP {status}: {body.decode(errors='replace')[:500]}")
    return orjson.loads(body)


def _json_outputs(doc: Any) -> Answer:
    outs = doc["outputs"]
    return {o["name"]: _from_json(o) for o in outs}, {o["name"]: o["datatype"] for o in outs}


class BinaryClient:
    """OIP v2 over REST with binary tensors (inputs and every output), through tritonclient.http; ``infer_many``
    sends its requests at once on as many connections (``async_infer``)."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.client = th.InferenceServerClient(
            f"127.0.0.1:{served.server.http_port}", concurrency=REQUESTS_PER_CLIENT, network_timeout=30.0
        )

    def _args(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        tensors = []
        for name, arr in inputs.items():
            t = th.InferInput(name, list(arr.shape), oip_datatype(arr))
            t.set_data_from_numpy(arr, binary_data=True)
            tensors.append(t)
        wanted = [th.InferRequestedOutput(n, binary_data=True) for n in self.served.model.output_names]
        return {"model_name": self.served.name, "inputs": tensors, "outputs": wanted}

    @staticmethod
    def _answer(result: Any) -> Answer:
        outs = result.get_response()["outputs"]
        return {o["name"]: result.as_numpy(o["name"]) for o in outs}, {o["name"]: o["datatype"] for o in outs}

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Answer:
        try:
            result = self.client.infer(**self._args(inputs))
        except InferenceServerException as e:
            raise Failed(str(e)[:500]) from None
        return self._answer(result)

    def infer_many(self, batch: list[Arrays]) -> list[Answer | Failed]:
        pending = [self.client.async_infer(**self._args(inputs)) for inputs in batch]
        out: list[Answer | Failed] = []
        for p in pending:
            try:
                out.append(self._answer(p.get_result()))
            except InferenceServerException as e:
                out.append(Failed(str(e)[:500]))
        return out

    def close(self) -> None:
        self.client.close()
        # tritonclient.http closes again in __del__, which gevent refuses from any thread but this one's (when an
        # error's traceback keeps the client alive until the garbage collector runs elsewhere): closed is closed.
        self.client.close = lambda: None  # type: ignore[method-assign]


class GrpcClient:
    """OIP v2 over gRPC through tritonclient.grpc, asking for no output in particular (so: all of them);
    ``infer_many`` sends its requests at once on the channel (``async_infer``)."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.client = tg.InferenceServerClient(served.server.grpc_url)

    @staticmethod
    def _tensors(inputs: Mapping[str, np.ndarray]) -> list[Any]:
        tensors = []
        for name, arr in inputs.items():
            t = tg.InferInput(name, list(arr.shape), oip_datatype(arr))
            t.set_data_from_numpy(arr)
            tensors.append(t)
        return tensors

    @staticmethod
    def _answer(result: Any) -> Answer:
        outs = result.get_response().outputs
        return {o.name: result.as_numpy(o.name) for o in outs}, {o.name: o.datatype for o in outs}

    def infer(self, inputs: Mapping[str, np.ndarray]) -> Answer:
        try:
            result = self.client.infer(self.served.name, self._tensors(inputs), client_timeout=30)
        except InferenceServerException as e:
            raise Failed(str(e)[:500]) from None
        return self._answer(result)

    def infer_many(self, batch: list[Arrays]) -> list[Answer | Failed]:
        done: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
        for i, inputs in enumerate(batch):
            self.client.async_infer(
                self.served.name,
                self._tensors(inputs),
                functools.partial(lambda i, result, error: done.put((i, result, error)), i),
                client_timeout=30,
            )
        out: list[Answer | Failed] = [Failed("no answer")] * len(batch)
        for _ in batch:
            i, result, error = done.get(timeout=60)
            out[i] = Failed(str(error)[:500]) if error is not None else self._answer(result)
        return out

    def close(self) -> None:
        self.client.close()


PROTOCOLS: dict[str, Callable[[Served], Any]] = {"json": JsonClient, "binary": BinaryClient, "grpc": GrpcClient}


def _problems(served: Served, idx: np.ndarray, answer: Answer | Failed) -> list[str]:
    """What is wrong with the answer for pool rows ``idx`` (empty: it matches the reference row by row)."""
    if isinstance(answer, Failed):
        return [f"{len(idx)} rows: {answer}"]
    got, types = answer
    problems = compare(served.model, got, served.rows(idx)[1])
    expected_types = served.output_types
    problems += [
        f"{n}: datatype {t}, metadata says {expected_types.get(n)}"
        for n, t in types.items()
        if expected_types.get(n) != t
    ]
    return [f"{len(idx)} rows {idx.tolist()}: {p}" for p in problems]


def _check(served: Served, client: Any, idx: np.ndarray) -> list[str]:
    """Ask for pool rows ``idx`` alone."""
    try:
        answer = client.infer(served.rows(idx)[0])
    except Failed as e:
        answer = e
    return _problems(served, idx, answer)


def _plan(served: Served, rng: np.random.Generator, sizes: list[int]) -> list[np.ndarray]:
    fixed = served.model.fixed_rows
    return [rng.choice(POOL_ROWS, size=fixed or n, replace=False) for n in sizes]


def _summary(problems: list[str], asked: int) -> str:
    """The count, and the first request (with its pool rows) of each distinct kind of problem."""
    first: dict[str, str] = {}
    for p in problems:
        first.setdefault(p.split(": ", 1)[-1], p)
    return f"{len(problems)} problems in {asked} requests; first of each kind:\n" + "\n".join(list(first.values())[:6])


# -- every model -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_metadata_lists_the_inputs_and_lists_outputs_in_the_order_responses_give_them(fleet: Fleet, name: str) -> None:
    served = fleet[name]
    meta = served.metadata
    assert [(i["name"], i["datatype"], tuple(i["shape"])) for i in meta["inputs"]] == list(served.model.inputs)
    assert sorted(o["name"] for o in meta["outputs"]) == sorted(served.model.output_names)
    client = JsonClient(served)
    try:
        inputs, _ = served.rows(_plan(served, np.random.default_rng(1), [3])[0])
        doc = client.infer_doc(inputs)
    finally:
        client.close()
    assert [o["name"] for o in doc["outputs"]] == [o["name"] for o in meta["outputs"]]
    assert [o["datatype"] for o in doc["outputs"]] == [o["datatype"] for o in meta["outputs"]]


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("name", NAMES)
def test_one_client_gets_the_in_process_answers(fleet: Fleet, name: str, protocol: str) -> None:
    """Requests of 1 and 3 rows, one at a time."""
    served = fleet[name]
    client = PROTOCOLS[protocol](served)
    try:
        plans = _plan(served, np.random.default_rng(2), [1, 3, 1, 3])
        problems = [p for idx in plans for p in _check(served, client, idx)]
    finally:
        client.close()
    assert not problems, _summary(problems, len(plans))


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("name", NAMES)
def test_64_clients_at_once_get_the_in_process_answers_through_the_batcher(
    fleet: Fleet, name: str, protocol: str
) -> None:
    """64 clients, each sending its few requests of 1-4 rows (1 for a fixed batch dimension) at once: batched
    together by the server, split back, each compared with the reference for its own rows."""
    served = fleet[name]
    rng = np.random.default_rng(3)
    plans = [_plan(served, rng, rng.integers(1, MAX_ROWS + 1, REQUESTS_PER_CLIENT).tolist()) for _ in range(CLIENTS)]

    def one_client(requests: list[np.ndarray]) -> list[str]:
        client = PROTOCOLS[protocol](served)
        try:
            answers = client.infer_many([served.rows(idx)[0] for idx in requests])
        finally:
            client.close()
        return [p for idx, answer in zip(requests, answers, strict=True) for p in _problems(served, idx, answer)]

    before = _calls(served)
    with ThreadPoolExecutor(CLIENTS) as pool:
        problems = [p for found in pool.map(one_client, plans) for p in found]
    assert not problems, _summary(problems, CLIENTS * REQUESTS_PER_CLIENT)
    calls, rows = (a - b for a, b in zip(_calls(served), before, strict=True))
    assert rows == sum(len(idx) for requests in plans for idx in requests)
    if served.model.fixed_rows:
        assert calls == CLIENTS * REQUESTS_PER_CLIENT, "a model with a fixed batch dimension runs each request alone"
    elif protocol == "json":
        # Requests pipelined on one connection reach the batcher in one loop turn, so they must have been merged.
        # Concurrent connections (binary) and gRPC calls arrive one by one, and a model faster than the arrivals
        # (an ONNX regressor on the event loop) may rightly run each alone: no merge to require there.
        assert calls < CLIENTS * REQUESTS_PER_CLIENT, "64 clients at once, and the batcher merged no requests"


def _calls(served: Served) -> tuple[float, float]:
    """The server's model calls and rows inferred so far, for this model."""
    status, body = served.server.get("/metrics")
    assert status == 200
    found = {"kubeinfer_model_executions": 0.0, "kubeinfer_inference_rows": 0.0}
    for family in text_string_to_metric_families(body.decode()):
        if family.name in found:
            found[family.name] = sum(x.value for x in family.samples if x.labels.get("model") == served.name)
    return found["kubeinfer_model_executions"], found["kubeinfer_inference_rows"]


# -- request forms ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*SKLEARN, *(n for n in UNCOMPILED if n != "table-sk")])
def test_a_single_input_model_takes_its_input_under_any_name_and_kserve_v1_rows(fleet: Fleet, name: str) -> None:
    served = fleet[name]
    (idx,) = _plan(served, np.random.default_rng(4), [3])
    inputs, want = served.rows(idx)
    (x,) = inputs.values()
    client = JsonClient(served)
    problems: list[str] = []
    try:
        for alias in ("input_0", "x"):
            try:
                got, _ = client.infer({alias: x})
            except Failed as e:
                problems.append(f"input named {alias!r}: {e}")
                continue
            problems += [f"input named {alias!r}: {p}" for p in compare(served.model, got, want)]
        try:
            doc = client.post(f"/v1/models/{name}:predict", {"instances": x.tolist()})
            got = {"predict": np.asarray(doc["predictions"])}
            problems += [f"KServe v1: {p}" for p in compare(served.model, got, want, only=("predict",))]
        except Failed as e:
            problems.append(f"KServe v1: {e}")
    finally:
        client.close()
    assert not problems, "\n".join(problems)


TABLES = ("table", "table-sk")  # compiled to one graph input per column; scikit-learn on a DataFrame


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("name", TABLES)
def test_a_dataframe_pipeline_takes_columns_as_n_by_1_too(fleet: Fleet, name: str, protocol: str) -> None:
    served = fleet[name]
    client = PROTOCOLS[protocol](served)
    try:
        (idx,) = _plan(served, np.random.default_rng(5), [4])
        inputs, want = served.rows(idx)
        try:
            got, _ = client.infer({k: v.reshape(-1, 1) for k, v in inputs.items()})
            problems = compare(served.model, got, want)
        except Failed as e:
            problems = [str(e)]
    finally:
        client.close()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("age_type", "income_type"), [("INT64", "FP32"), ("FP32", "INT64")])
@pytest.mark.parametrize("name", TABLES)
def test_a_dataframe_pipeline_takes_other_numeric_datatypes_for_a_numeric_column(
    fleet: Fleet, name: str, age_type: str, income_type: str
) -> None:
    served = fleet[name]
    (idx,) = _plan(served, np.random.default_rng(6), [5])
    inputs, _ = served.rows(idx)
    sent = {
        **inputs,
        "age": np.round(inputs["age"]).astype(DTYPES[age_type]),
        "income": np.round(inputs["income"]).astype(DTYPES[income_type]),
    }
    want = served.model.reference(sent)  # the reference sees the very numbers sent
    client = JsonClient(served)
    try:
        got, _ = client.infer(sent)
    except Failed as e:
        pytest.fail(f"age {age_type}, income {income_type}: {e}")
    finally:
        client.close()
    problems = compare(served.model, got, want)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", TABLES)
def test_a_dataframe_pipeline_takes_kserve_v1_objects_one_per_row(fleet: Fleet, name: str) -> None:
    served = fleet[name]
    (idx,) = _plan(served, np.random.default_rng(7), [6])
    inputs, want = served.rows(idx)
    instances = [
        {
            "age": float(inputs["age"][i]),
            "income": float(inputs["income"][i]),
            "city": inputs["city"][i].decode(),
            "plan": inputs["plan"][i].decode(),
        }
        for i in range(len(idx))
    ]
    assert list(instances[0]) == [c for c, _, _ in TABLE_COLUMNS]
    client = JsonClient(served)
    try:
        doc = client.post(f"/v1/models/{served.name}:predict", {"instances": instances})
    except Failed as e:
        pytest.fail(str(e))
    finally:
        client.close()
    problems = compare(served.model, {"predict": np.asarray(doc["predictions"])}, want, only=("predict",))
    assert not problems, "\n".join(problems)
