import sys

from hintpool.cli import main

sys.exit(main())
