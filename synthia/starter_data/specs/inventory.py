"""Scenarios for repos/inventory (Python, pytest): stock levels per SKU and order pricing."""

REPO = {
    "name": "inventory",
    "lang": "python",
    "about": "a small inventory library: stock levels per SKU and order pricing in integer cents",
    "history": [("Add order pricing with bulk discount and VAT", ["inventory/pricing.py", "tests/test_pricing.py"])],
    "files": {
        "inventory/stock.py": "the `Stock` class, which keeps units per SKU in a dict (`add`, `remove`, `level`, "
                              "`low_stock`) and raises `OutOfStock` when a removal asks for more than is on hand",
        "inventory/pricing.py": "order pricing in cents: `line_total` applies a 5% bulk discount from 10 units, "
                                "`order_total` sums the lines and adds 20% VAT",
        "inventory/__init__.py": "re-exports `Stock`, `OutOfStock`, `line_total` and `order_total`",
        "tests/test_stock.py": "pytest tests for adding, removing and low-stock reporting",
        "tests/test_pricing.py": "pytest tests for line totals, the bulk discount and VAT",
        "pyproject.toml": "project metadata and the pytest config (`testpaths`, `pythonpath`)",
    },
    "symbols": [
        ("OutOfStock", "the exception `Stock.remove` raises when asked for more units than are on hand"),
        ("line_total", "prices one order line and applies the bulk discount"),
        ("low_threshold", "the per-`Stock` threshold that `low_stock()` compares levels against"),
    ],
    "qa": [
        {
            "ask": ["How exactly is the bulk discount calculated? Does it stack with VAT somehow?",
                    "Quick question: when does the bulk discount kick in and how is it applied?"],
            "calls": [("read", {"file_path": "inventory/pricing.py"})],
            "answer": "From `BULK_QTY` (10) units of one line up, `line_total` takes `BULK_DISCOUNT` (5%) off that "
                      "line: `total -= round(total * BULK_DISCOUNT)`, so it is rounded to a whole cent per line. "
                      "It doesn't stack with VAT: `order_total` first sums the already-discounted lines and only "
                      "then adds `round(subtotal * VAT_RATE)` (20%). The discount is per line, so 6 + 6 units of "
                      "the same SKU on two lines get no discount.",
        },
        {
            "ask": ["Which parts of the package don't have tests? Just look, don't write any.",
                    "Can you check the test coverage situation by eye? Which behaviours are untested?"],
            "calls": [("grep", {"pattern": "def |raise ", "path": "inventory"}),
                      ("read", {"file_path": "tests/test_stock.py"}), ("read", {"file_path": "tests/test_pricing.py"})],
            "answer": "Every public function is exercised at least once, but some behaviours are not pinned:\n\n"
                      "- `Stock.remove` with a zero or negative quantity: only `add` raises `ValueError` for "
                      "it, and no test calls `remove` with such a value.\n- `low_stock()` for a SKU exactly at the threshold; the "
                      "only test uses levels below it.\n- VAT rounding: `test_order_total_adds_vat` uses a "
                      "subtotal where 20% is a whole number of cents.\n- `line_total` just below the bulk "
                      "threshold (9 units).\n\nThose four would be the cheapest tests to add.",
        },
    ],
    "tweaks": [
        {
            "ask": ["VAT goes up to 21% next month. Please update the rate.",
                    "Change the VAT rate to 21%."],
            "file": "inventory/pricing.py",
            "edits": [("VAT_RATE = 0.20", "VAT_RATE = 0.21")],
            "wrong_old": "VAT_RATE = 0.2\n",
            "test_fix": ("tests/test_pricing.py", "assert order_total([(250, 4), (100, 2)]) == 1440",
                         "assert order_total([(250, 4), (100, 2)]) == 1452"),
            "summary": "`VAT_RATE` in `inventory/pricing.py` is now `0.21`",
        },
        {
            "ask": ["Make the bulk discount 8% instead of 5%.",
                    "Sales wants the bulk discount raised to 8 percent."],
            "file": "inventory/pricing.py",
            "edits": [("BULK_DISCOUNT = 0.05", "BULK_DISCOUNT = 0.08")],
            "wrong_old": "BULK_DISCOUNT = 5",
            "test_fix": ("tests/test_pricing.py", "assert line_total(100, 10) == 950",
                         "assert line_total(100, 10) == 920"),
            "summary": "`BULK_DISCOUNT` is now `0.08`",
        },
        {
            "ask": ["Lower the default low-stock threshold from 5 to 3.",
                    "The default low_threshold of 5 is too noisy, make it 3."],
            "file": "inventory/stock.py",
            "edits": [("def __init__(self, low_threshold=5):", "def __init__(self, low_threshold=3):")],
            "wrong_old": "def __init__(self, low_threshold: int = 5):",
            "summary": "`Stock()` now defaults to `low_threshold=3`; callers that pass a threshold are unaffected",
        },
        {
            "ask": ["Make the OutOfStock message friendlier, something like 'not enough PEN-01: requested 3, "
                    "only 1 on hand'.",
                    "Reword the OutOfStock error to 'not enough <sku>: requested <n>, only <m> on hand'."],
            "file": "inventory/stock.py",
            "edits": [('raise OutOfStock(f"{sku}: wanted {qty}, have {on_hand}")',
                       'raise OutOfStock(f"not enough {sku}: requested {qty}, only {on_hand} on hand")')],
            "wrong_old": 'raise OutOfStock(f"Not enough stock for {sku}")',
            "summary": "`Stock.remove` now raises `OutOfStock(\"not enough PEN-01: requested 3, only 1 on hand\")`",
        },
    ],
    "bugs": [
        {
            "file": "inventory/stock.py",
            "good": "        if qty > on_hand:\n",
            "bad": "        if qty >= on_hand:\n",
            "report": ["Removing the last units of a SKU raises OutOfStock even though they are on hand. "
                       "Can you fix it?",
                       "Our shop can't sell the final item of anything: `stock.remove(sku, level)` blows up "
                       "with OutOfStock."],
            "cause": "`Stock.remove` compared `qty >= on_hand`, so asking for exactly the quantity on hand "
                     "counted as too many",
            "review": "`if qty >= on_hand:` rejects a removal of exactly the units on hand, so the last unit of a "
                      "SKU can never be sold; it should stay `qty > on_hand`. "
                      "`test_remove_everything_leaves_zero` will fail with this change.",
            "commit": "Tighten the stock check in remove",
        },
        {
            "file": "inventory/stock.py",
            "good": "if q <= self.low_threshold)",
            "bad": "if q < self.low_threshold)",
            "report": ["low_stock() never lists items sitting exactly at the threshold. With a threshold of 3 "
                       "and 3 units left, CLIP-9 isn't reported.",
                       "The low-stock report misses SKUs whose level equals low_threshold; the docstring says "
                       "'at or below'."],
            "repro": "python -c \"from inventory import Stock; s = Stock(low_threshold=3); s.add('CLIP-9', 3); "
                     "print(s.low_stock())\"",
            "locate": "def low_stock",
            "regression": ("tests/test_stock.py",
                           "def test_low_stock_includes_level_at_threshold():\n    stock = Stock(low_threshold=3)\n"
                           "    stock.add(\"CLIP-9\", 3)\n    assert stock.low_stock() == [\"CLIP-9\"]\n"),
            "cause": "`low_stock` filtered with `q < self.low_threshold`, which leaves out levels equal to the "
                     "threshold although the docstring promises 'at or below'",
            "review": "`q < self.low_threshold` contradicts the docstring ('at or below the low-stock threshold') "
                      "and drops SKUs sitting exactly at the threshold. Keep `<=`, and add a test with a level equal "
                      "to the threshold, since the existing one only covers levels below it.",
            "commit": "Simplify the low-stock filter",
        },
        {
            "file": "inventory/pricing.py",
            "good": "    if qty >= BULK_QTY:\n",
            "bad": "    if qty > BULK_QTY:\n",
            "report": ["Customers ordering exactly 10 units don't get the bulk discount any more.",
                       "The pricing tests went red after this morning's merge, something about the bulk discount."],
            "cause": "`line_total` checked `qty > BULK_QTY`, so an order of exactly `BULK_QTY` (10) units missed "
                     "the discount",
            "review": "`qty > BULK_QTY` means the discount now starts at 11 units, not 10. The docstring says 'from "
                      "BULK_QTY units up' and `test_bulk_discount_from_ten_units` pins 10, so this is a behaviour "
                      "change; keep `>=` unless the business rule really changed.",
            "commit": "Only discount orders above the bulk quantity",
        },
        {
            "file": "inventory/pricing.py",
            "good": "return subtotal + round(subtotal * VAT_RATE)",
            "bad": "return subtotal + int(subtotal * VAT_RATE)",
            "report": ["Totals are sometimes one cent lower than our accounting system: a single item at 333 "
                       "cents totals 399, accounting says 400.",
                       "order_total([(333, 1)]) gives 399 but 333 plus 20% VAT is 399.6, which should round to "
                       "400."],
            "repro": "python -c \"from inventory import order_total; print(order_total([(333, 1)]))\"",
            "locate": "def order_total",
            "regression": ("tests/test_pricing.py",
                           "def test_vat_is_rounded_to_nearest_cent():\n"
                           "    assert order_total([(333, 1)]) == 400\n"),
            "cause": "`order_total` computed VAT with `int(subtotal * VAT_RATE)`, which truncates 66.6 cents "
                     "to 66 instead of rounding to 67",
            "review": "`int(subtotal * VAT_RATE)` truncates instead of rounding, so any VAT with a fractional "
                      "cent is understated (333 cents gives 399 instead of 400). Use `round(...)` as before, and "
                      "add a test with a subtotal whose VAT is not a whole number of cents.",
            "commit": "Use integer VAT",
        },
    ],
    "features": [
        {
            "ask": ["Add `Stock.transfer(other, sku, qty)` that moves units to another Stock. If there aren't "
                    "enough units neither stock should change.",
                    "We need to move units between warehouses: a `transfer(other, sku, qty)` method on Stock. "
                    "Short transfers must raise OutOfStock and leave both sides untouched."],
            "locate": "def remove",
            "test_file": "tests/test_stock.py",
            "test": "def test_transfer_moves_units():\n    shop, warehouse = Stock(), Stock()\n"
                    "    warehouse.add(\"PEN-01\", 5)\n    warehouse.transfer(shop, \"PEN-01\", 2)\n"
                    "    assert (warehouse.level(\"PEN-01\"), shop.level(\"PEN-01\")) == (3, 2)\n\n\n"
                    "def test_short_transfer_changes_nothing():\n    shop, warehouse = Stock(), Stock()\n"
                    "    with pytest.raises(OutOfStock):\n        warehouse.transfer(shop, \"PEN-01\", 1)\n"
                    "    assert shop.level(\"PEN-01\") == 0\n",
            "impl": [("inventory/stock.py", "    def level(self, sku):\n",
                      "    def transfer(self, other, sku, qty):\n"
                      "        \"\"\"Move qty units of sku to another Stock; neither changes if this one is short.\"\"\"\n"
                      "        self.remove(sku, qty)\n        other.add(sku, qty)\n\n    def level(self, sku):\n")],
            "summary": "Added `Stock.transfer(other, sku, qty)`: it calls `remove` first, so a short transfer "
                       "raises `OutOfStock` before `other` is touched",
            "clarify": {
                "vague": ["We need to be able to move stock between warehouses.",
                          "Can Stock support moving units from one location to another?"],
                "question": "A couple of questions before I write it:\n\n1. Should this be a method on `Stock` "
                            "(`warehouse.transfer(shop, sku, qty)`) or a free function?\n2. If the source is "
                            "short, should it raise `OutOfStock` and change nothing, or move whatever is there?",
                "answer": "A method is fine. Raise and change nothing, partial moves would confuse the pickers.",
            },
        },
        {
            "ask": ["Add a `coupon` parameter to `order_total`: a percentage taken off the subtotal before VAT. "
                    "Default 0.",
                    "order_total should accept `coupon=10` meaning 10% off, applied before VAT is added."],
            "locate": "def order_total",
            "test_file": "tests/test_pricing.py",
            "test": "def test_coupon_comes_off_before_vat():\n    assert order_total([(250, 4)], coupon=10) == 1080\n",
            "impl": [("inventory/pricing.py",
                      "def order_total(lines, vat=True):\n"
                      "    \"\"\"Sum of (unit_price, qty) lines, plus VAT unless vat=False.\"\"\"\n"
                      "    subtotal = sum(line_total(price, qty) for price, qty in lines)\n",
                      "def order_total(lines, vat=True, coupon=0):\n"
                      "    \"\"\"Sum of (unit_price, qty) lines less a coupon percentage, plus VAT unless vat=False.\"\"\"\n"
                      "    subtotal = sum(line_total(price, qty) for price, qty in lines)\n"
                      "    subtotal -= round(subtotal * coupon / 100)\n")],
            "summary": "`order_total(lines, vat=True, coupon=0)` now takes a percentage coupon off the subtotal "
                       "(rounded to the cent) before VAT",
            "clarify": {
                "vague": ["Add coupon support to the order total.", "Customers should be able to use coupons."],
                "question": "Before I change `order_total`: is a coupon a percentage or a fixed amount in cents, "
                            "and does it come off before or after VAT? Those give different totals.",
                "answer": "Percentage, and before VAT.",
            },
        },
        {
            "ask": ["`Stock.remove` happily accepts a negative quantity and increases the stock. Make it raise "
                    "ValueError like `add` does.",
                    "remove() should reject qty <= 0 with a ValueError, same as add()."],
            "locate": "def remove",
            "test_file": "tests/test_stock.py",
            "test": "def test_remove_rejects_negative_qty():\n    stock = Stock()\n    stock.add(\"PEN-01\", 2)\n"
                    "    with pytest.raises(ValueError):\n        stock.remove(\"PEN-01\", -1)\n",
            "impl": [("inventory/stock.py", "    def remove(self, sku, qty):\n        on_hand",
                      "    def remove(self, sku, qty):\n        if qty <= 0:\n"
                      "            raise ValueError(\"qty must be positive\")\n        on_hand")],
            "summary": "`Stock.remove` now raises `ValueError(\"qty must be positive\")` for zero or negative "
                       "quantities, matching `add`",
        },
    ],
    "refactors": [
        {
            "ask": ["Pull the VAT calculation in pricing.py out into its own small function, `vat_for(amount)`.",
                    "Refactor: extract the VAT computation from order_total into a `vat_for` helper."],
            "read": ["inventory/pricing.py"],
            "edits": [("inventory/pricing.py", "BULK_DISCOUNT = 0.05\n",
                       "BULK_DISCOUNT = 0.05\n\n\ndef vat_for(amount):\n"
                       "    \"\"\"VAT due on an amount in cents, rounded to the nearest cent.\"\"\"\n"
                       "    return round(amount * VAT_RATE)\n"),
                      ("inventory/pricing.py", "return subtotal + round(subtotal * VAT_RATE)",
                       "return subtotal + vat_for(subtotal)")],
            "summary": "`vat_for(amount)` now holds the VAT rounding and `order_total` calls it; behaviour is "
                       "unchanged",
        },
        {
            "ask": ["In stock.py, `self._levels.get(sku, 0)` is repeated in several methods. Use `self.level(sku)` "
                    "instead where it makes sense.",
                    "Small cleanup: make add() and remove() go through level() instead of poking _levels.get "
                    "directly."],
            "read": ["inventory/stock.py"],
            "edits": [("inventory/stock.py", "self._levels[sku] = self._levels.get(sku, 0) + qty",
                       "self._levels[sku] = self.level(sku) + qty"),
                      ("inventory/stock.py", "on_hand = self._levels.get(sku, 0)", "on_hand = self.level(sku)")],
            "summary": "`add` and `remove` now read the current level through `level()`, so the default of 0 "
                       "lives in one place",
        },
        {
            "ask": ["Rename `low_threshold` to `reorder_level` everywhere, it's what the warehouse team calls it.",
                    "Can you rename the low_threshold parameter/attribute of Stock to reorder_level, tests "
                    "included?"],
            "grep": "low_threshold",
            "edits": [("inventory/stock.py", "low_threshold", "reorder_level", True),
                      ("tests/test_stock.py", "low_threshold", "reorder_level")],
            "summary": "`low_threshold` is now `reorder_level` in `Stock.__init__`, the attribute and "
                       "`low_stock()`, and in the test. It is a keyword argument, so callers passing "
                       "`low_threshold=` by name need updating",
        },
    ],
    "reviews": [
        {
            "ask": ["Could you review inventory/pricing.py? It handles money so I want a careful look.",
                    "Give pricing.py a code review, please. Concrete comments with line numbers."],
            "files": ["inventory/pricing.py", "tests/test_pricing.py"],
            "comments": "1. **Rounding (lines 12 and 20).** `round()` uses banker's rounding, so half-cent cases "
                        "go to the even cent: `round(2.5)` is 2. For money you usually want half-up; "
                        "`decimal.Decimal.quantize(..., ROUND_HALF_UP)` makes that explicit.\n"
                        "2. **Float rates (lines 3 and 5).** `VAT_RATE` and `BULK_DISCOUNT` are floats multiplied "
                        "with integer cents. It works at these sizes, but `Decimal` or integer basis points "
                        "would avoid surprises.\n3. **No input validation.** `line_total` accepts a negative "
                        "`qty` or price and returns a negative total.\n4. **Tests.** Nothing pins VAT "
                        "rounding or 9 units (just below the discount); both are one-line tests.\n\n"
                        "The structure itself is fine: small pure functions and integer cents throughout.",
        },
    ],
    "plans": [
        {
            "ask": ["I want stock levels to survive restarts by saving them to a JSON file. Plan it out before "
                    "you change anything.",
                    "We need persistence for Stock (a JSON file is fine). Don't code yet, give me a plan."],
            "explore": [[("list_dir", {"path": "inventory"}), ("read", {"file_path": "inventory/stock.py"})]],
            "plan": "1. Add `Stock.to_dict()` / `Stock.from_dict(data, low_threshold=5)` so the class stays "
                    "independent of files, with a round-trip test.\n2. Add `inventory/storage.py` with "
                    "`save(stock, path)` and `load(path)`; write to a temp file and `os.replace` it so a crash "
                    "can't leave half a file.\n3. Decide what `load` does when the file is missing: return an "
                    "empty `Stock` (my suggestion) or raise.\n4. Tests using `tmp_path` for save/load and the "
                    "missing-file case.\n5. Export `save`/`load` from `inventory/__init__.py`.",
            "question": "Should the low-stock threshold be stored in the file too, or stay a constructor "
                        "argument?",
        },
    ],
    "tradeoffs": [
        {
            "ask": ["We're going to call Stock from a threaded web app. Does it need a lock, and where would "
                    "you put it?",
                    "Is Stock safe to share between threads? If not, what are our options?"],
            "read": ["inventory/stock.py"],
            "answer": "Not as written. `remove` reads the level (`on_hand = ...`) and writes it back later, so two "
                      "threads can both see 1 unit and both succeed, selling the same unit twice. Options:\n\n"
                      "- **A `threading.Lock` inside `Stock`** around the body of `add` and `remove`. Simple and "
                      "keeps callers unchanged; the cost is negligible at this size. This is what I'd do.\n"
                      "- **Lock in the web layer.** Keeps `Stock` simple but every caller must remember it.\n"
                      "- **Move the state to the database** with a conditional update (`... WHERE qty >= ?`). "
                      "The right answer once there is more than one process, since a lock only protects one.\n\n"
                      "If you run several worker processes, only the last option actually works.",
        },
    ],
    "extra_features": [
        {
            "ask": ["Add `Stock.skus()` returning the SKUs that have at least one unit, sorted.",
                    "I need a sorted list of the SKUs we actually have in stock: Stock.skus()."],
            "locate": "def level",
            "test_file": "tests/test_stock.py",
            "test": "def test_skus_lists_only_stocked_items():\n    stock = Stock()\n    stock.add(\"B\", 1)\n"
                    "    stock.add(\"A\", 2)\n    stock.remove(\"B\", 1)\n    assert stock.skus() == [\"A\"]\n",
            "impl": [("inventory/stock.py", "    def level(self, sku):\n        return self._levels.get(sku, 0)\n",
                      "    def level(self, sku):\n        return self._levels.get(sku, 0)\n\n    def skus(self):\n"
                      "        \"\"\"SKUs with at least one unit on hand, sorted.\"\"\"\n"
                      "        return sorted(s for s, q in self._levels.items() if q > 0)\n")],
            "summary": "Added `Stock.skus()`, which returns the sorted SKUs with a level above zero (a SKU sold "
                       "out by `remove` is left out)",
        },
        {
            "ask": ["line_total(100, -1) returns -100. Negative quantities should raise ValueError.",
                    "Make line_total reject a negative qty with ValueError."],
            "locate": "def line_total",
            "test_file": "tests/test_pricing.py",
            "test_import": ("from inventory import line_total, order_total",
                            "import pytest\n\nfrom inventory import line_total, order_total"),
            "test": "def test_negative_quantity_is_rejected():\n    with pytest.raises(ValueError):\n"
                    "        line_total(100, -1)\n",
            "impl": [("inventory/pricing.py", "    total = unit_price * qty\n",
                      "    if qty < 0:\n        raise ValueError(\"qty must not be negative\")\n    total = unit_price * qty\n")],
            "summary": "`line_total` raises `ValueError(\"qty must not be negative\")` before pricing anything",
        },
    ],
}
