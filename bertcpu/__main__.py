"""`python -m bertcpu`: the same command as the `bertcpu` console script."""
import sys

from .cli import main

sys.exit(main())
