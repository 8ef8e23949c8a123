"""Typed configuration: one source of truth for the TOML file, MLRT_* environment
variables and command-line flags (flags win over the environment, which wins
over the file, which wins over the defaults).

Example mlrt.toml::

    [server]
    host = "127.0.0.1"
    port = 8000

    [[models]]
    name = "iris"
    source = "models/iris.onnx"
    intra_op_threads = 1
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .names import RULE, is_valid_name

if TYPE_CHECKING:
    from .traffic import Endpoint

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(kw_only=True)
class ModelConfig:
    """How to load and run one model.

    source: `path.onnx` or `package.module:object`.
    intra_op_threads / inter_op_threads: onnxruntime thread pools. The default of
    one each leaves the other core(s) to the event loop and HTTP parsing: on a
    small host a model that spins threads on every core slows every request's
    I/O more than it speeds up a tabular model's math.
    """

    name: str
    source: str
    version: str = "1"
    backend: str | None = None  # "onnx" | "python" | "mlflow"; inferred from source when None
    instances: int = 1
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    inputs: tuple[dict[str, Any], ...] | None = None
    outputs: tuple[dict[str, Any], ...] | None = None
    max_batch_size: int = 128
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_rows: int = 8192
    # A batch whose predicted compute time is at most this runs inline on the event
    # loop: cheaper than the thread hop (bench/README.md). 0 always uses threads.
    # None (the default): 40 us for ONNX models, whose cost is bounded by their graph,
    # and 0 for Python models, whose cost the server cannot bound (a lock, a network
    # call, a pathological row would freeze every model and the health routes).
    inline_max_us: float | None = None
    timeout_us: int = 0  # default per-request deadline; 0 = none
    profile: str | None = None  # reference profile JSON: drift monitoring on
    # `name@alias`, `name/version` or `models:/...`: served from a registry and followed live.
    registry_ref: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.version, int) and not isinstance(self.version, bool):
            self.version = str(self.version)
        _check_types(self, f"model '{self.name}'")
        if not is_valid_name(self.name):
            raise ConfigError(f"invalid model name {self.name!r}: use {RULE}")
        if not self.source:
            raise ConfigError(f"model '{self.name}': source is empty")
        for key in ("instances", "intra_op_threads", "inter_op_threads", "max_batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"model '{self.name}': {key} must be an integer >= 1, got {value!r}")
        for key in ("max_queue_delay_us", "max_queue_rows", "timeout_us", "inline_max_us"):
            value = getattr(self, key)
            if key == "inline_max_us" and value is None:
                continue
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"model '{self.name}': {key} must be >= 0, got {value!r}")
        self.preferred_batch_sizes = tuple(self.preferred_batch_sizes)
        if any(
            not isinstance(n, int) or not 1 <= n <= self.max_batch_size for n in self.preferred_batch_sizes
        ):
            raise ConfigError(
                f"model '{self.name}': preferred_batch_sizes must be integers in "
                f"1..max_batch_size ({self.max_batch_size}), got {list(self.preferred_batch_sizes)}"
            )
        if self.backend is None and self.registry_ref is None:
            self.backend = infer_backend(self.source)
        if self.registry_ref is not None:
            self.backend = self.backend or "registry"
        if self.backend not in ("onnx", "python", "mlflow", "registry"):
            raise ConfigError(f"model '{self.name}': unknown backend {self.backend!r}")
        self.providers = tuple(self.providers)


@dataclass(kw_only=True)
class MonitorConfig:
    """Drift monitoring, for every model served with a reference profile.

    The window is `window_s` long, made of `slices` sub-windows: every window_s/slices
    the oldest slice's counts drop out. A feature is `warn` when its PSI exceeds
    `warn_psi` and `alert` past `alert_psi`, but only when the PSI also exceeds what
    sampling noise alone gives at significance `alpha` for that window's row count,
    and never with fewer than `min_rows` rows (docs/monitoring.md).
    """

    window_s: float = 600.0
    slices: int = 10
    warn_psi: float = 0.1
    alert_psi: float = 0.2
    alpha: float = 0.01
    min_rows: int = 100
    eps: float = 1e-4
    tick_s: float = 5.0
    state_dir: str | None = None
    save_every_s: float = 60.0

    def __post_init__(self) -> None:
        _check_types(self, "[monitor]")
        if not self.window_s > 0 or not self.tick_s > 0 or not self.save_every_s > 0:
            raise ConfigError("[monitor]: window_s, tick_s and save_every_s must be > 0")
        if self.slices < 1 or self.min_rows < 0:
            raise ConfigError(
                f"[monitor]: slices must be >= 1 and min_rows >= 0, got {self.slices}, {self.min_rows}"
            )
        if not 0 < self.warn_psi <= self.alert_psi:
            raise ConfigError(
                f"[monitor]: need 0 < warn_psi <= alert_psi, got {self.warn_psi} and {self.alert_psi}"
            )
        if not 0 < self.alpha < 1 or not 0 < self.eps < 1:
            raise ConfigError(f"[monitor]: alpha and eps must be in (0, 1), got {self.alpha}, {self.eps}")


def _known(cls: Any, table: dict[str, Any], where: str) -> dict[str, Any]:
    """`table`, once every key in it is a keyword of `cls` (other than the endpoint's name)."""
    known = set(inspect.signature(cls).parameters) - {"endpoint", "model"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return table


@dataclass(kw_only=True)
class EndpointConfig:
    """A name clients call like a model, routed to weighted variants, each a served model
    (docs/traffic.md)::

        [[endpoints]]
        name = "churn"
        variants = [{ model = "churn-v1", weight = 90 }, { model = "churn-v2", weight = 10 }]
        # a canary may roll itself back: variants = [..., { model = ..., weight = 10, rollback = { ... } }]
        sticky = "header:x-user-id"    # absent: each request drawn by weight
        shadow = [{ model = "churn-v3", sample = 1.0 }]   # copies, compared, never returned
        log = { dir = "predictions/churn" }               # the prediction log (Parquet)
        feedback = { window = 1000 }                      # labels joined by request id
    """

    name: str
    variants: tuple[dict[str, Any], ...]
    sticky: str | None = None
    shadow: tuple[dict[str, Any], ...] = ()
    log: dict[str, Any] | None = None
    feedback: dict[str, Any] | None = None
    # A [[models]] table's own log and feedback (not an [[endpoints]] setting): the model
    # records its answers when called by its own name.
    own: bool = False

    def __post_init__(self) -> None:
        where = f"[[models]] {self.name!r}" if self.own else f"[[endpoints]] {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("[[endpoints]]: every endpoint needs a name")
        if not isinstance(self.variants, (list, tuple)) or not self.variants:
            raise ConfigError(f"{where}: variants must be a list of {{ model = ..., weight = ... }}")
        for v in self.variants:
            odd = not isinstance(v, dict) or set(v) - {"model", "weight", "rollback"}
            if odd or not isinstance(v.get("model"), str) or not isinstance(v.get("rollback", {}), dict):
                shape = '{ model = "name", weight = N, rollback = { ... } }'
                raise ConfigError(f"{where}: each variant is {shape}, got {v!r}")
        self.variants = tuple(self.variants)
        if self.sticky is not None and not isinstance(self.sticky, str):
            raise ConfigError(f'{where}: sticky must be a string such as "header:x-user-id"')
        if not isinstance(self.shadow, (list, tuple)):
            raise ConfigError(f"{where}: shadow must be a list of {{ model = ..., sample = ... }}")
        for v in self.shadow:
            odd = not isinstance(v, dict) or set(v) - {"model", "sample", "queue"}
            if odd or not isinstance(v.get("model"), str):
                raise ConfigError(
                    f'{where}: each shadow is {{ model = "name", sample = 0.0-1.0, queue = N }}, got {v!r}'
                )
        self.shadow = tuple(self.shadow)
        for key in ("log", "feedback"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), dict):
                raise ConfigError(f"{where}: {key} must be a table, e.g. {key} = {{ ... }}")
        self.build()  # weights, sticky key, shadows, log and feedback checked here, not at start

    def weights(self) -> list[tuple[str, float]]:
        return [(v["model"], v.get("weight", 1)) for v in self.variants]

    def models(self) -> list[str]:
        """The served models this endpoint names: its variants, then its shadows."""
        return [m for m, _ in self.weights()] + [s["model"] for s in self.shadow]

    def build(self) -> Endpoint:
        """The endpoint this config describes, with fresh counts."""
        from .traffic import Endpoint, Feedback, PredictionLog, Rollback, RollbackRule, Shadow

        where = f"[[models]] {self.name!r}" if self.own else f"[[endpoints]] {self.name!r}"
        shadows = [Shadow(self.name, **s) for s in self.shadow]
        log = feedback = None
        if self.log is not None:
            log = PredictionLog(self.name, **_known(PredictionLog, self.log, f"{where} log"))
        if self.feedback is not None:
            feedback = Feedback(self.name, **_known(Feedback, self.feedback, f"{where} feedback"))
        rollbacks = [
            Rollback(
                self.name,
                v["model"],
                RollbackRule(**_known(RollbackRule, v["rollback"], f"{where} rollback")),
            )
            for v in self.variants
            if "rollback" in v
        ]
        return Endpoint(self.name, self.weights(), self.sticky, shadows, log, feedback, rollbacks, self.own)


@dataclass(kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # What a client may hold (runtime/server/limits.py): time to send headers, and a body
    # (an allowance, then at least min_body_rate bytes/s); open connections (None: the
    # process's file limit, raised to its hard limit, less 64); bytes buffered for bodies
    # in progress (None: 4 x max_body_bytes).
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    min_body_rate: int = 65536
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    max_connections: int | None = None
    max_buffered_bytes: int | None = None
    graceful_timeout_s: float = 30.0
    # Where the dashboard is served (runtime/server/dashboard); None or "off": not at all.
    dashboard_path: str | None = "/"
    registry: str | None = None  # for name@alias models: a directory or registry URI
    registry_poll_s: float = 5.0  # how often followed aliases are checked
    admin_token: str | None = None  # when set, /v2/repository/* needs "Authorization: Bearer <token>"
    uds: str | None = None  # also (or only, with tcp = false) listen on this Unix socket
    uds_mode: str = "600"  # octal permissions of the socket file: owner only by default
    tcp: bool = True
    grpc_port: int | None = None  # also serve the V2 gRPC API on this port (off by default)
    # Worker processes sharing the listeners (runtime/server/workers.py); "auto": one per core.
    workers: int | str = 1
    models: list[ModelConfig] = field(default_factory=list)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    hooks: list[dict[str, Any]] = field(default_factory=list)
    endpoints: list[EndpointConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_types(self, "[server]")
        if not self.tcp and not self.uds:
            raise ConfigError("tcp is off and no uds socket is given: the server would listen nowhere")
        try:
            if not 0 <= int(self.uds_mode, 8) <= 0o777:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"uds_mode must be octal permissions like '600', got {self.uds_mode!r}"
            ) from None
        if not (0 <= self.port <= 65535):
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        if self.grpc_port is not None and not (0 <= self.grpc_port <= 65535):
            raise ConfigError(f"grpc_port must be in 0..65535, got {self.grpc_port}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {LOG_LEVELS}, got {self.log_level!r}")
        if self.max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be >= 1, got {self.max_body_bytes}")
        self.workers = parse_workers(self.workers)
        if self.workers > 1 and self.grpc_port == 0:
            raise ConfigError("grpc_port 0 (any free port) gives each worker a port of its own; name one")
        if self.dashboard_path == "off":
            self.dashboard_path = None
        if self.dashboard_path is not None:
            if not self.dashboard_path.startswith("/") or self.dashboard_path.startswith("/v2"):
                raise ConfigError(
                    f"dashboard_path must start with '/' and not be under /v2, got {self.dashboard_path!r}"
                )
            if not self.dashboard_path.endswith("/"):
                self.dashboard_path += "/"
        for key in ("header_timeout_s", "body_timeout_s", "min_body_rate", "keep_alive_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("max_connections", "max_buffered_bytes"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key} must be >= 1 (or unset), got {value}")
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"model names must be unique; repeated: {', '.join(dupes)}")
        self._check_endpoints(set(names))

    def _check_endpoints(self, models: set[str]) -> None:
        seen: set[str] = set()
        for e in self.endpoints:
            if isinstance(self.workers, int) and self.workers > 1:
                # Both join what one process saw: a label posted to one worker for an answer
                # another gave, a canary judged on one worker's share of the traffic.
                what = "feedback" if e.feedback is not None else None
                if any("rollback" in v for v in e.variants):
                    what = "an automatic rollback"
                if what:
                    raise ConfigError(
                        f"endpoint {e.name!r}: {what} needs one worker per server (workers = 1); run "
                        "more replicas of one worker each to use more cores (docs/deploy.md)"
                    )
            if e.own:
                continue  # a model's own recorder, made from its [[models]] table
            if e.name in models:
                raise ConfigError(f"[[endpoints]] {e.name!r}: a model has that name; name the endpoint apart")
            if e.name in seen:
                raise ConfigError(f"[[endpoints]] {e.name!r} is defined twice")
            seen.add(e.name)
            missing = [m for m in e.models() if m not in models]
            if missing:
                raise ConfigError(
                    f"[[endpoints]] {e.name!r}: model(s) {missing} are not served models; "
                    f"serve them too (models: {sorted(models)})"
                )

    @property
    def url(self) -> str:
        urls = [f"http://{self.host}:{self.port}"] if self.tcp else []
        if self.uds:
            urls.append(f"unix://{self.uds}")
        return " and ".join(urls)


_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "source": (str,),
    "version": (str,),
    "backend": (str, type(None)),
    "host": (str,),
    "log_level": (str,),
    "port": (int,),
    "max_body_bytes": (int,),
    "header_timeout_s": (int, float),
    "body_timeout_s": (int, float),
    "keep_alive_s": (int, float),
    "min_body_rate": (int,),
    "max_connections": (int, type(None)),
    "max_buffered_bytes": (int, type(None)),
    "graceful_timeout_s": (int, float),
    "dashboard_path": (str, type(None)),
    "uds": (str, type(None)),
    "uds_mode": (str,),
    "tcp": (bool,),
    "grpc_port": (int, type(None)),
    "workers": (int, str),
    "instances": (int,),
    "intra_op_threads": (int,),
    "inter_op_threads": (int,),
    "max_batch_size": (int,),
    "max_queue_delay_us": (int,),
    "max_queue_rows": (int,),
    "inline_max_us": (int, float, type(None)),
    "timeout_us": (int,),
    "providers": (tuple, list),
    "preferred_batch_sizes": (tuple, list),
    "inputs": (tuple, list, type(None)),
    "outputs": (tuple, list, type(None)),
    "profile": (str, type(None)),
    "registry_ref": (str, type(None)),
    "registry": (str, type(None)),
    "registry_poll_s": (int, float),
    "admin_token": (str, type(None)),
    "window_s": (int, float),
    "slices": (int,),
    "warn_psi": (int, float),
    "alert_psi": (int, float),
    "alpha": (float,),
    "min_rows": (int,),
    "eps": (float,),
    "tick_s": (int, float),
    "state_dir": (str, type(None)),
    "save_every_s": (int, float),
}


def parse_workers(value: int | str) -> int:
    """--workers / MLRT_WORKERS / workers: a count >= 1, or "auto", one per usable core."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if not text.isdigit():
            raise ConfigError(f"workers must be a number or 'auto', got {value!r}")
        value = int(text)
    if value < 1:
        raise ConfigError(f"workers must be >= 1 (or 'auto'), got {value}")
    return value


def _check_types(obj: object, where: str) -> None:
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        allowed = _TYPES.get(f.name)
        value = getattr(obj, f.name)
        if allowed is None:
            continue
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            kinds = " or ".join(t.__name__ for t in allowed if t is not type(None))
            raise ConfigError(f"{where}: {f.name} must be {kinds}, got {value!r}")
    for key in ("providers",):
        value = getattr(obj, key, None)
        if value is not None and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key} must be a list of strings, got {value!r}")


#: Files of a pickled Python object, as scikit-learn's docs save models (runtime/models/python.py).
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


def infer_backend(source: str) -> str:
    if source.endswith(PICKLE_SUFFIXES):
        return "python"
    if source.endswith(".onnx") or os.path.isfile(source):
        return "onnx"
    if os.path.isfile(os.path.join(source, "MLmodel")):
        return "mlflow"  # a model directory MLflow wrote (runtime/models/mlflow_dir.py)
    if ":" in source:
        return "python"
    if "/" in source or "." in os.path.basename(source):  # meant as a file: say it is not there
        raise ConfigError(
            f"no such model file or directory: {source!r} (a model is a path ending in .onnx, a "
            "pickled model (.pkl, .joblib), an MLflow model directory or package.module:object)"
        )
    raise ConfigError(
        f"cannot tell how to load {source!r}: give a path ending in .onnx, a pickled model "
        "(.pkl, .joblib), an MLflow model directory or package.module:object"
    )


def parse_model_spec(spec: str) -> ModelConfig:
    """`path.onnx`, `name=path.onnx`, `name=pkg.mod:obj`, `pkg.mod:obj`, or a registry
    reference `name@alias`, `name/version`, `models:/name@alias` (also `served=name@alias`)."""
    head, eq, tail = spec.partition("=")
    ref = tail if eq else spec
    if _is_registry_ref(ref):
        name = head.strip() if eq else _registry_name(ref)
        return ModelConfig(name=name, source=ref, registry_ref=ref)
    name, sep, source = spec.partition("=")
    if not sep:
        source = spec
        if ":" in spec and not spec.endswith(".onnx") and not os.path.exists(spec):
            name = spec.rpartition(":")[2]
        else:
            name = Path(spec).stem
    name, source = name.strip(), source.strip()
    if not name or not source:
        raise ConfigError(f"invalid model spec {spec!r}; expected [name=]path.onnx or name=pkg.mod:obj")
    return ModelConfig(name=name, source=source)


def _is_registry_ref(ref: str) -> bool:
    if ref.startswith("models:/"):
        return True
    if ref.endswith(".onnx") or os.path.exists(ref) or ":" in ref:
        return False
    name, slash, version = ref.partition("/")
    if "@" in ref or (bool(slash) and "/" not in version and version.isdigit()):
        return True
    # A bare name that is no file is the registry's shorthand for name@production: docs/registry.md.
    return not slash and "." not in ref and is_valid_name(ref)


def _registry_name(ref: str) -> str:
    body = ref[len("models:/") :] if ref.startswith("models:/") else ref
    return body.split("@")[0].split("/")[0]


def _coerce(cls: type, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    out = dict(data)
    for key in ("providers", "inputs", "outputs", "preferred_batch_sizes"):
        if isinstance(out.get(key), list):
            out[key] = tuple(out[key])
    return out


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from None


_ENV = {
    "host": ("MLRT_HOST", str),
    "port": ("MLRT_PORT", int),
    "log_level": ("MLRT_LOG_LEVEL", str),
    "max_body_bytes": ("MLRT_MAX_BODY_BYTES", int),
    "graceful_timeout_s": ("MLRT_GRACEFUL_TIMEOUT", float),
    "uds": ("MLRT_UDS", str),
    "grpc_port": ("MLRT_GRPC_PORT", int),
    "registry": ("MLRT_REGISTRY", str),
    "admin_token": ("MLRT_ADMIN_TOKEN", str),
    "workers": ("MLRT_WORKERS", str),
}


MODEL_FLAGS = ("max_batch_size", "max_queue_delay_us", "instances", "max_queue_rows")


def build_server_config(
    *,
    config_file: str | None = None,
    models: list[str] | tuple[str, ...] = (),
    overrides: Mapping[str, Any] | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    monitor_overrides: Mapping[str, Any] | None = None,
    profiles: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerConfig:
    """Merge file < environment < flags into one validated ServerConfig.

    `overrides` holds server flag values and `model_overrides` per-model flag values
    (applied to every model); None means "not given on the command line".
    """
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("MLRT_CONFIG")
    data: dict[str, Any] = load_toml(config_file) if config_file else {}
    unknown = sorted(set(data) - {"server", "models", "monitor", "hooks", "endpoints"})
    if unknown:
        raise ConfigError(f"{config_file}: unknown section(s) {', '.join(unknown)}")
    if not isinstance(data.get("server", {}), dict):
        raise ConfigError(f"{config_file}: [server] must be a table")
    if not isinstance(data.get("models", []), list) or not all(
        isinstance(m, dict) for m in data.get("models", [])
    ):
        raise ConfigError(f"{config_file}: models must be an array of tables ([[models]])")
    server = _coerce(ServerConfig, data.get("server", {}), f"{config_file} [server]")
    for key in ("models", "monitor", "hooks", "endpoints"):
        if key in server:
            raise ConfigError(f"{config_file} [server]: {key} is a section of its own, not a setting")
    monitor_table = data.get("monitor", {})
    if not isinstance(monitor_table, dict):
        raise ConfigError(f"{config_file}: [monitor] must be a table")
    monitor = _coerce(MonitorConfig, monitor_table, f"{config_file} [monitor]")
    hooks = data.get("hooks", [])
    if not isinstance(hooks, list) or not all(isinstance(h, dict) for h in hooks):
        raise ConfigError(f"{config_file}: hooks must be an array of tables ([[hooks]])")
    for key, (var, conv) in _ENV.items():
        if var in environ:
            try:
                server[key] = conv(environ[var])
            except ValueError:
                raise ConfigError(f"{var}={environ[var]!r} is not a valid {key}") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            server[key] = value
    model_cfgs = []
    recorders = []
    for i, entry in enumerate(data.get("models", [])):
        # `log` and `feedback` are not the model's settings but what the server does with
        # its answers: a recorder, built beside the endpoints (runtime/traffic/routing.py).
        recording = {}
        if isinstance(entry, dict):
            entry = dict(entry)
            recording = {k: entry.pop(k) for k in ("log", "feedback") if k in entry}
        fields = _coerce(ModelConfig, entry, f"{config_file} [[models]] #{i + 1}")
        try:
            model_cfgs.append(ModelConfig(**fields))
        except TypeError as exc:
            raise ConfigError(f"{config_file} [[models]] #{i + 1}: {exc}") from None
        if recording:
            name = model_cfgs[-1].name
            recorders.append(EndpointConfig(name=name, variants=({"model": name},), own=True, **recording))
    model_cfgs.extend(parse_model_spec(s) for s in models)
    flags = {k: v for k, v in (model_overrides or {}).items() if v is not None}
    if flags:
        model_cfgs = [dataclasses.replace(m, **flags) for m in model_cfgs]
    for key, value in (monitor_overrides or {}).items():
        if value is not None:
            monitor[key] = value
    profiles = [p for p in (profiles or ()) if p]
    model_cfgs = _attach_profiles(model_cfgs, profiles)
    endpoints = data.get("endpoints", [])
    if not isinstance(endpoints, list) or not all(isinstance(e, dict) for e in endpoints):
        raise ConfigError(f"{config_file}: endpoints must be an array of tables ([[endpoints]])")
    endpoint_cfgs = []
    for i, entry in enumerate(endpoints):
        unknown_keys = sorted(set(entry) - {"name", "variants", "sticky", "shadow", "log", "feedback"})
        if unknown_keys:
            raise ConfigError(
                f"{config_file} [[endpoints]] #{i + 1}: unknown setting(s) {', '.join(unknown_keys)}"
            )
        try:
            endpoint_cfgs.append(EndpointConfig(**entry))
        except TypeError as exc:
            raise ConfigError(f"{config_file} [[endpoints]] #{i + 1}: {exc}") from None
    return ServerConfig(
        models=model_cfgs,
        monitor=MonitorConfig(**monitor),
        hooks=hooks,
        endpoints=endpoint_cfgs + recorders,
        **server,
    )


def _attach_profiles(models: list[ModelConfig], profiles: Sequence[str]) -> list[ModelConfig]:
    """`--profile REF.json` (one model) or `--profile name=REF.json` (any number)."""
    by_name = {m.name: m for m in models}
    out = dict(by_name)
    for spec in profiles:
        name, sep, path = spec.partition("=")
        if not sep:
            if len(models) != 1:
                raise ConfigError(
                    f"--profile {spec}: with {len(models)} models, say which: --profile NAME=REF.json"
                )
            name, path = models[0].name, spec
        if name not in by_name:
            raise ConfigError(f"--profile {spec}: no model named {name!r}")
        out[name] = dataclasses.replace(out[name], profile=path)
    return [out[m.name] for m in models]
