import sys

from jetfm.cli import main

sys.exit(main())
