"""Compatibility faces: other vendors' APIs (their paths, fields, statuses, errors) over our use cases."""
