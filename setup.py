"""Only the package list lives here (the rest is in pyproject.toml): setuptools'
``packages.find`` cannot add ``cosearch._targets``, which ``[tool.setuptools.package-dir]``
maps to the top-level ``targets/`` folder so the wheel carries the built-in targets."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["cosearch", "cosearch.*"]) + ["cosearch._targets"])
