"""The conformance suite over every backend selected by ANYTASK_TEST_BACKENDS (default: all ten)."""

from anytask.testing.conformance import *  # noqa: F403
