"""Typed field access to an arm YAML (configs/arm/<name>.yaml), with errors that name the file and field.

Every getter checks the field's type and says what was expected and what was found, so
`description.load_arm` can read the file top to bottom without its own error plumbing.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

LIMIT_KEYS = ("lower", "upper", "velocity")


@dataclass(frozen=True)
class ArmYaml:
    """A mapping read from an arm YAML; `prefix` is the dotted path of a section ("gripper.")."""

    path: Path
    data: dict[str, Any]
    prefix: str = ""

    @classmethod
    def read(cls, path: Path) -> ArmYaml:
        with open(path) as f:
            data = yaml.safe_load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of fields (name, urdf, joints, ...), found {data!r}")
        return cls(path, data)

    def error(self, field: str, expected: str, found: object) -> ValueError:
        return ValueError(f"{self.path}: {self.prefix}{field}: expected {expected}; found {found!r}")

    def _get(self, field: str, default: object = None) -> Any:
        if field not in self.data:
            if default is not None:
                return default
            raise ValueError(f"{self.path}: {self.prefix}{field}: required field missing")
        return self.data[field]

    def allow_only(self, fields: Sequence[str]) -> None:
        """Refuse unknown keys (a typo would otherwise be ignored silently)."""
        for key in self.data:
            if key not in fields:
                raise self.error(str(key), f"one of the fields {', '.join(fields)}", key)

    def section(self, field: str) -> ArmYaml:
        value = self._get(field)
        if not isinstance(value, dict):
            raise self.error(field, "a mapping", value)
        return ArmYaml(self.path, value, f"{self.prefix}{field}.")

    def string(self, field: str, default: str | None = None) -> str:
        value = self._get(field, default)
        if not isinstance(value, str) or not value:
            raise self.error(field, "a non-empty string", value)
        return value

    def strings(self, field: str) -> tuple[str, ...]:
        value = self._get(field)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(field, "a list of names", value)
        return tuple(value)

    def number(self, field: str, default: float | None = None) -> float:
        value = self._get(field, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(field, "a finite number", value)
        return float(value)

    def numbers(self, field: str, count: int) -> np.ndarray:
        value = self._get(field)
        if (not isinstance(value, list) or len(value) != count
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise self.error(field, f"a list of {count} numbers", value)
        return np.array(value, dtype=np.float64)

    def choice(self, field: str, options: Sequence[str]) -> str:
        value = self._get(field)
        if value not in options:
            raise self.error(field, f"one of {', '.join(options)}", value)
        return str(value)

    def urdf_path(self) -> Path:
        """The `urdf` field: {package: <installed package>, path: <inside it>}, or a path relative
        to this YAML's folder (or absolute). The package is located, not imported: importing
        mani_skill takes seconds."""
        value = self._get("urdf")
        if isinstance(value, str):
            path = (self.path.parent / value).resolve()
        elif isinstance(value, dict) and set(value) == {"package", "path"}:
            urdf = self.section("urdf")
            package = urdf.string("package")
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise urdf.error("package", "an installed Python package holding the URDF", package)
            path = Path(list(spec.submodule_search_locations)[0]) / urdf.string("path")
        else:
            raise self.error("urdf", "a path, or {package: <name>, path: <file inside it>}", value)
        if not path.is_file():
            raise self.error("urdf", "an existing URDF file", str(path))
        return path

    def tightened_limits(self, joints: tuple[str, ...], lower: np.ndarray, upper: np.ndarray,
                         velocity: np.ndarray, urdf: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The URDF's limits [n] with the optional `limits: {<joint>: {lower, upper, velocity}}` applied.

        A value may only tighten the URDF's: a looser one is an error naming the joint and the
        URDF's bound, because limits are what a safety filter trusts.
        """
        bounds = {"lower": lower.copy(), "upper": upper.copy(), "velocity": velocity.copy()}
        if "limits" not in self.data or self.data["limits"] in (None, {}):
            return bounds["lower"], bounds["upper"], bounds["velocity"]
        limits = self.section("limits")
        for joint in limits.data:
            if joint not in joints:
                raise limits.error(str(joint), f"one of this arm's joints ({', '.join(joints)})", joint)
            entry = limits.section(joint)
            entry.allow_only(LIMIT_KEYS)
            i = joints.index(joint)
            for key in entry.data:
                value, bound = entry.number(key), float(bounds[key][i])
                looser = value < bound if key == "lower" else value > bound
                if looser:
                    raise ValueError(f"{self.path}: limits.{joint}.{key}: {value} loosens the {key} bound {bound} of "
                                     f"joint {joint!r} in {urdf}; limits may only tighten the URDF's")
                bounds[key][i] = value
            if not bounds["lower"][i] < bounds["upper"][i]:
                raise entry.error("lower", f"a bound below upper ({bounds['upper'][i]})", float(bounds["lower"][i]))
            if not bounds["velocity"][i] > 0:
                raise entry.error("velocity", "a positive speed", float(bounds["velocity"][i]))
        return bounds["lower"], bounds["upper"], bounds["velocity"]
