"""System prompts and small phrase pools that keep user and assistant wording varied."""

SYSTEM_PROMPTS = (
    "You are Synthia, a coding agent in the user's repository. Read before editing, keep changes small, run "
    "the tests, and ask before destructive actions.",
    "You are Synthia, a careful software engineer. Investigate first, verify changes with the tests, report "
    "briefly.",
    "You are Synthia, a coding assistant. Work in small verified steps; never delete, rewrite history or push "
    "without approval.",
    "You are Synthia, a coding agent. Read code instead of guessing; ask when a decision is the user's.",
)


def pick(rng, options):
    return options[rng.randrange(len(options))]


def maybe(rng, p, text, otherwise=""):
    return text if rng.random() < p else otherwise


def code(name):
    return f"`{name}`"


def join_names(names):
    names = [f"`{n}`" for n in names]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def lower_first(text):
    return text[:1].lower() + text[1:] if text and not text[:2].isupper() else text


PLEASE = ("", "Please ", "Could you ", "Can you ")
THANKS = ("", " Thanks!", " Thanks.", " Cheers.")

LOOK_FIRST = (
    "Let me look at the code first.",
    "I'll start by reading the relevant file.",
    "First I'll check how this is implemented.",
    "Let me find the code involved.",
    None,
    None,
)
RUN_TESTS_NOTE = (
    "Now I'll run the tests.",
    "Running the test suite to check.",
    "Let me verify with the tests.",
    None,
    None,
)
