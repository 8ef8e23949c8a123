"""runtime/traffic/routing.py: which variant a request goes to."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import ConfigError
from runtime.traffic import Endpoint

KEYS = [f"user-{i}".encode() for i in range(4000)]


def assignment(endpoint: Endpoint) -> list[int]:
    return [endpoint.rank(k) for k in KEYS]


def test_a_key_goes_to_the_same_variant_in_every_process() -> None:
    # Python's hash() is salted per process; the routing hash must not be.
    here = assignment(Endpoint("e", [("a", 3), ("b", 1), ("c", 1)]))[:200]
    code = (
        "from runtime.traffic import Endpoint\n"
        "e = Endpoint('e', [('a', 3), ('b', 1), ('c', 1)])\n"
        "import json; print(json.dumps([e.rank(f'user-{i}'.encode()) for i in range(200)]))"
    )
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})  # fmt: skip
        assert json.loads(out.stdout) == here


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.integers(0, 20), min_size=2, max_size=5).filter(lambda w: sum(w) > 0),
    grow=st.integers(0, 4),
    by=st.integers(1, 30),
)
def test_raising_one_weight_moves_keys_only_to_that_variant(weights, grow, by) -> None:
    grow %= len(weights)
    names = [f"v{i}" for i in range(len(weights))]
    e = Endpoint("e", list(zip(names, weights, strict=True)))
    before = assignment(e)
    e.set_weights({names[grow]: weights[grow] + by})
    after = assignment(e)
    assert all(a == b or b == grow for a, b in zip(before, after, strict=True))
    # A variant of weight 0 gets no key.
    assert all(weights[i] > 0 or i == grow for i in after)


def test_shares_follow_the_weights() -> None:
    e = Endpoint("e", [("a", 70), ("b", 20), ("c", 10)])
    ranks = assignment(e)
    for i, share in enumerate((0.7, 0.2, 0.1)):
        assert abs(ranks.count(i) / len(KEYS) - share) < 0.03
    drawn = [e.choose().model for _ in range(20_000)]
    assert abs(drawn.count("c") / 20_000 - 0.1) < 0.01
    assert e.variants[2].requests == drawn.count("c")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least one variant needs a weight above 0"):
        Endpoint("e", [("a", 0), ("b", 0)])
    with pytest.raises(ConfigError, match="listed twice"):
        Endpoint("e", [("a", 1), ("a", 2)])
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        Endpoint("e", [("a", -1), ("b", 1)])
    assert Endpoint("e", [("a", 1)], sticky="parameter:user_id").parameter == "user_id"
    with pytest.raises(ConfigError, match='sticky must be "header:NAME" or "parameter:NAME"'):
        Endpoint("e", [("a", 1)], sticky="parameter:")
    with pytest.raises(ConfigError, match='sticky must be "header:NAME"'):
        Endpoint("e", [("a", 1)], sticky="cookie:id")
    e = Endpoint("e", [("a", 1), ("b", 1)], sticky="header:X-User-Id")
    assert e.header == b"x-user-id"
    with pytest.raises(ConfigError, match=r"no variant\(s\) \['c'\]"):
        e.set_weights({"c": 1})
    with pytest.raises(ConfigError, match="at least one"):
        e.set_weights({"a": 0, "b": 0})
    for bad in (None, "2", True, float("nan"), [1]):
        with pytest.raises(ConfigError, match="the weight of 'a' must be a number >= 0"):
            e.set_weights({"a": bad})
    assert [v.weight for v in e.variants] == [1, 1]  # a refused change changes nothing


def test_the_config_names_served_models_and_its_own_name(tmp_path) -> None:
    from runtime.config import build_server_config

    def load(endpoint: str) -> None:
        path = tmp_path / "mlrt.toml"
        models = "".join(f'[[models]]\nname = "{n}"\nsource = "m.onnx"\n' for n in ("a", "b"))
        path.write_text(models + "[[endpoints]]\n" + endpoint)
        build_server_config(config_file=str(path))

    ok = 'name = "ab"\nvariants = [{ model = "a", weight = 1 }, { model = "b", weight = 1 }]\n'
    load(ok)
    with pytest.raises(ConfigError, match=r"model\(s\) \['c'\] are not served models"):
        load('name = "ab"\nvariants = [{ model = "c", weight = 1 }]\n')
    with pytest.raises(ConfigError, match="a model has that name"):
        load('name = "a"\nvariants = [{ model = "b", weight = 1 }]\n')
    with pytest.raises(ConfigError, match=r"\['b'\] cannot be both a variant and a shadow"):
        load(ok + 'shadow = [{ model = "b", sample = 1.0 }]\n')
    one = 'name = "ab"\nvariants = [{ model = "a", weight = 1 }]\n'
    load(one + 'shadow = [{ model = "b", sample = 0.5, queue = 8 }]\n')
    with pytest.raises(ConfigError, match=r"model\(s\) \['c'\] are not served models"):
        load(one + 'shadow = [{ model = "c" }]\n')
    with pytest.raises(ConfigError, match="sample must be a number from 0 to 1, got 2"):
        load(one + 'shadow = [{ model = "b", sample = 2 }]\n')
    with pytest.raises(ConfigError, match="queue must be an integer >= 1"):
        load(one + 'shadow = [{ model = "b", queue = 0 }]\n')
    with pytest.raises(ConfigError, match="each shadow is"):
        load(one + 'shadow = [{ model = "b", weight = 3 }]\n')
    with pytest.raises(ConfigError, match="at least one variant needs a weight above 0"):
        load('name = "ab"\nvariants = [{ model = "a", weight = 0 }]\n')
    # The prediction log, feedback and a canary's rollback: unknown settings named, bad
    # values refused at load, not at the first request.
    load(ok + 'log = { dir = "predictions", sample = 0.5, rotate_mb = 8 }\n')
    with pytest.raises(ConfigError, match=r"'ab' log: unknown setting\(s\) \['rotate'\]"):
        load(ok + 'log = { dir = "p", rotate = 3 }\n')
    with pytest.raises(ConfigError, match="log must be a table"):
        load(ok + 'log = "p"\n')
    load(ok + 'feedback = { window = 500, classes = ["stay", "churn"] }\n')
    with pytest.raises(ConfigError, match="kind must be one of"):
        load(ok + 'feedback = { kind = "ranker" }\n')
    with pytest.raises(ConfigError, match="classes must be a list of distinct labels"):
        load(ok + 'feedback = { classes = ["a", "a"] }\n')
    canary = (
        'name = "ab"\nvariants = [{ model = "a", weight = 9 }, '
        '{ model = "b", weight = 1, rollback = {%s} }]\n'
    )
    load(canary % "window_s = 30, error_ratio = 3")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['window'\]"):
        load(canary % "window = 30")
    with pytest.raises(ConfigError, match="min_requests must be an integer >= 1"):
        load(canary % "min_requests = 0")
    with pytest.raises(ConfigError, match="add another variant"):
        load('name = "ab"\nvariants = [{ model = "a", weight = 1, rollback = {} }]\n')


def test_a_model_table_may_record_its_own_answers(tmp_path) -> None:
    from runtime.config import build_server_config
    from runtime.traffic import Router

    def load(extra: str):
        path = tmp_path / "mlrt.toml"
        path.write_text(
            f'[[models]]\nname = "a"\nsource = "m.onnx"\n{extra}\n[[models]]\nname = "b"\nsource = "m.onnx"\n'
        )
        return build_server_config(config_file=str(path))

    config = load('log = { dir = "p" }\nfeedback = { window = 10 }')
    assert [m.name for m in config.models] == ["a", "b"]  # log and feedback are not model settings
    router = Router([e.build() for e in config.endpoints])
    assert router.get("a") is None and not router.endpoints  # it routes nothing...
    recorder = router.through("a")
    assert recorder is not None and recorder.own and recorder.records  # ...but records
    assert router.through("b") is None
    with pytest.raises(ConfigError, match=r"\[\[models\]\] 'a' log: unknown setting\(s\) \['rotate'\]"):
        load('log = { dir = "p", rotate = 3 }')
    with pytest.raises(ConfigError, match=r"\[\[models\]\] 'a': feedback must be a table"):
        load("feedback = 3")
    with pytest.raises(ConfigError, match="records its own answers only"):
        Endpoint("a", [("b", 1)], own=True)
