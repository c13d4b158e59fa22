"""The test suite is a package (``tests``): test modules get unique dotted names and import the shared
helpers as ``tests.helpers.<module>``; pytest puts the repository root on ``sys.path`` for it (rootdir
of the outermost package), so no test edits ``sys.path``."""
