"""Allows ``python -m actionmoe`` (and ``torchrun -m actionmoe``)."""

from actionmoe.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
