"""A toy virtualcell plugin for the test suite."""
