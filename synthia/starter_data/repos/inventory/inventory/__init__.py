from .pricing import line_total, order_total
from .stock import OutOfStock, Stock

__all__ = ["OutOfStock", "Stock", "line_total", "order_total"]
