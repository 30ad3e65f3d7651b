import sys

from ci_shark.sandbox.standalone import main

sys.exit(main())
