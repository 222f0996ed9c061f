import sys

from deeplimit.cli import main

sys.exit(main())
