"""Local online endpoints: a front per endpoint and a server process per deployment on 127.0.0.1."""
