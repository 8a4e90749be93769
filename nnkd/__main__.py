import sys

from nnkd.cli import main

sys.exit(main())
