# A package, so this folder's conftest.py is imported as ``e2e.conftest`` and does not replace
# the top-level ``conftest`` module that other tests import helpers from.
