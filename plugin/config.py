"""Plugin settings: read from environment variables, optionally overridden by a file.

Every setting has an environment variable (the names of the original example) and a
camelCase key for ``--config``. Validation happens here, up front, so a bad value
stops the plugin at start with one line naming the variable instead of failing later.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

from simdev.plugin.draconfig import DRA_KEY, DraConfig, DraConfigError, parse_dra
from simdev.plugin.faults import Fault, FaultError, parse_faults
from simdev.plugin.limits import MAX_DEVICES, MAX_NUMA_NODES
from simdev.plugin.policies import AllocationPolicy, SharingPolicy
from simdev.plugin.pools import POOLS_KEY, NodePool, PoolError, parse_pools, pool_for

# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107

RESERVED_DOMAINS = ("kubernetes.io", "k8s.io")

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
# The name part of a Kubernetes qualified name (labels, annotations, resources).
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
# Conservative file names: no path separators, no leading dot or dash.
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = re.compile(r"[0-9]+")


class ConfigError(Exception):
    """A setting is missing or invalid; the message is one line naming it."""


@dataclass(frozen=True)
class Config:
    node_name: str
    resource_name: str = "example.com/simple-device"
    plugin_name: str = "simple-device-plugin"
    number_devices: int = 2
    device_id_prefix: str = "simple-device"
    annotation_prefix: str = ""
    env_prefix: str = ""
    device_file_prefix: str = ""
    device_plugin_dir: Path = Path("/var/lib/kubelet/device-plugins")
    # The SimulatedDevice to follow through the API for live changes; empty: static.
    simulated_device: str = ""
    faults: tuple[Fault, ...] = ()
    # NUMA nodes the devices are split over; None: no topology.
    numa_nodes: int | None = None
    allocation_policy: AllocationPolicy = AllocationPolicy.PACKED
    # Each device is advertised this many times (1: no sharing).
    sharing_replicas: int = 1
    sharing_policy: SharingPolicy = SharingPolicy.SPREAD
    fail_requests_greater_than_one: bool = False
    # Prometheus metrics on this address and port; port 0: no metrics endpoint.
    metrics_address: str = "0.0.0.0"
    metrics_port: int = 0
    # Pools of nodes with their own settings (for_node picks one by the node's labels).
    node_pools: tuple[NodePool, ...] = ()
    # The node pool these settings come from; empty: the top level.
    pool: str = ""
    # The DRA node service beside the device plugin (only from --config); None: off.
    dra: DraConfig | None = None

    @property
    def advertised_devices(self) -> int:
        return self.number_devices * self.sharing_replicas

    @property
    def socket_name(self) -> str:
        return f"{self.plugin_name}.sock"

    @property
    def socket_path(self) -> Path:
        return self.device_plugin_dir / self.socket_name

    @property
    def kubelet_socket(self) -> Path:
        return self.device_plugin_dir / "kubelet.sock"


@dataclass(frozen=True)
class _Setting:
    env: str
    key: str
    field: str


SETTINGS = (
    _Setting("NODE_NAME", "nodeName", "node_name"),
    _Setting("RESOURCE_NAME", "resourceName", "resource_name"),
    _Setting("PLUGIN_NAME", "pluginName", "plugin_name"),
    _Setting("NUMBER_DEVICES", "numberDevices", "number_devices"),
    _Setting("DEVICE_ID_PREFIX", "deviceIdPrefix", "device_id_prefix"),
    _Setting("ANNOTATION_PREFIX", "annotationPrefix", "annotation_prefix"),
    _Setting("ENV_PREFIX", "envPrefix", "env_prefix"),
    _Setting("DEVICE_FILE_PREFIX", "deviceFilePrefix", "device_file_prefix"),
    _Setting("DEVICE_PLUGIN_DIR", "devicePluginDir", "device_plugin_dir"),
    _Setting("SIMULATED_DEVICE", "simulatedDevice", "simulated_device"),
    _Setting("NUMA_NODES", "topology.numaNodes", "numa_nodes"),
    _Setting("ALLOCATION_POLICY", "allocationPolicy", "allocation_policy"),
    _Setting("SHARING_REPLICAS", "sharing.replicas", "sharing_replicas"),
    _Setting("SHARING_POLICY", "sharing.policy", "sharing_policy"),
    _Setting(
        "FAIL_REQUESTS_GREATER_THAN_ONE",
        "sharing.failRequestsGreaterThanOne",
        "fail_requests_greater_than_one",
    ),
    _Setting("METRICS_ADDRESS", "metricsAddress", "metrics_address"),
    _Setting("METRICS_PORT", "metricsPort", "metrics_port"),
)
_BY_KEY = {s.key: s for s in SETTINGS}
# Keys that hold a mapping of settings; their settings are named "<group>.<key>".
GROUPS = ("topology", "sharing")
_INT_KEYS = ("numberDevices", "topology.numaNodes", "sharing.replicas", "metricsPort")
_BOOL_KEYS = ("sharing.failRequestsGreaterThanOne",)
_KINDS = {
    **dict.fromkeys(_INT_KEYS, "non-negative integer"),
    **dict.fromkeys(_BOOL_KEYS, "boolean"),
}
# Faults are a list, not a string: FAULTS holds YAML or JSON, the file a YAML list.
FAULTS_ENV = "FAULTS"
FAULTS_KEY = "faults"
# What a running plugin takes from its SimulatedDevice without a restart. The socket and
# resource name are fixed for the life of a registration, so changing them rolls the pods.
# The groups (topology, sharing) apply as a whole.
LIVE_KEYS = (
    "numberDevices",
    "deviceIdPrefix",
    "annotationPrefix",
    "envPrefix",
    "deviceFilePrefix",
    "allocationPolicy",
    *GROUPS,
)
# The same, one key per setting ("sharing.replicas"): what a node pool's settings derive from.
_LIVE_SETTINGS = frozenset(
    s.key for s in SETTINGS if s.key in LIVE_KEYS or s.key.partition(".")[0] in GROUPS
)


def load(env: Mapping[str, str], config_file: Path | None = None) -> Config:
    """Builds the configuration from the environment, then the file's keys on top."""
    raw: dict[str, tuple[str, str]] = {}  # field -> (value, where it came from)
    for s in SETTINGS:
        if s.env in env:
            raw[s.field] = (env[s.env], s.env)
    faults: Any = None
    if env.get(FAULTS_ENV):
        faults = _faults_from_text(env[FAULTS_ENV], FAULTS_ENV)
    faults_source = FAULTS_ENV
    pools: Any = None
    if config_file is not None:
        data = _read_file(config_file)
        if FAULTS_KEY in data:
            faults, faults_source = data.pop(FAULTS_KEY), f"{FAULTS_KEY} in {config_file}"
        pools = data.pop(POOLS_KEY, None)
        dra = data.pop(DRA_KEY, None)
        for key, value in _string_values(data, f" in {config_file}").items():
            s = _BY_KEY[key]
            raw[s.field] = (value, f"{key} in {config_file}")
    cfg = replace(_build(raw), faults=_faults(faults, faults_source))
    if config_file is not None:
        cfg = replace(cfg, dra=_dra(dra, f" in --config {config_file}"))
    return replace(cfg, node_pools=_pools(pools, cfg, f"--config {config_file}"))


def _dra(raw: Any, where: str) -> DraConfig | None:
    try:
        return parse_dra(raw, where)
    except DraConfigError as err:
        raise ConfigError(str(err)) from err


def with_spec(cfg: Config, spec: Mapping[str, Any], where: str) -> Config:
    """cfg with the live settings and faults of a SimulatedDevice spec, checked like the rest.

    Keys that need a restart, or that the plugin does not use, are ignored. A group applies
    as a whole, as the SimulatedDevice means it: an absent topology is no topology, and an
    absent sharing (or a key missing from it) is the default. where names the source in
    error messages, e.g. "SimulatedDevice gpu".
    """
    raw = {s.field: (_text(getattr(cfg, s.field)), s.env) for s in SETTINGS}
    located = f" in {where}"
    live = {k: spec[k] for k in LIVE_KEYS if k not in GROUPS and spec.get(k) is not None}
    for group in GROUPS:
        for s in SETTINGS:
            if s.key.startswith(f"{group}."):
                raw[s.field] = (_default(s.field), s.env)
        given = _flatten({group: spec.get(group)}, located)
        live.update({k: v for k, v in given.items() if k in _BY_KEY and v is not None})
    for key, value in _string_values(live, located).items():
        raw[_BY_KEY[key].field] = (value, f"{key}{located}")
    # The DRA settings need a restart (sockets, driver): they stay the file's.
    faults = _faults(spec.get(FAULTS_KEY), f"spec.faults of {where}")
    cfg = replace(_build(raw), faults=faults, dra=cfg.dra)
    return replace(cfg, node_pools=_pools(spec.get(POOLS_KEY), cfg, where))


def for_node(cfg: Config, node_labels: Mapping[str, str]) -> Config:
    """The settings of a node with these labels: its pool's (the first that matches) or cfg."""
    return with_pool(cfg, pool_for(cfg.node_pools, node_labels))


def with_pool(cfg: Config, pool: NodePool | None, location: str = "") -> Config:
    """cfg, the top level's settings, with a pool's overrides on top, checked like the rest.

    Every live setting is named as the pool's in errors (location, e.g. "nodePools[0] (big)
    of SimulatedDevice gpu"): that is where the combination that fails is declared.
    """
    if pool is None:
        return cfg
    located = f" in {location or f'{POOLS_KEY} {pool.name}'}"
    raw = {
        s.field: (
            _text(getattr(cfg, s.field)),
            f"{s.key}{located}" if s.key in _LIVE_SETTINGS else s.env,
        )
        for s in SETTINGS
    }
    for key, value in _string_values(pool.settings, located).items():
        raw[_BY_KEY[key].field] = (value, f"{key}{located}")
    return replace(
        _build(raw), faults=cfg.faults, node_pools=cfg.node_pools, pool=pool.name, dra=cfg.dra
    )


def _pools(raw: Any, cfg: Config, where: str) -> tuple[NodePool, ...]:
    """The pools of a spec or file, each checked as a node of it would get its settings."""
    try:
        pools = parse_pools(raw)
    except PoolError as err:
        raise ConfigError(f"invalid {POOLS_KEY} of {where}: {err}") from err
    for n, pool in enumerate(pools):
        with_pool(cfg, pool, f"{POOLS_KEY}[{n}] ({pool.name}) of {where}")
    return pools


def _flatten(data: Mapping[str, Any], located: str) -> dict[str, Any]:
    """The settings of a mapping, with those of a group named "<group>.<key>"."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key not in GROUPS:
            flat[key] = value
        elif value is None:
            continue  # an absent group
        elif isinstance(value, Mapping):
            flat.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            raise ConfigError(f"invalid {key} {shown(value)}{located}: must be a mapping")
    return flat


def _text(value: Any) -> str:
    """A setting's value as its environment variable would hold it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _faults_from_text(text: str, source: str) -> Any:
    import yaml  # only faults and --config files need it: the plugin keeps 1 MB less

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse {source}: {' '.join(str(err).split())}") from err


def _faults(raw: Any, source: str) -> tuple[Fault, ...]:
    try:
        return parse_faults(raw)
    except FaultError as err:
        raise ConfigError(f"invalid {source}: {err}") from err


def _read_file(path: Path) -> dict[str, Any]:
    """Reads a YAML (or JSON, which YAML accepts) mapping of camelCase keys."""
    import yaml

    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read --config {path}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        reason = " ".join(str(err).split())
        raise ConfigError(f"cannot parse --config {path}: {reason}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path} must hold a mapping of settings")
    flat = _flatten(data, f" in {path}")
    extra = (FAULTS_KEY, POOLS_KEY, DRA_KEY)
    unknown = sorted(str(k) for k in flat if k not in _BY_KEY and k not in extra)
    if unknown:
        known = ", ".join([*_BY_KEY, *extra])
        raise ConfigError(
            f"unknown key(s) in --config {path}: {', '.join(unknown)} (known keys: {known})"
        )
    return flat


def _string_values(data: Mapping[str, Any], located: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in data.items():
        # Numbers are welcome for counts; bool is an int subclass, so refuse it there.
        if isinstance(value, int) and not isinstance(value, bool) and key in _INT_KEYS:
            values[key] = str(value)
        elif isinstance(value, bool) and key in _BOOL_KEYS:
            values[key] = _text(value)
        elif isinstance(value, str):
            values[key] = value
        else:
            expected = _KINDS.get(key, "string")
            raise ConfigError(f"invalid {key} {shown(value)}{located}: must be a {expected}")
    return values


def _default(field_name: str) -> str:
    default = {f.name: f.default for f in fields(Config)}[field_name]
    return "" if default is MISSING else _text(default)


def _build(raw: Mapping[str, tuple[str, str]]) -> Config:
    def get(field_name: str) -> tuple[str, str]:
        env_name = next(s.env for s in SETTINGS if s.field == field_name)
        return raw.get(field_name, (_default(field_name), env_name))

    def check(field_name: str, rule: Callable[[str], str | None]) -> str:
        value, source = get(field_name)
        problem = rule(value)
        if problem:
            raise ConfigError(_invalid(source, value, problem))
        return value

    node, node_src = get("node_name")
    if not node:
        if " in " in node_src:  # set, but empty, in the file
            raise ConfigError(_invalid(node_src, node, "must not be empty"))
        raise ConfigError(f"{node_src} is required (the node's name, e.g. from spec.nodeName)")
    check("node_name", _node_name_problem)

    count = int(check("number_devices", _number_problem))
    replicas = int(check("sharing_replicas", _replicas_problem))
    if count * replicas > MAX_DEVICES:
        raise ConfigError(
            _too_many(get("number_devices")[1], get("sharing_replicas")[1], count, replicas)
        )
    numa = check("numa_nodes", _numa_problem)
    last_index = max(count - 1, 0)
    plugin_dir = Path(check("device_plugin_dir", _dir_problem)).absolute()
    return Config(
        node_name=node,
        resource_name=check("resource_name", resource_name_problem),
        plugin_name=check("plugin_name", lambda v: _plugin_name_problem(v, plugin_dir)),
        number_devices=count,
        device_id_prefix=check("device_id_prefix", _id_prefix_problem),
        annotation_prefix=check("annotation_prefix", lambda v: _annotation_problem(v, last_index)),
        env_prefix=check("env_prefix", _env_prefix_problem),
        device_file_prefix=check(
            "device_file_prefix", lambda v: _file_prefix_problem(v, last_index)
        ),
        device_plugin_dir=plugin_dir,
        simulated_device=check("simulated_device", _object_name_problem),
        numa_nodes=int(numa) if numa else None,
        allocation_policy=AllocationPolicy(
            check("allocation_policy", lambda v: _choice_problem(v, AllocationPolicy))
        ),
        sharing_replicas=replicas,
        sharing_policy=SharingPolicy(
            check("sharing_policy", lambda v: _choice_problem(v, SharingPolicy))
        ),
        fail_requests_greater_than_one=check("fail_requests_greater_than_one", _bool_problem)
        == "true",
        metrics_address=check("metrics_address", _address_problem),
        metrics_port=int(check("metrics_port", _port_problem)),
    )


def _address_problem(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "must be an IP address to listen on, e.g. 0.0.0.0 or 127.0.0.1"
    return None


def _port_problem(value: str) -> str | None:
    if not _DIGITS.fullmatch(value) or int(value) > 65535:
        return "must be a port number, 0 (no metrics endpoint) to 65535"
    return None


def _invalid(source: str, value: str, problem: str) -> str:
    # "NUMBER_DEVICES" or "numberDevices in FILE": keep the file part after the value.
    name, _, where = source.partition(" in ")
    located = f" in {where}" if where else ""
    return f"invalid {name} {shown(value)}{located}: {problem}"


MAX_SHOWN = 300


def shown(value: object) -> str:
    """A value quoted for a one-line message: control characters escaped, long ones cut."""
    text = json.dumps(str(value), ensure_ascii=False)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 4] + '..."'


def _node_name_problem(value: str) -> str | None:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        return "must be a node name (lowercase DNS subdomain, at most 253 characters)"
    return None


def _number_problem(value: str) -> str | None:
    if not _DIGITS.fullmatch(value):
        return "must be a non-negative integer"
    if int(value) > MAX_DEVICES:
        return f"must be at most {MAX_DEVICES} so the device list fits in one kubelet message"
    return None


def _replicas_problem(value: str) -> str | None:
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_DEVICES:
        return f"must be an integer from 1 to {MAX_DEVICES}"
    return None


def _too_many(count_source: str, replicas_source: str, count: int, replicas: int) -> str:
    count_name, _, where = count_source.partition(" in ")
    replicas_name, _, other = replicas_source.partition(" in ")
    named = (
        f"{count_name} * {replicas_name} in {where}"
        if where and where == other
        else f"{count_source} * {replicas_source}"
    )
    return (
        f"invalid {named}: {count} * {replicas} = {count * replicas} devices, must be at most "
        f"{MAX_DEVICES} so the device list fits in one kubelet message"
    )


def _numa_problem(value: str) -> str | None:
    if value and (not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_NUMA_NODES):
        return f"must be an integer from 1 to {MAX_NUMA_NODES} (unset: no topology)"
    return None


def _choice_problem(value: str, choices: type[enum.StrEnum]) -> str | None:
    if value not in {c.value for c in choices}:
        return f"must be one of {', '.join(c.value for c in choices)}"
    return None


def _bool_problem(value: str) -> str | None:
    return None if value in ("true", "false") else "must be true or false"


def resource_name_problem(value: str) -> str | None:
    """Why value is not an extended resource name a plugin may register, or None."""
    domain, slash, name = value.partition("/")
    if not slash or "/" in name:
        return "must be <domain>/<name>, e.g. example.com/simple-device"
    if len(domain) > 253 or not _DNS_SUBDOMAIN.fullmatch(domain):
        return f"domain {domain!r} is not a lowercase DNS subdomain"
    if len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        return (
            f"name {name!r} must be at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    for reserved in RESERVED_DOMAINS:
        if domain == reserved or domain.endswith("." + reserved):
            return f"the {reserved} domain is reserved for Kubernetes"
    return None


def _plugin_name_problem(value: str, plugin_dir: Path) -> str | None:
    if not _FILE_NAME.fullmatch(value) or len(value) > 100:
        return (
            "must be a socket file name: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 100 characters"
        )
    if value == "kubelet":
        return "kubelet.sock is the kubelet's own socket"
    path = plugin_dir / f"{value}.sock"
    size = len(str(path).encode())
    if size > MAX_SOCKET_PATH:
        return f"socket path {path} is {size} bytes, over the {MAX_SOCKET_PATH}-byte unix limit"
    return None


def _id_prefix_problem(value: str) -> str | None:
    if len(value) > 63 or not _QUALIFIED_NAME.fullmatch(value):
        return (
            "must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter "
            "or digit"
        )
    return None


def _annotation_problem(value: str, last_index: int) -> str | None:
    if not value:
        return None
    prefix, slash, name = value.rpartition("/")
    key_name = f"{name}-{last_index}"
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"prefix {prefix!r} is not a lowercase DNS subdomain"
    if len(key_name) > 63 or not _QUALIFIED_NAME.fullmatch(key_name):
        return (
            f"annotation key name {key_name!r} must be at most 63 letters, digits, '-', '_' "
            "or '.', starting with a letter or digit"
        )
    return None


def _env_prefix_problem(value: str) -> str | None:
    if value and not _SHELL_NAME.fullmatch(value):
        return "must be a shell variable name: letters, digits and '_', not starting with a digit"
    return None


def _file_prefix_problem(value: str, last_index: int) -> str | None:
    if not value:
        return None
    if not _FILE_NAME.fullmatch(value):
        return (
            "must be a file name: letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if len(f"{value}-{last_index}".encode()) > 255:
        return "device file names would exceed 255 bytes"
    return None


def _object_name_problem(value: str) -> str | None:
    if value and (len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value)):
        return "must be a SimulatedDevice name (lowercase DNS subdomain)"
    return None


def _dir_problem(value: str) -> str | None:
    if not value:
        return "must be a directory path"
    if "\0" in value:
        return "must not contain NUL"
    return None
