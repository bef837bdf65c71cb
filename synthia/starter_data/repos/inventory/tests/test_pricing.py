from inventory import line_total, order_total


def test_line_total_without_discount():
    assert line_total(250, 4) == 1000


def test_bulk_discount_from_ten_units():
    assert line_total(100, 10) == 950


def test_order_total_adds_vat():
    assert order_total([(250, 4), (100, 2)]) == 1440


def test_order_total_without_vat():
    assert order_total([(250, 4)], vat=False) == 1000
