"""Relax ops on constants that numpy evaluates exactly like TVM (numpy broadcasting):
the import's constant folder (``importer``) and the layout passes (``layout``) fold them."""

NUMPY_UNARY = {"relax.sqrt": "sqrt", "relax.negative": "negative", "relax.exp": "exp"}
NUMPY_BINARY = {"relax.add": "add", "relax.subtract": "subtract", "relax.multiply": "multiply", "relax.divide": "divide"}
