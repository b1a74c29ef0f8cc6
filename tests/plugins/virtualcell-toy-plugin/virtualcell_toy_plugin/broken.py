"""A plugin module that cannot be imported (its dependency is missing)."""

import virtualcell_dependency_that_does_not_exist  # noqa: F401
