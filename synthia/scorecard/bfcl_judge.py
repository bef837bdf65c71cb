"""BFCL's rules: do the calls a model made on one entry match its possible answer, and the scores they add up to.

The rules are those of BFCL's AST checker (bfcl_eval/eval_checker/ast_eval/ast_checker.py) for Python functions
offered under OpenAI-style names; tests/test_bfcl_judge.py feeds both the same calls and asserts equal verdicts.
A call is {"name": str, "arguments": dict}, already parsed from the model's text (judge.py's parser).
"""

import math
import re
from dataclasses import dataclass

from synthia.scorecard.bfcl import CATEGORIES, IRRELEVANCE_CATEGORIES, RELEVANCE_CATEGORIES, tool_name

PYTHON_TYPES = {"string": str, "integer": int, "float": float, "boolean": bool,
                "array": list, "tuple": list, "dict": dict, "any": str}
IGNORED_IN_STRINGS = re.compile(r"[ ,./\-_*^]")
Z95 = 1.959963984540054

# BFCL's summary groups (bfcl_eval/eval_checker/eval_runner_helper.py) and how each combines its categories:
# "mean" is the unweighted mean of the categories' rates, "weighted" weighs each by its number of entries. BFCL's
# non-live simple is itself the mean of Python, Java and JavaScript; Java and JavaScript are left out here.
GROUPS = (
    ("non_live_ast", "mean", ("simple_python", "multiple", "parallel", "parallel_multiple")),
    ("live_ast", "weighted", ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")),
    ("irrelevance", "mean", ("irrelevance", "live_irrelevance")),  # hallucination: no call where none fits
    ("relevance", "mean", ("live_relevance",)),  # hallucination's other side: a call where one fits
)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


def normalized(value):
    """BFCL compares strings with spaces and ,./-_*^ dropped, case ignored and single quotes as double."""
    if not isinstance(value, str):
        return value
    return IGNORED_IN_STRINGS.sub("", value).lower().replace("'", '"')


def answer_type(accepted):
    """The type of the first accepted value other than "" (which marks the parameter as omissible)."""
    return next((type(value) for value in accepted if value != ""), None)


def items_fit(value, option, item_type):
    """BFCL's one-level item check of a list against one accepted value; only a list constrains the items."""
    if type(option) is not list:
        return True
    option_type = answer_type(option)
    return all(type(item) is item_type or type(item) is option_type for item in value)


def dict_matches(value, option):
    """Every key of `value` is in `option` with an accepted value, and every key left out may be omitted."""
    return (all(key in option and normalized(item) in [normalized(a) for a in option[key]]
                for key, item in value.items())
            and all(key in value or "" in accepted for key, accepted in option.items()))


def dicts_match(value, option):
    return len(value) == len(option) and all(
        isinstance(item, dict) and expected != "" and dict_matches(item, expected)
        for item, expected in zip(value, option))


def value_accepted(value, kind, item_kind, accepted):
    """Whether `value` is accepted for a parameter of BFCL type `kind`; a type mismatch gives a reason instead."""
    expected = PYTHON_TYPES[kind]
    given = answer_type(accepted)
    # An answer whose type differs from the schema's (a variable name as a string, None, "dontcare") is compared
    # as is, without the string, list and dict rules.
    literal = given is not None and given is not expected
    if type(value) is expected:
        if item_kind and not any(items_fit(value, option, PYTHON_TYPES[item_kind]) for option in accepted):
            return f"an item of {value!r} is not of type {item_kind}"
    elif type(value) is not given:
        return f"{type(value).__name__} {value!r}, expected {kind}"
    if literal:
        return value in accepted
    if expected is dict:
        return any(dict_matches(value, option) for option in accepted if option != "")
    if expected is list and item_kind == "dict":
        return any(dicts_match(value, option) for option in accepted)
    if expected is str:
        return normalized(value) in [normalized(option) for option in accepted if isinstance(option, str)]
    if expected is list:  # "" becomes [], so an empty list stands for an omitted optional list, as in BFCL
        return [normalized(item) for item in value] in [
            [normalized(item) for item in option] for option in accepted if isinstance(option, (list, str))]
    return value in accepted


def argument_problem(name, value, schema, accepted):
    kind = schema["type"]
    if kind == "float" and type(value) is int:
        value = float(value)  # an int is accepted where a float is expected
    item_kind = schema["items"]["type"] if kind in ("array", "tuple") else None
    verdict = value_accepted(value, kind, item_kind, accepted)
    if isinstance(verdict, str):
        return f"wrong type for {name!r}: {verdict}"
    return None if verdict else f"wrong value for {name!r}: {value!r} not in {accepted!r}"


def call_problem(call, expected, functions):
    """Why `call` does not match `expected` ({function name: {parameter: [accepted values]}}), or None."""
    (function_name, answer), = expected.items()
    if call["name"] != tool_name(function_name):
        return f"called {call['name']!r}, expected {tool_name(function_name)!r}"
    parameters = functions[function_name]["parameters"]
    arguments = call["arguments"]
    for name in parameters["required"]:
        if name not in arguments:
            return f"missing required parameter {name!r}"
    for name, value in arguments.items():
        if name not in parameters["properties"]:
            return f"unknown parameter {name!r}"
        if name not in answer:
            return f"parameter {name!r} should be left out"
        problem = argument_problem(name, value, parameters["properties"][name], answer[name])
        if problem:
            return problem
    for name, accepted in answer.items():
        if name not in arguments and "" not in accepted:
            return f"missing parameter {name!r}: the answer requires one of {accepted!r}"
    return None


def unmatched_answer(calls, answer, functions):
    """Why the calls, taken in any order, do not match the answer one to one, or None. Like BFCL, each expected
    call in turn takes the first call not yet taken that matches it (greedy, not an optimal matching)."""
    free = list(range(len(calls)))
    for number, expected in enumerate(answer, start=1):
        reasons = []
        for index in free:
            problem = call_problem(calls[index], expected, functions)
            if problem is None:
                free.remove(index)
                break
            reasons.append(f"call {index + 1}: {problem}")
        else:
            return f"no call matches expected call {number} ({tool_name(next(iter(expected)))}): " + "; ".join(reasons)
    return None


def judge(calls, entry):
    """BFCL's verdict on the calls a model made for `entry` (a bfcl.Entry)."""
    names = ", ".join(call["name"] for call in calls)
    if entry.category in IRRELEVANCE_CATEGORIES:
        return Verdict(False, f"called {names} where no function fits") if calls else Verdict(True, "made no call")
    if entry.category in RELEVANCE_CATEGORIES:
        return Verdict(True, f"called {names}") if calls else Verdict(False, "made no call where one fits")
    if len(calls) != len(entry.answer):
        return Verdict(False, f"made {len(calls)} call(s), expected {len(entry.answer)}")
    functions = {function["name"]: function for function in entry.functions}
    if "parallel" in entry.category:
        problem = unmatched_answer(calls, entry.answer, functions)
    else:
        problem = call_problem(calls[0], entry.answer[0], functions)
    return Verdict(problem is None, problem or "matches the answer")


@dataclass(frozen=True)
class ScoreRow:
    name: str  # a category, or a group of GROUPS
    n: int  # entries judged
    passed: int
    rate: float  # passed / n for a category; the group's combination of its categories' rates for a group
    low: float  # the 95% interval of the rate (Wilson)
    high: float
    combine: str = ""  # "mean" or "weighted" for a group


def wilson(rate, n, z=Z95):
    """The Wilson score interval of a proportion observed over `n` trials (`n` may be an effective count)."""
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def category_row(name, verdicts):
    passed = sum(map(bool, verdicts))
    rate = passed / len(verdicts)
    return ScoreRow(name, len(verdicts), passed, rate, *wilson(rate, len(verdicts)))


def group_row(name, combine, rows, sizes):
    weights = [1.0 if combine == "mean" else sizes.get(row.name, row.n) for row in rows]
    shares = [weight / sum(weights) for weight in weights]
    rate = sum(share * row.rate for share, row in zip(shares, rows))
    # Kish's effective sample size of a weighted mean of proportions; it is the pooled count whenever the weights
    # follow the counts, so the interval is then the plain Wilson interval of the pooled entries.
    effective_n = 1 / sum(share * share / row.n for share, row in zip(shares, rows))
    return ScoreRow(name, sum(row.n for row in rows), sum(row.passed for row in rows), rate,
                    *wilson(rate, effective_n), combine=combine)


def score_rows(verdicts, sizes=None):
    """Rows for every category judged (in CATEGORIES' order), then for every group whose categories all were.

    `verdicts` maps a category to its entries' pass/fail (bools, or anything whose truth is the verdict).
    `sizes` maps a category to its full number of entries, which "weighted" groups weigh by; by default the
    number judged. Pass the full sizes when --bench-limit judged a sample, to weigh the categories as BFCL does.
    """
    unknown = sorted(set(verdicts) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown BFCL categories {unknown}; known: {', '.join(CATEGORIES)}")
    rows = {name: category_row(name, verdicts[name]) for name in CATEGORIES if verdicts.get(name)}
    groups = [group_row(name, combine, [rows[c] for c in members], sizes or {})
              for name, combine, members in GROUPS if all(c in rows for c in members)]
    return list(rows.values()) + groups
