"""Logging a client cannot turn into a full disk: rate limit per message, files cut at their cap."""

from __future__ import annotations

import logging
from pathlib import Path

from kubeinfer.server.logs import RateLimit, copytruncate


def test_a_repeated_message_is_limited_then_summed_up() -> None:
    now = [0.0]
    limit = RateLimit(burst=3, window=10.0, clock=lambda: now[0])
    logger = logging.getLogger("test.ratelimit")

    def rec(msg: str) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.ERROR, __file__, 1, msg, (), None)

    kept = [limit.filter(rec("socket.accept() out of system resource")) for _ in range(20_000)]
    assert sum(kept) == 3
    assert limit.filter(rec("another message"))  # other messages are not held back by this one
    now[0] = 11.0
    r = rec("socket.accept() out of system resource")
    assert limit.filter(r)
    assert "19997 more like it" in r.getMessage()


def test_a_log_past_its_cap_is_cut_and_its_latest_half_kept(tmp_path: Path) -> None:
    log = tmp_path / "r1.log"
    with log.open("ab") as writer:  # the replica's descriptor, opened for appending, stays valid
        writer.write(b"old\n" * 1000 + b"latest line\n")
        writer.flush()
        assert not copytruncate(log, max_bytes=10_000)
        assert copytruncate(log, max_bytes=2_000)
        assert log.stat().st_size == 0
        kept = (tmp_path / "r1.log.1").read_bytes()
        assert len(kept) == 1_000 and kept.endswith(b"latest line\n")
        writer.write(b"after the cut\n")
        writer.flush()
    assert log.read_bytes() == b"after the cut\n"


def test_the_log_level_comes_from_the_environment_and_a_typo_keeps_the_default(capsys) -> None:  # type: ignore[no-untyped-def]
    from kubeinfer.server.logs import level_from_env

    assert level_from_env(logging.INFO, {}) == logging.INFO
    assert level_from_env(logging.INFO, {"KUBEINFER_LOG_LEVEL": "debug"}) == logging.DEBUG
    assert level_from_env(logging.WARNING, {"KUBEINFER_LOG_LEVEL": " Error "}) == logging.ERROR
    assert level_from_env(logging.INFO, {"KUBEINFER_LOG_LEVEL": "verbose"}) == logging.INFO
    assert "KUBEINFER_LOG_LEVEL='verbose' is not a log level" in capsys.readouterr().err


def test_a_models_exception_is_logged_with_its_traceback(caplog) -> None:  # type: ignore[no-untyped-def]
    from kubeinfer.server.batcher import _as_error
    from kubeinfer.server.errors import ServerError

    class Sentiment:
        name = "sentiment"

    def predict() -> None:
        {"label": 1}["text"]

    try:
        predict()
    except KeyError as e:
        with caplog.at_level(logging.ERROR, logger="kubeinfer.server"):
            err = _as_error(Sentiment(), e)  # type: ignore[arg-type]
    assert isinstance(err, ServerError) and "KeyError: 'text'" in str(err)
    (rec,) = caplog.records
    assert rec.exc_info is not None and "model 'sentiment' raised on a request: KeyError" in rec.getMessage()
    assert "in predict" in caplog.text  # the traceback names the model's own frame


def test_json_lines_carry_the_fields_and_the_traceback() -> None:
    import json as jsonlib

    from kubeinfer.server.logs import JsonFormatter

    logger = logging.getLogger("test.json")
    try:
        raise KeyError("text")
    except KeyError:
        import sys

        rec = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "model %r failed", ("m",), sys.exc_info(), extra={"status": 500}
        )
    doc = jsonlib.loads(JsonFormatter().format(rec))
    assert doc["level"] == "ERROR" and doc["logger"] == "test.json" and doc["message"] == "model 'm' failed"
    assert doc["status"] == 500 and "KeyError: 'text'" in doc["exception"] and doc["time"].endswith("Z")


def test_format_and_access_log_settings_from_the_environment(capsys) -> None:  # type: ignore[no-untyped-def]
    from kubeinfer.server.logs import JsonFormatter, access_rate_from_env, formatter_from_env

    assert isinstance(formatter_from_env({"KUBEINFER_LOG_FORMAT": "json"}), JsonFormatter)
    assert not isinstance(formatter_from_env({}), JsonFormatter)
    assert not isinstance(formatter_from_env({"KUBEINFER_LOG_FORMAT": "xml"}), JsonFormatter)
    assert "KUBEINFER_LOG_FORMAT='xml' is not a log format" in capsys.readouterr().err
    assert access_rate_from_env({}) == 0.0
    assert access_rate_from_env({"KUBEINFER_ACCESS_LOG": "0.25"}) == 0.25
    for bad in ("2", "-0.1", "all"):
        assert access_rate_from_env({"KUBEINFER_ACCESS_LOG": bad}) == 0.0
    assert "is not a share of requests between 0 and 1" in capsys.readouterr().err


def test_the_access_log_is_not_rate_limited_per_message() -> None:
    limit = RateLimit(burst=3, window=10.0, clock=lambda: 0.0)
    access = logging.getLogger("kubeinfer.access")
    recs = [access.makeRecord(access.name, logging.INFO, __file__, 1, "%s %d", ("m", 200), None) for _ in range(50)]
    assert all(limit.filter(r) for r in recs)  # sampled at the source instead
