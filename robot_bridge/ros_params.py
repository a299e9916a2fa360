"""ROS 2 node arguments without a ROS install: params files, `-p name:=value`, remaps.

The bridge's nodes are started by `ros2 launch` (which passes `--ros-args -r __node:=NAME
--params-file FILE -p name:=value ...`) or by hand. `parse_ros_args` reads those arguments the
way rcl does:

- a params file is YAML whose top-level keys are node names (`name`, `/name`, or the wildcards
  `/**` and `**`), each holding `ros__parameters`; nested mappings flatten to dotted names
  (`safety: {velocity_scale: 0.3}` is the parameter `safety.velocity_scale`);
- `-p name:=value` values are YAML (`-p goal_pos:=[0.5,0,0.1]`, `-p camera:=true`);
- `-r from:=to` remaps a topic; `-r __node:=name` renames the node; `-r __ns:=/left` puts it
  in a namespace: relative names (`joint_states`) and private ones (`~/status`) resolve under it
  as rcl resolves them (`/left/joint_states`, `/left/<node>/status`), absolute names (`/tf`,
  `/diagnostics`) stay as they are. Two arms in one cell each run their nodes in their own
  namespace;
- files and `-p` apply in command-line order, later ones win; `--params-file` is also accepted
  before `--ros-args`, and a lone `--` ends the ROS arguments.

`to_params(cls, args)` turns the result into a node's parameter dataclass, refusing unknown
names and wrong types with the parameter's name, where it came from and what was expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

# rcl's own options that take a value; read and ignored here (logging goes through Python's logging).
_IGNORED_WITH_VALUE = {"--log-level", "--log-config-file", "--enclave", "-e", "--disable-external-lib-logs"}
_IGNORED_FLAGS = {"--enable-rosout-logs", "--disable-rosout-logs", "--enable-stdout-logs",
                  "--disable-stdout-logs", "--enable-external-lib-logs"}

P = TypeVar("P")


class ParamError(ValueError):
    """A node argument or parameter is malformed, unknown or of the wrong type."""


@dataclass
class RosArgs:
    """What the command line asked of one node.

    Attributes:
        node_name: the node's name (default, or `-r __node:=`).
        params: parameter values by (dotted) name.
        namespace: the node's namespace (`-r __ns:=`), "/" for none.
        sources: where each parameter was set ("-p" or the file), for error messages.
        remaps: topic remappings, from -> to.
    """

    node_name: str
    params: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    remaps: dict[str, str] = field(default_factory=dict)
    namespace: str = "/"

    def topic(self, name: str) -> str:
        """A topic name resolved as rcl does: `~` to the node's private namespace, a relative name
        under the node's namespace, then any remap (of the resolved or the given name, its target
        resolved the same way); "" stays ""."""
        if not name:
            return ""
        resolved = self._expand(name)
        for key in (resolved, name, resolved.lstrip("/")):
            if key in self.remaps:
                return self._expand(self.remaps[key])
        return resolved

    def _expand(self, name: str) -> str:
        prefix = self.namespace.rstrip("/")
        if name.startswith("~"):
            return f"{prefix}/{self.node_name}{name[1:]}"
        return name if name.startswith("/") else f"{prefix}/{name}"


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def read_params_file(path: str | Path, node_name: str) -> dict[str, Any]:
    """The parameters a YAML params file gives `node_name` (wildcard sections first, then its own)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParamError(f"params file {path}: cannot read it ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamError(f"params file {path}: expected a mapping of node names, found {type(data).__name__}")
    out: dict[str, Any] = {}
    for key in ("**", "/**", node_name, f"/{node_name}"):
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters", {}), dict):
            raise ParamError(f"params file {path}: section {key!r} must be a mapping with 'ros__parameters'")
        out.update(_flatten(section.get("ros__parameters") or {}))
    return out


def _split_assignment(text: str, option: str) -> tuple[str, str]:
    if ":=" not in text:
        raise ParamError(f"{option} {text!r}: expected NAME:=VALUE")
    name, value = text.split(":=", 1)
    if not name:
        raise ParamError(f"{option} {text!r}: empty name")
    return name, value


def parse_ros_args(argv: Sequence[str], node_name: str) -> RosArgs:
    """Parse a node's command line (without the program name); see the module docstring.

    Raises:
        ParamError: a malformed option, a missing value, an unreadable params file, or a
            non-ROS argument the nodes do not take.
    """
    argv = list(argv)
    # Remaps first: `__node` decides which params-file sections apply.
    actions: list[tuple[str, str]] = []
    remaps: dict[str, str] = {}
    in_ros, i = False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--" and in_ros:
            in_ros = False
        elif arg in ("--params-file",) or (in_ros and arg in ("-p", "--param", "-r", "--remap")):
            if i + 1 >= len(argv):
                raise ParamError(f"{arg}: missing its value")
            value = argv[i + 1]
            if arg in ("-r", "--remap"):
                src, dst = _split_assignment(value, arg)
                remaps[src] = dst
            else:
                actions.append((arg, value))
            i += 1
        elif in_ros and arg in _IGNORED_WITH_VALUE:
            i += 1
        elif in_ros and arg in _IGNORED_FLAGS:
            pass
        else:
            raise ParamError(f"unexpected argument {arg!r}; nodes take --params-file FILE and "
                             "--ros-args [-p NAME:=VALUE] [-r FROM:=TO] [--params-file FILE]")
        i += 1
    name = remaps.pop("__node", remaps.pop("__name", node_name))
    namespace = remaps.pop("__ns", "/")
    if not namespace.startswith("/") or (len(namespace) > 1 and namespace.endswith("/")):
        raise ParamError(f"-r __ns:={namespace}: expected an absolute namespace such as /left")
    result = RosArgs(node_name=name, remaps=remaps, namespace=namespace)
    for option, value in actions:
        if option == "--params-file":
            values = read_params_file(value, name)
            result.params.update(values)
            result.sources.update({k: value for k in values})
        else:
            key, text = _split_assignment(value, option)
            try:
                result.params[key] = yaml.safe_load(text) if text else ""
            except yaml.YAMLError as exc:
                raise ParamError(f"-p {value!r}: the value is not valid YAML ({exc})") from exc
            result.sources[key] = "-p"
    return result


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    origin = typing.get_origin(hint)
    where = f"parameter {name!r} (from {source})"
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ParamError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ParamError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ParamError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ParamError(f"{where}: expected a string, got {value!r}")
    if origin in (list, tuple):
        (inner, *_rest) = typing.get_args(hint) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ParamError(f"{where}: expected a list, got {value!r}")
        items = [_coerce(name, v, inner, source) if inner is not Any else v for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ParamError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(name, value, option, source)
            except ParamError:
                continue
        raise ParamError(f"{where}: {value!r} matches none of {hint}")
    return value


def to_params(cls: type[P], args: RosArgs, groups: Mapping[str, str] | None = None) -> P:
    """Build the node's parameter dataclass `cls` from `args`.

    Args:
        groups: dotted-parameter prefix -> dict field of `cls` that collects them: with
            {"safety": "safety"}, `safety.velocity_scale` goes into the field `safety` as
            {"velocity_scale": ...}, checked by whoever consumes that field.

    Raises:
        ParamError: an unknown parameter or a value of the wrong type (names both).
    """
    groups = dict(groups or {})
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    grouped: dict[str, dict[str, Any]] = {f: {} for f in groups.values()}
    for name, value in args.params.items():
        source = args.sources.get(name, "?")
        prefix, _, rest = name.partition(".")
        if rest and prefix in groups:
            grouped[groups[prefix]][rest] = value
        elif name in known:
            values[name] = _coerce(name, value, hints[name], source)
        else:
            listed = sorted(known - set(groups.values())) + [f"{p}.*" for p in groups]
            raise ParamError(f"parameter {name!r} (from {source}) is not a parameter of {args.node_name}; "
                             f"expected one of {', '.join(listed)}")
    for fname, entries in grouped.items():
        if entries:
            values[fname] = {**values.get(fname, {}), **entries}
    return cls(**values)
