import sys

from steer.models.cli import main

sys.exit(main())
