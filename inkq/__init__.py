"""inkq: what the API and the workers share (settings, the Redis job store, errors, CLI).

Imports neither Flask nor numpy, so the client and the CLI stay light.
"""

__version__ = "0.1.0"
