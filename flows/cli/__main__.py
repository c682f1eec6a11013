import sys

from flows.cli.app import main

sys.exit(main())
