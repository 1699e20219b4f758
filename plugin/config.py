"""Plugin settings: read from environment variables, optionally overridden by a file.

Every setting has an environment variable (the names of the original example) and a
camelCase key for ``--config``. Validation happens here, up front, so a bad value
stops the plugin at start with one line naming the variable instead of failing later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from simdev.plugin.faults import Fault, FaultError, parse_faults

# One ListAndWatch message carries every device and the kubelet refuses messages
# over 4 MiB. With the longest IDs the names allow (63-char prefix, 253-char node
# name) a device takes about 350 bytes on the wire, so 10000 devices stay near
# 3.5 MB (see bench/listandwatch_size.py).
MAX_DEVICES = 10000

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
)
_BY_KEY = {s.key: s for s in SETTINGS}
# Faults are a list, not a string: FAULTS holds YAML or JSON, the file a YAML list.
FAULTS_ENV = "FAULTS"
FAULTS_KEY = "faults"
# What a running plugin takes from its SimulatedDevice without a restart. The socket and
# resource name are fixed for the life of a registration, so changing them rolls the pods.
LIVE_KEYS = ("numberDevices", "deviceIdPrefix", "annotationPrefix", "envPrefix", "deviceFilePrefix")


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
    if config_file is not None:
        data = _read_file(config_file)
        if FAULTS_KEY in data:
            faults, faults_source = data.pop(FAULTS_KEY), f"{FAULTS_KEY} in {config_file}"
        for key, value in _string_values(data, f" in {config_file}").items():
            s = _BY_KEY[key]
            raw[s.field] = (value, f"{key} in {config_file}")
    return replace(_build(raw), faults=_faults(faults, faults_source))


def with_spec(cfg: Config, spec: Mapping[str, Any], where: str) -> Config:
    """cfg with the live settings and faults of a SimulatedDevice spec, checked like the rest.

    Keys that need a restart, or that the plugin does not use, are ignored. where names the
    source in error messages, e.g. "SimulatedDevice gpu".
    """
    raw = {s.field: (str(getattr(cfg, s.field)), s.env) for s in SETTINGS if s.field != "node_name"}
    raw["node_name"] = (cfg.node_name, "NODE_NAME")
    live = {k: spec[k] for k in LIVE_KEYS if spec.get(k) is not None}
    for key, value in _string_values(live, f" in {where}").items():
        raw[_BY_KEY[key].field] = (value, f"{key} in {where}")
    return replace(_build(raw), faults=_faults(spec.get(FAULTS_KEY), f"spec.faults of {where}"))


def _faults_from_text(text: str, source: str) -> Any:
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
    unknown = sorted(str(k) for k in data if k not in _BY_KEY and k != FAULTS_KEY)
    if unknown:
        known = ", ".join([*_BY_KEY, FAULTS_KEY])
        raise ConfigError(
            f"unknown key(s) in --config {path}: {', '.join(unknown)} (known keys: {known})"
        )
    return dict(data)


def _string_values(data: Mapping[str, Any], located: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in data.items():
        # Numbers are welcome for numberDevices; bool is an int subclass, so refuse it.
        if isinstance(value, int) and not isinstance(value, bool) and key == "numberDevices":
            values[key] = str(value)
        elif isinstance(value, str):
            values[key] = value
        else:
            raise ConfigError(
                f"invalid {key} {shown(value)}{located}: must be a "
                + ("non-negative integer" if key == "numberDevices" else "string")
            )
    return values


def _default(field_name: str) -> str:
    default = {f.name: f.default for f in fields(Config)}[field_name]
    return "" if default is MISSING else str(default)


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
    )


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
