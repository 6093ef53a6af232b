"""The speech worker, alone in its folder so that running it as a script puts nothing of the project
on ``sys.path`` ahead of the libraries it imports."""
