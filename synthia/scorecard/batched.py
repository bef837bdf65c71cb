"""Greedy generation of many prompts at once, with the KV cache shared where prompts share their start.

generation.Generator decodes one prompt at a time; a decoding step for one sequence reads every weight of the
model, so on a CPU it is bound by memory bandwidth and a batch of sequences costs little more than one.
BatchedGenerator runs mlx_lm's BatchGenerator (continuous batching: a finished row is replaced by the next
prompt at once) and hands it, for every prompt, a KV cache that already holds the prompt's start:

- the start every prompt shares (the system prompt and tools), prefilled once;
- or, when an earlier prompt shares more (the previous turn of the same conversation), that prompt's own cache
  after its generation, cut to what the two share. Such a prompt waits until the earlier one has finished.

A generation ends at the end-of-turn token, at the token cap, or (with `stop_after_calls`) as soon as the turn
has closed a call block and goes on with text that can start neither another block nor the end-of-turn
marker: see `calls_are_over`.

    generator = BatchedGenerator(model, tokenizer, batch_size=8)
    generations = generator.generate_many([prompt_tokens, ...], max_new_tokens=256)
"""

import bisect
import heapq
from dataclasses import dataclass

import mlx.core as mx
from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import KVCache, can_trim_prompt_cache, make_prompt_cache

from synthia.data import render
from synthia.scorecard import judge
from synthia.scorecard.generation import Generation, common_prefix_length

DEFAULT_BATCH_SIZE = 8  # rows decoded together; the memory of one KV cache per row (and per waiting prompt)
PREFILL_STEP = 2048  # prompt tokens per forward pass, as generate_step's default
END_WINDOW = 16  # newest tokens searched for a call block's end: more than any tokenizer spends on "</tool_call>"
MIN_PARENT_GAIN = 128  # a prompt waits for an earlier one only when that saves prefilling at least this many tokens


def calls_are_over(text, fmt=judge.HERMES, end_marker=""):
    """True when `text` has closed a call block and, whitespace aside, goes on with text that is neither the
    start of another block nor of `end_marker`: a turn whose calls are over (a text turn never is).

    Inside a block, between parallel blocks ("</tool_call>\\n<tool_") and right after the last one it is False.
    """
    last_end = text.rfind(fmt.end)
    if last_end == -1:
        return False
    tail = text[last_end + len(fmt.end):].lstrip()
    if not tail or fmt.start in tail:
        return False
    return not fmt.start.startswith(tail) and not (end_marker and end_marker.startswith(tail))


@dataclass
class Answer:
    """A generated answer as the generator remembers it: greedy decoding gives a prompt one answer."""

    tokens: tuple  # generated ids, the end-of-turn token included when it came
    finished: bool  # ended by the end-of-turn token or by `calls_are_over`, not by a cap
    ended: bool  # the last token is the end-of-turn token


class KVPrefix:
    """A finished sequence's KV cache and the tokens it holds, to start other prompts from."""

    def __init__(self, cache, tokens):
        self.cache, self.tokens = cache, list(tokens)

    def start_for(self, prompt):
        """(a fresh cache holding the start `prompt` shares with this one, its length); one prompt token is left
        out so that the model has a token to give the first logits from."""
        shared = min(common_prefix_length(self.tokens, prompt), len(prompt) - 1)
        return [cut_cache(layer, shared) for layer in self.cache], shared


def cut_cache(layer, length):
    """A new KVCache holding the first `length` positions of `layer` (a KVCache); `layer` is left as it is."""
    cut = KVCache()
    if length:
        cut.keys, cut.values = layer.keys[..., :length, :], layer.values[..., :length, :]
        cut.offset = length
    return cut


def prefill(model, tokens):
    """A KVCache list holding `tokens` run through the model, one sequence."""
    cache = make_prompt_cache(model)
    for start in range(0, len(tokens), PREFILL_STEP):
        model(mx.array(tokens[start:start + PREFILL_STEP])[None], cache=cache)
        mx.eval([c.state for c in cache])
    return cache


def shared_start(prompts):
    """How many tokens every prompt starts with (at most the shortest prompt's length minus one)."""
    shared = min(len(p) for p in prompts) - 1
    for prompt in prompts[1:]:
        shared = min(shared, common_prefix_length(prompts[0][:shared], prompt))
    return max(shared, 0)


def parents(prompts, floor):
    """For every prompt, the index of an earlier prompt it shares the longest start with, or None when none shares
    at least MIN_PARENT_GAIN tokens more than `floor` (waiting for a few tokens would cost more than it saves:
    BFCL's prompts share a little more than the template's preamble with many others). Of the prompts sorted so far, the longest shared start is with a neighbour in
    sorted order, so only the two neighbours are compared."""
    found, earlier = [], []  # earlier: (tokens, index), sorted
    for i, prompt in enumerate(prompts):
        key = (tuple(prompt), i)
        at = bisect.bisect(earlier, key)
        shared = [(common_prefix_length(tokens, prompt), j) for tokens, j in earlier[max(at - 1, 0):at + 1]]
        length, best = max(shared, default=(0, None))
        found.append(best if length >= floor + MIN_PARENT_GAIN else None)
        earlier.insert(at, key)
    return found


class BatchedGenerator:
    """Greedy generation of many prompts at once, each starting from the cache of what it shares with others."""

    def __init__(self, model, tokenizer, batch_size=DEFAULT_BATCH_SIZE, reuse_cache=True, stop_after_calls=True):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.end_ids = list(tokenizer.eos_token_ids)
        self.fmt = judge.call_format(tokenizer)
        self.end_marker = render.end_of_turn_marker(tokenizer) or ""
        self.reuse_cache = reuse_cache and can_trim_prompt_cache(make_prompt_cache(model))
        self.stop_after_calls = stop_after_calls
        self.answers = {}  # prompt -> Answer

    # ------------------------------------------------------------ answers

    def generation(self, answer, max_new_tokens, prefilled, remembered=False):
        tokens = list(answer.tokens)
        return Generation(tokens, self.tokenizer.decode(tokens[:-1] if answer.ended else tokens),
                          truncated=not answer.finished and len(tokens) >= max_new_tokens, prefilled=prefilled,
                          remembered=remembered)

    def remembered(self, prompt, max_new_tokens):
        """The answer to a prompt generated before, cut to this cap; None when it was cut shorter than this cap."""
        answer = self.answers.get(tuple(prompt))
        if answer is None:
            return None
        if answer.finished and len(answer.tokens) <= max_new_tokens:
            return answer
        if len(answer.tokens) >= max_new_tokens:
            return Answer(answer.tokens[:max_new_tokens], finished=False, ended=False)
        return None

    def calls_over(self, tokens, closed):
        """calls_are_over on the row's text; `closed` (a one-item list, the row's memory) notes that a call block
        has been closed, found in the newest tokens, so that the whole text is decoded only from then on."""
        if not self.stop_after_calls:
            return False
        if not closed[0]:
            closed[0] = self.fmt.end in self.tokenizer.decode(tokens[-END_WINDOW:])
            if not closed[0]:
                return False
        return calls_are_over(self.tokenizer.decode(tokens), self.fmt, self.end_marker)

    # ------------------------------------------------------------ generation

    def generate(self, prompt, max_new_tokens):
        return self.generate_many([prompt], max_new_tokens)[0]

    def generate_many(self, prompts, max_new_tokens, on_finished=None):
        """A Generation for every prompt (token id lists), in order; `on_finished()` is called as each one ends."""
        results = [None] * len(prompts)
        first_of = {}  # prompt -> index of its first occurrence among those to generate
        for i, prompt in enumerate(prompts):
            known = self.remembered(prompt, max_new_tokens)
            if known is not None:
                results[i] = self.generation(known, max_new_tokens, 0, remembered=True)
            else:
                first_of.setdefault(tuple(prompt), i)
        todo = sorted(first_of.values())
        for i, generated in zip(todo, self.run([prompts[i] for i in todo], max_new_tokens, on_finished)):
            results[i] = generated
        for i, prompt in enumerate(prompts):
            if results[i] is None:  # a repeat of a prompt in this call: its answer is known now
                results[i] = self.generation(self.remembered(prompt, max_new_tokens), max_new_tokens, 0, True)
                if on_finished:
                    on_finished()
        return results

    def run(self, prompts, max_new_tokens, on_finished=None):
        """Generations for distinct prompts, decoded `batch_size` at a time."""
        if not prompts:
            return []
        floor = shared_start(prompts) if self.reuse_cache else 0
        root = KVPrefix(prefill(self.model, prompts[0][:floor]), prompts[0][:floor]) if floor else None
        parent_of = parents(prompts, floor) if self.reuse_cache else [None] * len(prompts)
        waiting_children = [0] * len(prompts)
        for parent in parent_of:
            if parent is not None:
                waiting_children[parent] += 1
        finished_prefixes = {}  # index -> KVPrefix of a finished prompt whose children are still to start
        ready = [i for i, parent in enumerate(parent_of) if parent is None]
        heapq.heapify(ready)
        results, running = [None] * len(prompts), {}  # uid -> [index, tokens, prefilled]
        batch = BatchGenerator(self.model, max_tokens=max_new_tokens, stop_tokens=[[t] for t in self.end_ids],
                               completion_batch_size=self.batch_size, prefill_batch_size=self.batch_size,
                               prefill_step_size=PREFILL_STEP)
        try:
            while ready or running:
                while ready and len(running) < self.batch_size:
                    i = heapq.heappop(ready)
                    start = finished_prefixes.get(parent_of[i], root) if parent_of[i] is not None else root
                    cache, shared = self.prefilled(prompts[i], start)
                    if parent_of[i] is not None:
                        waiting_children[parent_of[i]] -= 1
                        if not waiting_children[parent_of[i]]:
                            finished_prefixes.pop(parent_of[i])
                    [uid] = batch.insert([prompts[i][-1:]], [max_new_tokens], caches=[cache],
                                         all_tokens=[list(prompts[i][:-1])])
                    running[uid] = [i, [], len(prompts[i]) - shared, [False]]
                for uid, answer, prefix in self.step(batch, running, max_new_tokens):
                    i, _, prefilled, _ = running.pop(uid)
                    self.answers[tuple(prompts[i])] = answer
                    results[i] = self.generation(answer, max_new_tokens, prefilled)
                    if waiting_children[i]:
                        finished_prefixes[i] = prefix
                        for child in (c for c, parent in enumerate(parent_of) if parent == i):
                            heapq.heappush(ready, child)
                    if on_finished:
                        on_finished()
        finally:
            batch.close()
        return results

    def prefilled(self, prompt, start):
        """(a cache holding all of `prompt` but its last token, how many of those came from `start`'s cache).

        The prompt's own tokens are run here, one sequence, so BatchGenerator only feeds each row its last token:
        its own prompt processing pads and re-lays the batch's caches for every row it adds, which measured
        slower than decoding one prompt at a time."""
        cache, shared = start.start_for(prompt) if start else (make_prompt_cache(self.model), 0)
        rest = prompt[shared:-1]
        for k in range(0, len(rest), PREFILL_STEP):
            self.model(mx.array(rest[k:k + PREFILL_STEP])[None], cache=cache)
            mx.eval([c.state for c in cache])
        return cache, shared

    def step(self, batch, running, max_new_tokens):
        """One decoding step: [(uid, Answer, KVPrefix)] of the rows that ended."""
        ended, over = [], []
        for response in batch.next_generated():
            tokens, closed = running[response.uid][1], running[response.uid][3]
            tokens.append(response.token)
            if response.finish_reason is not None:
                finished = response.finish_reason == "stop"
                ended.append((response.uid, Answer(tuple(tokens), finished, finished),
                              KVPrefix(response.prompt_cache, response.all_tokens)))
            elif self.calls_over(tokens, closed):
                over.append(response.uid)
        if over:
            for uid, (cache, cached_tokens) in batch.remove(over, return_prompt_caches=True).items():
                ended.append((uid, Answer(tuple(running[uid][1]), True, False), KVPrefix(cache, cached_tokens)))
        return ended
