"""A tiny command-line parser: --flags, --options with a value, and positionals."""


class UsageError(Exception):
    pass


def parse(argv, options=(), flags=()):
    """Split argv into (positionals, values); options take a value, flags are booleans."""
    positionals, values = [], {name: False for name in flags}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positionals.extend(argv[i + 1:])
            break
        if arg.startswith("--"):
            name = arg[2:]
            if name in flags:
                values[name] = True
            elif name in options:
                if i + 1 >= len(argv):
                    raise UsageError(f"--{name} needs a value")
                values[name] = argv[i + 1]
                i += 1
            else:
                raise UsageError(f"unknown option --{name}")
        else:
            positionals.append(arg)
        i += 1
    return positionals, values
