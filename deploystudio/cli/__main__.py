"""`python -m deploystudio.cli`."""

import sys

from deploystudio.cli.main import main

sys.exit(main())
