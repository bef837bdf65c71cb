"""A quick yes for tool-call arguments that a plain parameters schema accepts, before asking jsonschema.

Most tool schemas are an object of typed properties, some required, perhaps an enum or a bound: checking 2,600
conversations' calls with jsonschema was a quarter of validating them. `acceptor(schema)` builds a check that
answers True only for values jsonschema accepts too (stricter where the two could differ: 1.0 is no integer here,
True is no 1 in an enum); False means "ask jsonschema", which also words the error. A schema with any keyword
outside the plain set gets no acceptor: jsonschema checks every call to it.
"""

ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$comment", "deprecated", "readOnly",
                         "writeOnly"})
BOUNDS = {  # keyword -> (the values it applies to, the test a value must pass)
    "minimum": ((int, float), lambda v, bound: v >= bound),
    "maximum": ((int, float), lambda v, bound: v <= bound),
    "exclusiveMinimum": ((int, float), lambda v, bound: v > bound),
    "exclusiveMaximum": ((int, float), lambda v, bound: v < bound),
    "minLength": ((str,), lambda v, bound: len(v) >= bound),
    "maxLength": ((str,), lambda v, bound: len(v) <= bound),
    "minItems": ((list,), lambda v, bound: len(v) >= bound),
    "maxItems": ((list,), lambda v, bound: len(v) <= bound),
}
PLAIN_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum"}) | ANNOTATIONS \
    | BOUNDS.keys()
TYPE_CHECKS = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) is int or type(v) is float,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
}
SCALARS = (str, int, float, bool, type(None))


def acceptor(schema):
    """A function value -> bool (True only where jsonschema accepts the value), or None for a schema it cannot
    judge."""
    if not isinstance(schema, dict) or not schema.keys() <= PLAIN_KEYWORDS:
        return None
    types = schema.get("type")
    types = [types] if isinstance(types, str) else types
    if types is not None and (not isinstance(types, list) or not all(t in TYPE_CHECKS for t in types)):
        return None
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return None
    property_checks = {key: acceptor(sub) for key, sub in properties.items()}
    items = acceptor(schema["items"]) if "items" in schema else (lambda _v: True)
    required, additional = schema.get("required", []), schema.get("additionalProperties", True)
    enum = schema.get("enum")
    if None in property_checks.values() or items is None or not isinstance(additional, bool):
        return None
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return None
    if enum is not None and (not isinstance(enum, list) or not all(type(e) in SCALARS for e in enum)):
        return None
    bounds = [(BOUNDS[key], bound) for key, bound in schema.items() if key in BOUNDS]
    if not all(type(bound) in (int, float) for _, bound in bounds):
        return None
    type_checks = [TYPE_CHECKS[t] for t in types] if types is not None else None

    def accepts(value):
        if type_checks is not None and not any(check(value) for check in type_checks):
            return False
        if enum is not None and not any(type(e) is type(value) and e == value for e in enum):
            return False
        if any(type(value) in kinds and not test(value, bound) for (kinds, test), bound in bounds):
            return False
        if type(value) is dict:
            if any(key not in value for key in required):
                return False
            for key, item in value.items():
                check = property_checks.get(key)
                if check is None and not additional or check is not None and not check(item):
                    return False
        if type(value) is list:
            return all(items(item) for item in value)
        return True

    return accepts
