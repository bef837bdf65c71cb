"""Order pricing in integer cents: line totals, bulk discount and VAT."""

VAT_RATE = 0.20
BULK_QTY = 10
BULK_DISCOUNT = 0.05


def line_total(unit_price, qty):
    """Price of one order line, with the bulk discount from BULK_QTY units up."""
    total = unit_price * qty
    if qty >= BULK_QTY:
        total -= round(total * BULK_DISCOUNT)
    return total


def order_total(lines, vat=True):
    """Sum of (unit_price, qty) lines, plus VAT unless vat=False."""
    subtotal = sum(line_total(price, qty) for price, qty in lines)
    if vat:
        return subtotal + round(subtotal * VAT_RATE)
    return subtotal
