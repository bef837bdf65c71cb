"""The typed configuration: one declaration per key, YAML that reads numbers as a user writes them, and the
checks that run in the parent before anything expensive.

train_mlx.py declares every key once as a `Setting` (default, type, range, scope, whether it changes the result);
this module resolves defaults < STAGES < YAML file < command line, and says what overrode what.
"""

import math
import re
import reprlib
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
    item_type: type = str  # the type of each item when the setting is a list

    @property
    def kind(self):
        return self.type or type(self.default)


# LoRA's own keys: mlx_lm's lora_parameters (keys: which projections; None = mlx_lm's default set). mlx_lm reads
# rank, scale and dropout without defaults, so a lora_parameters mapping must give all three.
LORA_KEYS = {"rank": Setting(8, min=1), "scale": Setting(20.0, min=0), "dropout": Setting(0.0, min=0, max=0.99),
             "keys": Setting(None, type=list, nullable=True)}
LORA_REQUIRED = ("rank", "scale", "dropout")
# Every count here ends in an MLX int32 (shapes, iterations) or a seed; a bigger one is a typo, not a plan.
INT_LIMIT = 2**31 - 1
# Values quoted in messages are cut short: a config value can be a huge or self-referencing (&a [*a]) structure.
_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlevel = 60, 60, 3


# ---------------------------------------------------------------------------------------------------------
# YAML: 1e-5 is a float (YAML 1.1 reads it as a string; mlx_lm adds the same resolver)
# ---------------------------------------------------------------------------------------------------------
MAX_DEPTH = 50  # lists and mappings inside each other; a config needs three or four


class _Loader(yaml.SafeLoader):
    depth = 0

    def compose_node(self, parent, index):
        # A limit of our own: PyYAML recurses per level (RecursionError near 1,000) and slows down long before.
        if self.depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep; a config is "
                                              "key: value lines, with lists and mappings a level or two deep",
                                              self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        # YAML requires unique keys, but PyYAML keeps the last value of a repeated one without a word. Keys that a
        # `<<: *alias` merge brings in may be overridden: only the mapping's own keys are compared.
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                try:
                    first = seen.setdefault(self.construct_object(key_node, deep=True), key_node)
                except TypeError:  # an unhashable key: PyYAML's own error names it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(None, None, (
                        f"key {key_name(self.construct_object(key_node))} is given twice (first on line "
                        f"{first.start_mark.line + 1}): the first value would be lost without a word; delete one "
                        "of the two"), key_node.start_mark)
        return super().construct_mapping(node, deep)


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
    """{"shared": {...}, "stages": {n: {...}}} from a YAML file; every problem names the file and the key.
    A key given twice in one mapping is an error naming both lines (PyYAML would keep the last without a word)."""
    raw = read_yaml_mapping(path)
    stages = raw.pop("stages", None) or {}
    if not isinstance(stages, dict):
        raise ConfigError(f"{path}: stages: must be a mapping like `stages: {{2: {{iters: 500}}}}`")
    check_file_values(raw, settings, stage_keys, f"{path}")
    out = {"shared": raw, "stages": {}}
    for number, overrides in stages.items():
        where = f"{path}: stages.{key_name(number)}"
        if str(number) not in map(str, stage_numbers):
            raise ConfigError(f"{where}: no such stage (known: {', '.join(map(str, stage_numbers))})")
        if int(number) in out["stages"]:
            raise ConfigError(f"{where}: stage {int(number)} is given twice under stages:; merge the two")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}: must be a mapping of key: value lines")
        check_file_values(overrides, settings, stage_keys, where)
        shared_only = sorted(k for k in overrides if k in settings and settings[k].scope == GLOBAL)
        if shared_only:
            raise ConfigError(f"{where}: {', '.join(shared_only)} apply to every stage (they decide the data split "
                              "and the chain); set them at the top level of the file, not under stages:")
        out["stages"][int(number)] = overrides
    return out


def read_yaml_mapping(path):
    try:
        raw = parse_yaml(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); save the "
                          "config file as UTF-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})")
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error_message(path, e))
    except RecursionError:  # aliases that refer to aliases, hundreds deep: within MAX_DEPTH each, too deep built
        raise ConfigError(f"{path}: nested too deeply for a config file (aliases inside aliases, hundreds of levels); "
                          "a config is key: value lines, with lists and mappings a level or two deep")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of key: value lines, got a {type(raw).__name__}")
    return dict(raw)


def yaml_error_message(path, error):
    """path:line:column: what PyYAML found, and where the construct it was reading began (PyYAML's own text says
    "<unicode string>" where the file name belongs)."""
    if isinstance(error, yaml.reader.ReaderError):
        return (f"{path}: not valid YAML: character {chr(error.character)!r} at offset {error.position} is not "
                "allowed in YAML text; delete it, or write it as an escape inside double quotes")
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return f"{path}: not valid YAML: {error}"
    context_mark = getattr(error, "context_mark", None)
    context = f" ({error.context} at line {context_mark.line + 1}, column {context_mark.column + 1})" \
        if error.context and context_mark else ""
    return f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {error.problem}{context}"


def check_file_values(mapping, settings, stage_keys, where):
    """Keys known and each value of the right type and range, so the error names the file, not a resolved stage."""
    check_known(mapping, set(settings) | set(stage_keys), where)
    for key, value in mapping.items():
        if key in settings:
            check_value(key, value, settings[key], where)


def short(value):
    return _short.repr(value)


def key_name(key):
    """A key as written (bare when it is text), cut short."""
    return (key if len(key) <= 60 else key[:57] + "...") if isinstance(key, str) else short(key)


def check_known(mapping, known, where):
    unknown = sorted(map(key_name, set(mapping) - known))
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
    if kind is float and not math.isfinite(value):
        return f"should be a finite number, not {value}"
    if kind is int and abs(value) > INT_LIMIT:
        return f"is out of range (at most {INT_LIMIT:,} either way)"
    if kind is str and text_problem(value):
        return text_problem(value)
    if kind is list and any(not isinstance(item, setting.item_type) or text_problem(item) for item in value):
        return f"should be a list of {setting.item_type.__name__} values like [a, b]"
    if setting.choices is not None and value not in setting.choices:
        return f"choose one of {', '.join(map(repr, setting.choices))}"
    if setting.min is not None and value < setting.min:
        return f"should be at least {setting.min}"
    if value == 0 and not setting.zero_ok:
        return f"cannot be 0 (use -1 for all, or at least 1)" if setting.min == -1 else "should be above 0"
    if setting.max is not None and value > setting.max:
        return f"should be at most {setting.max}"
    return None


def text_problem(value):
    """A string that could not be printed, logged or used as a path: a NUL, or half of a UTF-16 pair ("\\ud800")."""
    if not isinstance(value, str):
        return None
    if "\0" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate escape (like \\ud800), which is not a character"
    return None


def check_value(key, value, setting, where):
    problem = value_problem(key, value, setting)
    if problem:
        raise ConfigError(f"{where}: {key}={short(value)} {problem} (default {setting.default!r})")
    if isinstance(value, dict) and key == "lora_parameters":
        check_lora(value, where)


def check_lora(lora, where):
    check_known(lora, set(LORA_KEYS), f"{where}: lora_parameters")
    missing = [key for key in LORA_REQUIRED if key not in lora]
    if missing:
        raise ConfigError(f"{where}: lora_parameters lacks {', '.join(missing)}; give all of "
                          f"{', '.join(LORA_REQUIRED)} (defaults: rank 8, scale 20.0, dropout 0.05)")
    for key, setting in LORA_KEYS.items():
        if key in lora:
            problem = value_problem(key, lora[key], setting)
            if problem:
                raise ConfigError(f"{where}: lora_parameters.{key}={short(lora[key])} {problem}")


def check_config(config, settings, where):
    """Every key against its declaration; lora_parameters key by key. Raises ConfigError naming the key."""
    for key, setting in settings.items():
        check_value(key, config.get(key), setting, where)


def fingerprint_view(config, settings):
    """The part of a resolved config that changes what a stage produces."""
    return {k: v for k, v in config.items() if k not in settings or settings[k].fingerprint}


def override_lines(notes_by_stage):
    """[(line, stage or None)]: what overrode a default, once when every stage shares the note, else per stage."""
    shared = set.intersection(*(set(n) for n in notes_by_stage.values()))
    every = (n for notes in notes_by_stage.values() for n in notes if n in shared)
    lines = [(note, None) for note in dict.fromkeys(every)]
    for number, notes in notes_by_stage.items():
        lines += [(note, number) for note in dict.fromkeys(n for n in notes if n not in shared)]
    return lines


def where_set(message, notes, config_path):
    """resolve's notes on the keys `message` names, with the config file's path: where faulty values came from."""
    named = [n for n in notes if (m := re.search(r" sets (\w+)=", n)) and m.group(1) in message]
    return [n.removeprefix("NOTE: ").replace("config file", f"the config file {config_path}", 1) for n in named]
