"""The prediction worker: a child process that loads and runs model code away from the app."""
