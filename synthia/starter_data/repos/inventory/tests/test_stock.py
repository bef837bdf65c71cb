import pytest

from inventory import OutOfStock, Stock


def test_add_accumulates_and_rejects_zero():
    stock = Stock()
    stock.add("PEN-01", 3)
    stock.add("PEN-01", 4)
    assert stock.level("PEN-01") == 7
    with pytest.raises(ValueError):
        stock.add("PEN-01", 0)


def test_remove_everything_leaves_zero():
    stock = Stock()
    stock.add("INK-02", 2)
    stock.remove("INK-02", 2)
    assert stock.level("INK-02") == 0
    with pytest.raises(OutOfStock):
        stock.remove("INK-02", 1)


def test_low_stock_is_sorted():
    stock = Stock(low_threshold=2)
    for sku, qty in [("B", 1), ("A", 1), ("C", 9)]:
        stock.add(sku, qty)
    assert stock.low_stock() == ["A", "B"]
