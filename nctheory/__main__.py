import sys

from nctheory.cli import main

sys.exit(main())
