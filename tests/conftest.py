pytest_plugins = ["anytask.testing.plugin"]
