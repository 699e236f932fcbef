"""The conformance suite, parametrised over every adapter.

Third-party adapter authors reuse it like SQLAlchemy's dialect suite::

    # conftest.py
    pytest_plugins = ["anytask.testing.plugin"]

    # test_my_backend.py  (run with ANYTASK_TEST_BACKENDS=mylib+redis=mylib+redis://127.0.0.1:6379/9)
    from anytask.testing.conformance import *  # noqa: F403
"""
