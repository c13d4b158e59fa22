"""``python -m arpo_env``: the ``arpo`` command line (:func:`arpo_env.cli.main`)."""
from arpo_env.cli import main

if __name__ == "__main__":
    main()
