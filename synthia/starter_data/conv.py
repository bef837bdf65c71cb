"""Build one conversation by executing the assistant's tool calls in a Workspace."""

import json
import random
import re
import string

from .executor import is_error

ID_CHARS = string.ascii_letters + string.digits
TIME_RE = re.compile(r"(?<![\w.])(\d+)\.(\d+)(ms|s)\b")


class ScenarioError(RuntimeError):
    """A scripted action did not have the outcome its scenario expects (a bug in the scenario spec)."""


def mask_timings(text, rng):
    """Replace wall-clock durations with seeded values of the same format.

    The replacement ignores the measured value (a run can take 0.00s or 0.16s depending on load), so the
    output depends only on the seed and on how many durations the output contains."""

    def repl(m):
        whole, frac, unit = m.groups()
        if unit == "ms":  # node prints a variable number of decimals: use six, minus trailing zeros
            return f"{rng.uniform(0.1, 40.0):.6f}".rstrip("0").rstrip(".") + unit
        return f"{rng.uniform(0.0, 0.95):.{len(frac)}f}{unit}"

    text = re.sub(r"duration_ms \d+(\.\d+)?", lambda m: f"duration_ms {rng.uniform(40, 120):.6f}", text)
    return TIME_RE.sub(repl, text)


class Conversation:
    def __init__(self, ws, rng, category, system=None):
        self.ws, self.rng, self.category = ws, rng, category
        self.messages = [{"role": "system", "content": system}] if system else []
        self._ids = set()
        self._timing_rng = random.Random(rng.random())  # separate, so timings never shift other choices

    # -- turns -----------------------------------------------------------------------------------
    def user(self, text):
        self.messages.append({"role": "user", "content": text.strip()})

    def say(self, text, weight=1):
        message = {"role": "assistant", "content": text.strip()}
        if weight == 0:
            message["weight"] = 0
        self.messages.append(message)

    def act(self, *calls, text=None, weight=1, expect=None):
        """One assistant turn with one or more tool calls, executed now; returns the results.

        calls: (tool name, arguments dict) pairs.  expect: None, "ok", "error", or a list with one of
        those per call; a mismatch raises ScenarioError so a wrong spec is caught at generation time.
        """
        expects = expect if isinstance(expect, list) else [expect] * len(calls)
        tool_calls, results = [], []
        for (name, args), want in zip(calls, expects):
            args = {k: v for k, v in args.items() if v is not None}
            call_id = self._new_id()
            tool_calls.append({"id": call_id, "type": "function",
                               "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}})
            result = self.ws.run(name, args)
            if name == "bash":
                result = mask_timings(result, self._timing_rng)
            if want == "ok" and is_error(result) or want == "error" and not is_error(result):
                raise ScenarioError(f"{self.ws.repo}: expected {want} from {name} {args}, got:\n{result}")
            results.append((call_id, result))
        message = {"role": "assistant", "content": text.strip() if text else None, "tool_calls": tool_calls}
        if weight == 0:
            message["weight"] = 0
        self.messages.append(message)
        for call_id, result in results:
            self.messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
        return [r for _, r in results] if len(results) > 1 else results[0][1]

    def _new_id(self):
        while True:
            call_id = "call_" + "".join(self.rng.choice(ID_CHARS) for _ in range(12))
            if call_id not in self._ids:
                self._ids.add(call_id)
                return call_id

    def record(self, tools):
        if self.messages[-1]["role"] != "assistant":
            raise ScenarioError("a conversation must end with an assistant turn")
        return {"category": self.category, "tools": tools, "messages": self.messages}
