"""The typed configuration: one declaration per key, YAML that reads numbers as a user writes them, and the
checks that run in the parent before anything expensive.

train_mlx.py declares every key once as a `Setting` (default, type, range, scope, whether it changes the result);
this module resolves defaults < STAGES < YAML file < command line, and says what overrode what.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

GLOBAL, STAGE = "global", "stage"


class ConfigError(ValueError):
    """A configuration value the user must fix; the message names the key, the value and the fix."""


@dataclass(frozen=True)
class Setting:
    default: object
    type: type = None  # None: the default's type
    min: float = None
    max: float = None
    zero_ok: bool = True  # False: 0 is refused even inside [min, max] (-1 means "all" for some keys)
    choices: tuple = None
    nullable: bool = False  # None is allowed (and means "automatic" where the comment says so)
    scope: str = STAGE  # GLOBAL keys apply to every stage and may not be set per stage
    fingerprint: bool = True  # False: logging only; changing it never makes a finished stage stale

    @property
    def kind(self):
        return self.type or type(self.default)


# LoRA's own keys: mlx_lm's lora_parameters (keys: which projections; None = mlx_lm's default set).
LORA_KEYS = {"rank": Setting(8, min=1), "scale": Setting(20.0, min=0), "dropout": Setting(0.0, min=0, max=0.99),
             "keys": Setting(None, type=list, nullable=True)}


# ---------------------------------------------------------------------------------------------------------
# YAML: 1e-5 is a float (YAML 1.1 reads it as a string; mlx_lm adds the same resolver)
# ---------------------------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_yaml(text):
    return yaml.load(text, Loader=_Loader)


def load_yaml_file(path, settings, stage_keys, stage_numbers):
    """{"shared": {...}, "stages": {n: {...}}} from a YAML file; every problem names the file and the key."""
    try:
        raw = parse_yaml(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file ({getattr(e, 'strerror', None) or e})")
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of key: value lines, got a {type(raw).__name__}")
    raw = dict(raw)
    stages = raw.pop("stages", None) or {}
    if not isinstance(stages, dict):
        raise ConfigError(f"{path}: stages: must be a mapping like `stages: {{2: {{iters: 500}}}}`")
    check_known(raw, set(settings) | set(stage_keys), f"{path}")
    out = {"shared": raw, "stages": {}}
    for number, overrides in stages.items():
        where = f"{path}: stages.{number}"
        if str(number) not in map(str, stage_numbers):
            raise ConfigError(f"{where}: no such stage (known: {', '.join(map(str, stage_numbers))})")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}: must be a mapping of key: value lines")
        check_known(overrides, set(settings) | set(stage_keys), where)
        shared_only = sorted(k for k in overrides if k in settings and settings[k].scope == GLOBAL)
        if shared_only:
            raise ConfigError(f"{where}: {', '.join(shared_only)} apply to every stage (they decide the data split "
                              "and the chain); set them at the top level of the file, not under stages:")
        out["stages"][int(number)] = overrides
    return out


def check_known(mapping, known, where):
    unknown = sorted(map(str, set(mapping) - known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


# ---------------------------------------------------------------------------------------------------------
# Resolving and checking
# ---------------------------------------------------------------------------------------------------------
def resolve(layers, quiet=2):
    """Merge (name, mapping) layers in order. Returns (config, notes on each value a later layer changed);
    the first `quiet` layers (the script's own defaults and stage table) are not noted."""
    config, source, notes = {}, {}, []
    for position, (name, layer) in enumerate(layers):
        for key, value in layer.items():
            if key in config and config[key] != value and position >= quiet:
                notes.append(f"NOTE: {name} sets {key}={value!r} (was {config[key]!r} from {source[key]})")
            config[key], source[key] = value, name
    return config, notes


def value_problem(key, value, setting):
    """Why `value` is not acceptable for `setting`, or None."""
    if value is None:
        return None if setting.nullable else "must be set"
    kind = setting.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        return f"should be {'a number' if kind is float else 'of type ' + kind.__name__}"
    if kind is float and value != value:
        return "should be a number, not NaN"
    if setting.choices is not None and value not in setting.choices:
        return f"choose one of {', '.join(map(repr, setting.choices))}"
    if setting.min is not None and value < setting.min:
        return f"should be at least {setting.min}"
    if value == 0 and not setting.zero_ok:
        return f"cannot be 0 (use -1 for all, or at least 1)" if setting.min == -1 else "should be above 0"
    if setting.max is not None and value > setting.max:
        return f"should be at most {setting.max}"
    return None


def check_config(config, settings, where):
    """Every key against its declaration; lora_parameters key by key. Raises ConfigError naming the key."""
    for key, setting in settings.items():
        problem = value_problem(key, config.get(key), setting)
        if problem:
            raise ConfigError(f"{where}: {key}={config.get(key)!r} {problem} (default {setting.default!r})")
    lora = config.get("lora_parameters")
    if isinstance(lora, dict):
        check_known(lora, set(LORA_KEYS), f"{where}: lora_parameters")
        for key, setting in LORA_KEYS.items():
            if key in lora:
                problem = value_problem(key, lora[key], setting)
                if problem:
                    raise ConfigError(f"{where}: lora_parameters.{key}={lora[key]!r} {problem}")


def fingerprint_view(config, settings):
    """The part of a resolved config that changes what a stage produces."""
    return {k: v for k, v in config.items() if k not in settings or settings[k].fingerprint}
