import sys

from facemask.cli import main

sys.exit(main())
