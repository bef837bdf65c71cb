"""In-memory stock levels keyed by SKU."""


class OutOfStock(Exception):
    """Raised when a removal asks for more units than are on hand."""


class Stock:
    def __init__(self, low_threshold=5):
        self.low_threshold = low_threshold
        self._levels = {}

    def add(self, sku, qty):
        if qty <= 0:
            raise ValueError("qty must be positive")
        self._levels[sku] = self._levels.get(sku, 0) + qty

    def remove(self, sku, qty):
        on_hand = self._levels.get(sku, 0)
        if qty > on_hand:
            raise OutOfStock(f"{sku}: wanted {qty}, have {on_hand}")
        self._levels[sku] = on_hand - qty

    def level(self, sku):
        return self._levels.get(sku, 0)

    def low_stock(self):
        """SKUs at or below the low-stock threshold, sorted."""
        # TODO: let callers pass a per-SKU threshold
        return sorted(s for s, q in self._levels.items() if q <= self.low_threshold)
