import sys

from stream_cd.cli import main

sys.exit(main())
