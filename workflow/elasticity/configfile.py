"""Strict YAML config files: errors name file and line; a duplicate key is an error.

PyYAML keeps the last of two equal keys without a word, so a pasted section silently overrides
the one above it; here it fails instead.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigFileError(ValueError):
    """A config file that cannot be read as a mapping; the message starts with its path."""


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            # `<<: *base` merges keys that the mapping may then override: not a duplicate.
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it with its position
                continue
            line = key_node.start_mark.line + 1
            if seen is not None:
                raise ConfigFileError(f"{key_node.start_mark.name}:{line}: duplicate key "
                                      f"'{key}' (first defined on line {seen})")
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in YAML file `path`; ConfigFileError names the file and line of a problem."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.load(fh, Loader=_StrictLoader)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            # The problem's position can be after the cause (a missing ':' is noticed on the
            # next line); the context names where the parser was.
            context = (f" ({err.context} on line {err.context_mark.line + 1})"
                       if err.context and err.context_mark else "")
            raise ConfigFileError(f"{where}: {err.problem}{context}") from None
        except yaml.YAMLError as err:
            raise ConfigFileError(f"{path}: {err}") from None
    if not isinstance(data, dict):
        found = "an empty document" if data is None else f"a {type(data).__name__}"
        raise ConfigFileError(f"{path}: the top level must be a mapping of config keys, "
                              f"found {found}")
    return data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` updated by `override` as Snakemake's `--configfile` does it
    (snakemake.utils.update_config): mappings merge key by key, anything else in `override`
    replaces. Returns a new dict; the inputs are left as they are."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if not isinstance(value, Mapping):
            merged[key] = copy.deepcopy(value)
            continue
        current = merged.get(key, {})
        if isinstance(current, Mapping):
            merged[key] = merge(dict(current), dict(value))
        elif value:  # update_config leaves a non-mapping in place under an empty mapping
            merged[key] = merge({}, dict(value))
    return merged


def main(argv: list[str] | None = None) -> int:
    """`python -m elasticity.configfile [OVERRIDE.yaml ...]`: read the default config and the
    overrides strictly, merge them and validate the result, as a run would before any job.

    Snakemake reads `--configfile` files itself before the workflow starts and reports a syntax
    error there without its line; this reports it with file and line."""
    import argparse
    import sys

    from elasticity import config as cfg

    parser = argparse.ArgumentParser(prog="python -m elasticity.configfile",
                                     description=main.__doc__)
    parser.add_argument("overrides", nargs="*", help="config files that override the default")
    parser.add_argument("--default", default="config.yaml", help="the default config")
    ns = parser.parse_args(argv)
    try:
        config = load_yaml(ns.default)
        for path in ns.overrides:
            config = merge(config, load_yaml(path))
        # Devices are checked when a run starts on this machine (a GPU config can be planned
        # anywhere).
        cfg.validate(config, check_devices=False)
    except (ConfigFileError, cfg.ConfigError, OSError) as err:
        print(err, file=sys.stderr)
        return 1
    print(f"config ok: {ns.default}" + "".join(f" + {p}" for p in ns.overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
