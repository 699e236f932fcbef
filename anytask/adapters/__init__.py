"""One adapter per queue library. Each module imports only its own library (and its broker client)."""
