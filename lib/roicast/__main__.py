import sys

from roicast.cli import main

sys.exit(main())
